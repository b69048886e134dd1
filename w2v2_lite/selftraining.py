"""Self-training (Xu et al., 2020): a fine-tuned model labels the unlabelled audio, and a
new model is fine-tuned on the true labels and these pseudo-labels together.

    labelled (10 min) ──fine-tune──> teacher ──decode (beam + LM)──> pseudo-labels (2 h)
    pretrained model ──fine-tune on labelled + pseudo-labelled──> student

Xu et al. decode with a language model, which turns many of the teacher's misspelt words
into real ones; here the LM is the word n-gram of `decoding.NGramLM`, counted from the
labelled transcripts only (nothing the unlabelled audio says is read). The student starts
from the pretrained model again, not from the teacher, as in the paper.

`pseudo_label` decodes a manifest; `write_training_set` writes labelled + pseudo-labelled
as one fairseq manifest that `TrainConfig.train_manifest` can name.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn


@torch.no_grad()
def pseudo_label(model: nn.Module, manifest: str | os.PathLike, decode: Any, device: str = "cpu",
                 progress: bool = True) -> list[Any]:
    """Each utterance of `manifest` with the transcript `decode` gives for `model`'s logits.

    model: a `Wav2Vec2ForCTC`. decode: logits (1, T, V), output_lengths (1,) -> [text]
    (a `decoding.BeamSearchDecoder`, or greedy decoding). One utterance at a time, so that a
    group_norm encoder sees no padding. Returns `data.corpora.Utterance`s; an utterance the
    model hears nothing in gets an empty transcript (`write_training_set` leaves it out).
    """
    from tqdm.auto import tqdm

    from .data.corpora import read_manifest
    from .data.dataset import SpeechDataset

    dataset = SpeechDataset(read_manifest(manifest), None)  # leaves out (and names) utterances under 2 s
    was_training = model.training
    model.eval().to(device)
    labelled = []
    for index in tqdm(range(len(dataset)), desc=f"pseudo-labelling {Path(manifest).name}", unit="utt",
                      disable=not progress):
        out = model(dataset[index].waveform[None].to(device))
        labelled.append(replace(dataset.utterances[index], transcript=decode(out.logits, out.output_lengths)[0].strip()))
    model.train(was_training)
    return labelled


def write_training_set(path: str | os.PathLike, labelled: list[Any], pseudo: list[Any]) -> dict[str, Any]:
    """Write labelled + pseudo-labelled utterances (those with a transcript) as one manifest
    at `path` (.tsv, .wrd, .ltr beside it); returns counts and seconds of each part."""
    from .data.audio import SAMPLE_RATE
    from .data.corpora import write_manifest

    kept = [u for u in pseudo if u.transcript]
    everything = labelled + kept
    root = Path(os.path.commonpath([str(Path(u.path).resolve().parent) for u in everything]))
    write_manifest(path, root, everything)
    return {"labelled_utterances": len(labelled), "pseudo_utterances": len(kept),
            "pseudo_empty": len(pseudo) - len(kept),
            "labelled_seconds": round(sum(u.num_samples for u in labelled) / SAMPLE_RATE, 1),
            "pseudo_seconds": round(sum(u.num_samples for u in kept) / SAMPLE_RATE, 1)}
