"""Training throughput of w2v2_lite (fp32, bf16, bf16 + torch.compile) against transformers in fp32.

    python bench/train.py                          # tiny, 8 x 4 s crops of the notebooks corpus
    python bench/train.py --config base --batch 2  # BASE (slow on a CPU: lower --batch)
    python bench/train.py --steps 2 --rounds 2 --no-compile --no-memory   # a quick check

What one update is: forward, backward and an AdamW step on a batch of real speech
(fixed-length crops of `data/generated/notebooks/pretrain.tsv`, made by `make data`),
in training mode with dropout on. w2v2_lite takes the training loop's path
(`training.loop.accumulate` under the precision's autocast, gradients divided by the
masked steps, clipped, AdamW); transformers.Wav2Vec2ForPreTraining takes the recipe of
its own pretraining example (backward of its summed loss, gradients divided by the
masked steps), with the same clipping and AdamW settings. Every model starts from the
same weights (w2v2_lite's are imported from the reference) and sees the same batches,
the same time masks and the same sampled negatives. Batches are loaded before timing:
`bench/data.py` shows that loading is not the bottleneck.

How it is timed: after a warm-up update each (for the compiled model, that update
compiles the feature encoder and the Transformer; its time is reported and left out),
each of `--rounds` rounds runs `--steps` updates of every variant, update by update
round-robin in an order that rotates from round to round, so that a change in the
machine's load hits every variant alike. Throughput is audio seconds per wall second,
the median over the rounds (the best round beside it); the ratio is to transformers fp32.
Peak memory of one update is measured as in `bench/step.py` (CUDA allocator, or the
CPU memory profiler).

The goals: w2v2_lite at the precision the training loop picks by default
(`resolve_precision("auto")`, without compile) at least 2x transformers fp32, and
fp32 against fp32 at least 1.3x.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.step import peak_memory_mb, transformers_config  # noqa: E402
from w2v2_lite import ModelConfig  # noqa: E402
from w2v2_lite.data import Collator, SpeechDataset, read_manifest  # noqa: E402
from w2v2_lite.interop import from_transformers  # noqa: E402
from w2v2_lite.masking import span_mask  # noqa: E402
from w2v2_lite.negatives import sample_negatives  # noqa: E402
from w2v2_lite.training.loop import TrainConfig, accumulate, scale_gradients  # noqa: E402
from w2v2_lite.training.precision import resolve_precision  # noqa: E402

SAMPLE_RATE = 16_000
MANIFEST = REPO / "data/generated/notebooks/pretrain.tsv"
RECIPE = TrainConfig()  # the training loop's AdamW settings and clipping norm


class TrainBatch(NamedTuple):
    """waveform X (B, L); attention_mask (B, L) or None, as the collator gives it; time_mask
    (B, T) bool; negatives (B, T, K) indices into the flattened (B * T) targets."""

    waveform: Tensor
    attention_mask: Tensor | None
    time_mask: Tensor
    negatives: Tensor


def speech_batches(manifest: Path, config: ModelConfig, count: int, batch_size: int, samples: int,
                   device: torch.device, seed: int = 0) -> list[TrainBatch]:
    """`count` batches of `batch_size` random crops of `samples` each, with their masks and negatives."""
    long_enough = [u for u in read_manifest(manifest) if u.num_samples >= samples]
    dataset = SpeechDataset(long_enough, max_samples=samples, min_samples=samples, seed=seed)
    if len(dataset) == 0:
        raise SystemExit(f"{manifest}: no utterance is {samples / SAMPLE_RATE:g} s long; lower --seconds")
    collate = Collator.for_model(config, labelled=False, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    frames = config.num_frames(samples)
    batches = []
    for step in range(count):
        positions = range(step * batch_size, (step + 1) * batch_size)
        dataset.set_epoch(positions[0] // len(dataset))  # a new crop each time an utterance comes back
        batch = collate([dataset[i % len(dataset)] for i in positions])
        time_mask = span_mask((batch_size, frames), config.mask_time_prob, config.mask_time_length,
                              config.mask_time_min_masks, generator=generator)
        negatives = sample_negatives(time_mask, config.num_negatives, generator=generator)
        attention_mask = None if batch.attention_mask is None else batch.attention_mask.to(device)
        batches.append(TrainBatch(batch.waveform.to(device), attention_mask, time_mask.to(device),
                                  negatives.to(device)))
    return batches


def clip_and_step(optimizer: torch.optim.Optimizer, sample_size: float) -> None:
    """Divide the summed gradients by the sample size, clip, take the AdamW step."""
    parameters = optimizer.param_groups[0]["params"]
    scale_gradients(parameters, 1.0 / sample_size)
    torch.nn.utils.clip_grad_norm_(parameters, RECIPE.clip_norm)
    optimizer.step()


def lite_update(model: nn.Module, optimizer: torch.optim.Optimizer, batch: TrainBatch, precision: str) -> None:
    """One update of w2v2_lite as `Trainer.update_step` makes it (less its schedules and logged diagnostics)."""
    optimizer.zero_grad(set_to_none=True)
    inputs = {"waveform": batch.waveform, "time_mask": batch.time_mask, "negative_indices": batch.negatives}
    if batch.attention_mask is not None:
        inputs["attention_mask"] = batch.attention_mask
    _, sample_size, _ = accumulate(model, [inputs], "pretrain", precision, batch.waveform.device)
    clip_and_step(optimizer, sample_size)


def reference_update(model: nn.Module, optimizer: torch.optim.Optimizer, batch: TrainBatch) -> None:
    """One update of transformers' model: its loss is summed over the masked steps, as ours is."""
    optimizer.zero_grad(set_to_none=True)
    loss = model(batch.waveform, attention_mask=batch.attention_mask, mask_time_indices=batch.time_mask,
                 sampled_negative_indices=batch.negatives).loss
    loss.backward()
    clip_and_step(optimizer, float(batch.time_mask.sum()))


class Variant(NamedTuple):
    name: str
    update: Callable[[nn.Module, torch.optim.Optimizer, TrainBatch], None]
    model: nn.Module
    optimizer: torch.optim.Optimizer


def adamw(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=RECIPE.learning_rate, betas=RECIPE.adam_betas,
                             eps=RECIPE.adam_eps, weight_decay=RECIPE.weight_decay)


def build_variants(config: ModelConfig, device: torch.device, compile_model: bool) -> list[Variant]:
    """transformers fp32 first (the baseline), then w2v2_lite's variants, all from the same weights."""
    import transformers

    torch.manual_seed(0)
    reference = transformers.Wav2Vec2ForPreTraining(transformers_config(config)).to(device).train()
    lite = from_transformers(reference).to(device).train()
    models = {"transformers fp32": (reference_update, reference),
              "w2v2_lite fp32": (partial(lite_update, precision="fp32"), lite),
              "w2v2_lite bf16": (partial(lite_update, precision="bf16"), copy.deepcopy(lite))}
    if compile_model:
        compiled = copy.deepcopy(lite)
        compiled.wav2vec2.feature_encoder.compile()  # what `TrainConfig(compile=True)` compiles
        compiled.wav2vec2.encoder.compile()
        models["w2v2_lite bf16 + compile"] = (partial(lite_update, precision="bf16"), compiled)
    return [Variant(name, update, model, adamw(model)) for name, (update, model) in models.items()]


def timed_updates(variant: Variant, batches: list[TrainBatch]) -> float:
    """Wall seconds of one update of `variant` on each batch."""
    cuda = batches[0].waveform.is_cuda
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        variant.update(variant.model, variant.optimizer, batch)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(args: argparse.Namespace, device: torch.device) -> tuple[list[Variant], dict[str, dict[str, float]]]:
    config = getattr(ModelConfig, args.config)()
    samples = int(args.seconds * SAMPLE_RATE)
    batches = speech_batches(Path(args.manifest), config, args.steps, args.batch, samples, device)
    variants = build_variants(config, device, not args.no_compile)
    results: dict[str, dict[str, float]] = {v.name: {} for v in variants}
    for v in variants:  # warm-up: allocators, kernels and, for the compiled model, compilation
        results[v.name]["warmup_s"] = timed_updates(v, batches[:1])
        timed_updates(v, batches[-1:])
    audio_seconds = args.steps * args.batch * samples / SAMPLE_RATE
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    for round_ in range(args.rounds):
        shift = round_ % len(variants)
        walls = dict.fromkeys(rates, 0.0)
        for batch in batches:  # update by update, so that a burst of load hits every variant alike
            for v in variants[shift:] + variants[:shift]:
                walls[v.name] += timed_updates(v, [batch])
        for name, wall in walls.items():
            rates[name].append(audio_seconds / wall)
        latest = ", ".join(f"{name} {rate[-1]:.1f}" for name, rate in rates.items())
        print(f"  round {round_ + 1}/{args.rounds}, audio s/s: {latest}", flush=True)
    for v in variants:
        result = results[v.name]
        result["rate"], result["best_rate"] = statistics.median(rates[v.name]), max(rates[v.name])
        result["update_s"] = args.batch * samples / SAMPLE_RATE / result["rate"]
        if not args.no_memory:
            try:
                result["peak_mb"] = peak_memory_mb(v.update, v.model, v.optimizer, batches[0])
            except Exception as error:  # the CPU path uses the profiler's private memory timeline
                print(f"  (peak memory of {v.name} not measured: {type(error).__name__}: {error})")
    return variants, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny", choices=["tiny", "base"], help="model preset (default: tiny)")
    parser.add_argument("--batch", type=int, default=8, help="utterances per batch (default: 8)")
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="crop length in seconds; shorter utterances are left out (default: 4)")
    parser.add_argument("--steps", type=int, default=5,
                        help="updates per variant per round, each on its own batch (default: 5)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="round-robin rounds over the variants; the median round is reported (default: 5)")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave out the bf16 + torch.compile variant (compiling takes a minute or more on a CPU)")
    parser.add_argument("--no-memory", action="store_true", help="skip the (slow) CPU memory profile")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default: cuda when there is one)")
    parser.add_argument("--manifest", default=str(MANIFEST.relative_to(REPO)),
                        help="pretraining manifest to crop batches from (default: %(default)s, made by `make data`)")
    args = parser.parse_args()
    if not Path(args.manifest).is_absolute():
        args.manifest = str(REPO / args.manifest)
    if not Path(args.manifest).is_file():
        raise SystemExit(f"{args.manifest}: no such manifest; run `make data` first, or pass --manifest")
    device = torch.device(args.device)
    default = resolve_precision("auto", device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; {args.config}, "
          f"{args.batch} x {args.seconds:g} s per update, {args.steps} updates x {args.rounds} rounds")

    variants, results = bench(args, device)
    baseline = results[variants[0].name]["rate"]
    print(f"\n{'variant':<26} {'s/update':>9} {'audio s/s':>10} {'best round':>11} {'vs transformers':>16} "
          f"{'peak memory':>12}")
    for v in variants:
        r = results[v.name]
        memory = f"{r['peak_mb']:8.0f} MiB" if "peak_mb" in r else f"{'-':>12}"
        print(f"{v.name:<26} {r['update_s']:9.2f} {r['rate']:10.1f} {r['best_rate']:11.1f} "
              f"{r['rate'] / baseline:15.2f}x {memory}")
    compiled = "w2v2_lite bf16 + compile"
    if compiled in results:
        print(f"\ncompile warm-up (left out above): {results[compiled]['warmup_s']:.1f} s for the first update "
              f"of {compiled}")
    fp32 = results["w2v2_lite fp32"]["rate"] / baseline
    chosen = results[f"w2v2_lite {default}"]["rate"] / baseline
    print(f"default precision here: resolve_precision('auto', '{device.type}') = {default} (no compile): "
          f"{chosen:.2f}x transformers fp32 (goal >= 2x); fp32 vs fp32: {fp32:.2f}x (goal >= 1.3x)")


if __name__ == "__main__":
    main()
