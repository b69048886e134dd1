"""Is data ever the bottleneck? Corpus generation, loader and model-step throughput side by side.

    .venv/bin/python bench/data.py

Prints: synthetic-corpus generation speed (audio seconds per wall second, all cores),
DataLoader throughput (utterances/s, 2 workers, length-bucketed, 4 s crops), and the
tiny model's pretraining-step throughput (forward + backward + Adam, utterances/s).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from w2v2_lite import ModelConfig, Wav2Vec2ForPreTraining
from w2v2_lite.data import CorpusConfig, SpeechDataset, make_corpus, read_manifest, speech_dataloader

CROP_SAMPLES = 4 * 16_000
BATCH_SIZE = 8


def bench_generation(root: Path) -> float:
    config = CorpusConfig.notebooks(pretrain_minutes=4.0, labelled_minutes=(1.0,), dev_minutes=0.5, test_minutes=0.5)
    start = time.perf_counter()
    metadata = make_corpus(root, config, progress=False)
    wall = time.perf_counter() - start
    seconds = sum(split["seconds"] for split in metadata["splits"].values())  # one labelled set: no overlap
    start = time.perf_counter()
    make_corpus(root, config, progress=False)
    print(f"corpus generation: {seconds:.0f} s of audio in {wall:.1f} s = {seconds / wall:.0f} audio s per wall s; "
          f"re-run over the finished corpus {time.perf_counter() - start:.2f} s")
    return seconds / wall


def bench_loader(root: Path, config: ModelConfig) -> float:
    dataset = SpeechDataset(read_manifest(root / "pretrain.tsv"), max_samples=CROP_SAMPLES)
    loader = speech_dataloader(dataset, config, max_batch_samples=BATCH_SIZE * CROP_SAMPLES,
                               max_batch_size=BATCH_SIZE, num_workers=2)
    count, start = 0, time.perf_counter()
    for epoch in range(3):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            count += batch.waveform.shape[0]
    rate = count / (time.perf_counter() - start)
    print(f"loader (2 workers, {CROP_SAMPLES // 16000} s crops): {rate:.0f} utterances/s")
    return rate


def bench_model(config: ModelConfig, steps: int = 5) -> float:
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    waveform = torch.randn(BATCH_SIZE, CROP_SAMPLES)
    for step in range(steps + 1):
        if step == 1:  # the first step warms up allocators and kernels
            start = time.perf_counter()
        optimizer.zero_grad()
        model(waveform).loss.backward()
        optimizer.step()
    rate = steps * BATCH_SIZE / (time.perf_counter() - start)
    print(f"tiny model pretraining step ({BATCH_SIZE} x {CROP_SAMPLES // 16000} s, "
          f"{torch.get_num_threads()} threads): {rate:.1f} utterances/s")
    return rate


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    config = ModelConfig.tiny()
    root = Path(tempfile.mkdtemp(prefix="w2v2-bench-"))
    try:
        generation = bench_generation(root / "corpus")
        loader = bench_loader(root / "corpus", config)
        model = bench_model(config)
    finally:
        shutil.rmtree(root)
    print(f"loader / model = {loader / model:.0f}x: the data pipeline is {'not ' if loader > model else ''}"
          f"the bottleneck; one second of generation feeds {generation / (CROP_SAMPLES / 16000) / model:.1f} s "
          "of training on fresh audio")


if __name__ == "__main__":
    main()
