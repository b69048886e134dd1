"""Time one full pretraining step of w2v2_lite against transformers.Wav2Vec2ForPreTraining.

Same config, same weights (w2v2_lite's model is imported from the reference one), same
batch, same mask and negatives, interleaved in one process. A step is forward,
backward and an AdamW update, in training mode with dropout on.

    python bench/step.py                 # tiny on 8 x 2 s, base on 2 x 4 s
    python bench/step.py --configs tiny --steps 10

Prints, per config: the median step time of each, the ratio (reference / w2v2_lite,
higher is better), peak memory of one step, and achieved GFLOP/s against this
machine's measured fp32 matmul peak.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from w2v2_lite import ModelConfig  # noqa: E402
from w2v2_lite.interop import from_transformers  # noqa: E402
from w2v2_lite.masking import span_mask  # noqa: E402
from w2v2_lite.negatives import sample_negatives  # noqa: E402

# (preset, batch size, seconds of audio per utterance)
SETUPS = {"tiny": (ModelConfig.tiny, 8, 2.0), "base": (ModelConfig.base, 2, 4.0)}


def transformers_config(config: ModelConfig):
    """A transformers.Wav2Vec2Config with the same architecture and regularisation."""
    import transformers

    channels, kernels, strides = zip(*config.conv_layers)
    return transformers.Wav2Vec2Config(
        conv_dim=channels, conv_kernel=kernels, conv_stride=strides, conv_bias=config.conv_bias,
        feat_extract_norm="layer" if config.extractor_mode == "layer_norm" else "group",
        hidden_size=config.hidden_size, num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        intermediate_size=config.ffn_size, do_stable_layer_norm=config.layer_norm_first,
        num_conv_pos_embeddings=config.pos_conv_kernel, num_conv_pos_embedding_groups=config.pos_conv_groups,
        hidden_dropout=config.dropout, attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout, feat_proj_dropout=config.dropout_input,
        feat_quantizer_dropout=config.dropout_features, layerdrop=0.0,  # layer skipping would make timings noisy
        mask_time_prob=config.mask_time_prob, mask_time_length=config.mask_time_length,
        num_codevector_groups=config.num_code_groups, num_codevectors_per_group=config.num_codes_per_group,
        codevector_dim=config.codevector_dim, proj_codevector_dim=config.final_dim,
        num_negatives=config.num_negatives, contrastive_logits_temperature=config.logit_temperature,
        diversity_loss_weight=config.diversity_weight,
    )


def matmul_peak_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """The device's fp32 matmul throughput: the best of a few size x size products."""
    if device.type == "cuda":
        size, repeats = 8192, 20
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def reference_step(model, optimizer, batch):
    waveform, mask, negatives = batch
    loss = model(waveform, mask_time_indices=mask, sampled_negative_indices=negatives).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def lite_step(model, optimizer, batch):
    waveform, mask, negatives = batch
    out = model(waveform, time_mask=mask, negative_indices=negatives)
    (out.loss * out.num_masked).backward()  # the reference's summed loss, for the same gradients
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def step_flops(step, model, optimizer, batch) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(model, optimizer, batch)
    return float(counter.get_total_flops())


def peak_memory_mb(step, model, optimizer, batch) -> float:
    """Peak bytes of live tensors during one step (CUDA allocator stats, or the CPU memory profiler)."""
    if batch[0].is_cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(model, optimizer, batch)
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                     with_stack=True) as prof:
            step(model, optimizer, batch)
        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
    return max(sum(row) for row in sizes) / 2 ** 20


def bench(preset: str, steps: int, device: torch.device, measure_memory: bool) -> dict[str, float]:
    import transformers

    make_config, batch_size, seconds = SETUPS[preset]
    config = make_config()
    torch.manual_seed(0)
    reference = transformers.Wav2Vec2ForPreTraining(transformers_config(config)).to(device).train()
    lite = from_transformers(reference).to(device).train()
    samples = int(seconds * 16000)
    frames = lite.config.num_frames(samples)
    generator = torch.Generator().manual_seed(0)
    waveform = torch.randn(batch_size, samples, generator=generator).to(device)
    mask = span_mask((batch_size, frames), config.mask_time_prob, config.mask_time_length,
                     config.mask_time_min_masks, generator=generator).to(device)
    negatives = sample_negatives(mask, config.num_negatives, generator=generator).to(device)
    batch = (waveform, mask, negatives)
    runs = {
        "transformers": (reference_step, reference, torch.optim.AdamW(reference.parameters(), lr=1e-5)),
        "w2v2_lite": (lite_step, lite, torch.optim.AdamW(lite.parameters(), lr=1e-5)),
    }
    for step, model, optimizer in runs.values():  # warm-up
        step(model, optimizer, batch)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(steps):
        for name, (step, model, optimizer) in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(model, optimizer, batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    result: dict[str, float] = {}
    for name, (step, model, optimizer) in runs.items():
        result[f"{name}_s"] = statistics.median(times[name])
        result[f"{name}_gflop"] = step_flops(step, model, optimizer, batch) / 1e9
        if measure_memory:
            try:
                result[f"{name}_mb"] = peak_memory_mb(step, model, optimizer, batch)
            except Exception as error:  # the CPU path uses the profiler's private memory timeline
                print(f"  (peak memory of {name} not measured: {type(error).__name__}: {error})")
    result["ratio"] = result["transformers_s"] / result["w2v2_lite_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--steps", type=int, default=7, help="timed steps per model (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the (slow) CPU memory profile")
    args = parser.parse_args()
    device = torch.device(args.device)
    peak = matmul_peak_gflops(device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; "
          f"fp32 matmul peak {peak:.0f} GFLOP/s")
    for preset in args.configs:
        _, batch_size, seconds = SETUPS[preset]
        r = bench(preset, args.steps, device, not args.no_memory)
        print(f"\n{preset}: {batch_size} x {seconds:g} s, median of {args.steps} steps")
        for name in ("transformers", "w2v2_lite"):
            gflops = r[f"{name}_gflop"] / r[f"{name}_s"]
            memory = f"{r[f'{name}_mb']:8.0f} MiB peak" if f"{name}_mb" in r else ""
            share = f" ({gflops / peak:.0%} of peak)"
            print(f"  {name:<13} {r[f'{name}_s'] * 1000:8.0f} ms  {memory}  "
                  f"{r[f'{name}_gflop']:6.1f} GFLOP/step  {gflops:6.1f} GFLOP/s{share}")
        print(f"  ratio (transformers / w2v2_lite): {r['ratio']:.2f}x")


if __name__ == "__main__":
    main()
