"""The `w2v2-lite` command line: one subcommand per job.

    w2v2-lite --help
    w2v2-lite make-corpus --preset notebooks --out data/generated/notebooks

Subcommands import their modules only when they run, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import sys


def run_make_corpus(args: argparse.Namespace) -> int:
    from .data.corpus import PRESETS, AugmentConfig, make_corpus

    overrides = {name: value for name, value in (("seed", args.seed), ("pretrain_minutes", args.pretrain_minutes),
                                                 ("dev_minutes", args.dev_minutes), ("test_minutes", args.test_minutes),
                                                 ("audio_format", args.format)) if value is not None}
    if args.labelled_minutes is not None:
        overrides["labelled_minutes"] = tuple(sorted(args.labelled_minutes))
    if args.noise_snr is not None or args.reverb_rt60 is not None or args.speed_factors:
        overrides["augment"] = AugmentConfig(args.noise_snr, args.reverb_rt60, tuple(args.speed_factors or ()))
    config = PRESETS[args.preset](**overrides)
    try:
        metadata = make_corpus(args.out, config, workers=args.workers, progress=not args.quiet)
    except KeyboardInterrupt:
        return 130
    except ValueError as error:  # a bad setting or a folder holding another corpus: the message says what to do
        print(f"w2v2-lite make-corpus: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        for name, split in metadata["splits"].items():
            print(f"{name:>14}: {split['utterances']:5d} utterances, {split['seconds'] / 60:6.1f} min, "
                  f"{len(split['speakers'])} speakers -> {args.out}/{split['manifest']}")
    return 0


def add_make_corpus(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("make-corpus", help="synthesise the labelled multi-speaker corpus (espeak-ng)",
                                   description="Synthesise a speech corpus with espeak-ng: unlabelled pretraining "
                                   "audio, nested labelled sets, dev and test with unseen speakers. Re-running "
                                   "resumes an interrupted run; over a finished corpus it only checks it.")
    parser.add_argument("--preset", choices=("notebooks", "experiment"), default="notebooks",
                        help="notebooks: ~10 min of audio in < 1 min; experiment: 2 h + 1 h + 10 + 10 min")
    parser.add_argument("--out", required=True, help="output folder, e.g. data/generated/notebooks")
    parser.add_argument("--seed", type=int, help="random seed (same seed: byte-identical corpus)")
    parser.add_argument("--pretrain-minutes", type=float, help="unlabelled audio, minutes")
    parser.add_argument("--labelled-minutes", type=float, nargs="+", help="nested labelled sets, e.g. 10 60")
    parser.add_argument("--dev-minutes", type=float)
    parser.add_argument("--test-minutes", type=float)
    parser.add_argument("--format", choices=("flac", "wav"), help="audio format (default flac)")
    parser.add_argument("--noise-snr", type=float, help="add white noise at this SNR in dB (training audio)")
    parser.add_argument("--reverb-rt60", type=float, help="add reverberation with this RT60 in s (training audio)")
    parser.add_argument("--speed-factors", type=float, nargs="+", help="speed perturbation, e.g. 0.9 1.0 1.1")
    parser.add_argument("--workers", type=int, help="parallel processes (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(run=run_make_corpus)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="w2v2-lite", description="wav2vec 2.0 from scratch: data, training, tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_make_corpus(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
