"""Fixtures shared by the tests that train: a corpus of a few seconds per split."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The tests check what precision "auto" chooses by the hardware; a reader's setting is not theirs.
os.environ.pop("W2V2_LITE_PRECISION", None)

# A model small enough that a training update takes milliseconds: one layer, 32 channels.
SMALL_MODEL = {"num_layers": 1, "conv_layers": [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2,
               "hidden_size": 32, "num_heads": 2, "ffn_size": 64, "pos_conv_kernel": 16, "pos_conv_groups": 4,
               "num_codes_per_group": 8, "codevector_dim": 16, "final_dim": 16, "num_negatives": 5}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """The notebooks preset cut to seconds: pretrain.tsv, train-0.2min.tsv, dev.tsv, test.tsv."""
    from w2v2_lite.data import make_corpus
    from w2v2_lite.data.corpus import CorpusConfig

    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, CorpusConfig.notebooks(pretrain_minutes=0.3, labelled_minutes=(0.2,), dev_minutes=0.1,
                                             test_minutes=0.1, train_speakers=4, eval_speakers=2),
                workers=2, progress=False)
    return root
