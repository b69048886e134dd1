"""The pretrained tiny model shipped in data/pretrained/tiny: it loads, runs, and is what its log says."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from w2v2_lite import ModelConfig
from w2v2_lite.cli import main, make_train_config, resolve_config
from w2v2_lite.models import Wav2Vec2ForPreTraining
from w2v2_lite.plots import read_log
from w2v2_lite.pretrained import load_pretrained, read_release_config

REPO = Path(__file__).resolve().parents[1]
RELEASE = REPO / "data" / "pretrained" / "tiny"


@pytest.fixture(scope="module")
def description() -> dict:
    return read_release_config(RELEASE)


def test_it_loads_as_the_tiny_pretraining_model(description):
    model = load_pretrained(RELEASE)
    assert isinstance(model, Wav2Vec2ForPreTraining) and not model.training
    tiny = ModelConfig.tiny()
    assert model.config == ModelConfig.from_dict(description["config"])
    for name in ("conv_layers", "hidden_size", "num_layers", "num_heads", "num_code_groups", "num_codes_per_group"):
        assert getattr(model.config, name) == getattr(tiny, name), name
    size = sum(p.numel() for p in model.parameters())
    assert 2.0e6 < size < 2.6e6, size  # tiny: about 2.3 M parameters, about 9 MB in fp32
    assert (RELEASE / "model.safetensors").stat().st_size < 10 * 2**20
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = model(0.1 * torch.randn(2, 48_000, generator=generator), generator=generator)
    assert math.isfinite(float(out.loss)) and out.logits.shape[1] == model.config.num_negatives + 1


def test_its_recorded_metrics_are_those_of_its_log(description):
    records = read_log(RELEASE / description["log"])
    at_update = next(r for r in records if r["update"] == description["update"])
    assert description["metrics"] == {k: v for k, v in at_update.items() if k.startswith("dev_")}
    assert description["wall_s"] == pytest.approx(sum(r["wall_s"] for r in records
                                                      if r["update"] <= description["update"]), abs=0.1)
    assert records[-1]["update"] == description["train_config"]["max_updates"]
    # It learned: dev accuracy far above chance (1 in K + 1 candidates), and no codebook collapse
    # (code perplexity at least half of G * V).
    config = ModelConfig.from_dict(description["config"])
    assert description["metrics"]["dev_accuracy"] > 5 / (config.num_negatives + 1)
    assert description["metrics"]["dev_code_perplexity"] >= config.num_code_groups * config.num_codes_per_group / 2


def test_its_command_and_seed_give_its_training_config(description):
    command = description["command"].split()
    assert command[:2] == ["w2v2-lite", "pretrain"] and (REPO / command[2]).is_file()
    resolved = make_train_config(resolve_config("pretrain", str(REPO / command[2]), command[3:]))
    values = json.loads(json.dumps(resolved.to_dict()))  # tuples as JSON lists, as in config.json
    trained = dict(description["train_config"])
    values.pop("output_dir"), trained.pop("output_dir")  # where the run was written does not change it
    assert values == trained
    assert description["seed"] == description["train_config"]["seed"]


def test_fine_tuning_configs_start_from_it():
    for name in ("finetune-tiny-10m", "finetune-quick"):
        values = json.loads((REPO / "configs" / f"{name}.json").read_text())
        assert values["init_from"] == "data/pretrained/tiny", name


@pytest.mark.skipif(not (REPO / "data/generated/experiment/dev.tsv").is_file(),
                    reason="needs the experiment corpus: w2v2-lite make-corpus --preset experiment "
                           "--out data/generated/experiment")
def test_it_scores_on_the_dev_speakers_what_its_log_says(description, capsys):
    assert main(["evaluate", str(RELEASE), "device=cpu", "precision=fp32"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = description["metrics"]
    # Kernel sets and corpus rebuilds move the last digits, not more.
    assert result["accuracy"] == pytest.approx(metrics["dev_accuracy"], abs=0.01)
    assert result["code_perplexity"] == pytest.approx(metrics["dev_code_perplexity"], rel=0.02)


def test_shipped_release_is_found_from_any_working_folder(tmp_path, monkeypatch):
    from w2v2_lite.pretrained import shipped_release

    assert shipped_release("tiny") == RELEASE
    monkeypatch.chdir(tmp_path)  # a notebook run from elsewhere finds the checkout's copy
    assert shipped_release("tiny", download=False) == RELEASE
    with pytest.raises(ValueError, match="ships \\['tiny'\\]"):
        shipped_release("base")


def test_a_release_is_fetched_whole_or_not_at_all(tmp_path):
    # Where the package was installed without the repository (Colab), the release's files are
    # fetched from the repository; here a file:// URL stands in for raw.githubusercontent.com.
    from w2v2_lite.pretrained import SHIPPED_FILES, _download_release

    fetched = _download_release(RELEASE.as_uri(), tmp_path / "cache" / "tiny")
    for file in SHIPPED_FILES:
        assert (fetched / file).read_bytes() == (RELEASE / file).read_bytes(), file
    assert load_pretrained(fetched).config == load_pretrained(RELEASE).config

    source = tmp_path / "incomplete"  # a release without its log: the fetch fails and says why
    source.mkdir()
    for file in ("model.safetensors", "config.json"):
        (source / file).write_bytes((RELEASE / file).read_bytes())
    target = tmp_path / "cache2" / "tiny"
    with pytest.raises(FileNotFoundError, match="train_log.jsonl.*without a network"):
        _download_release(source.as_uri(), target)
    assert not target.exists() and not list(target.parent.iterdir())  # nothing half-written is left
