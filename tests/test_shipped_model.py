"""The pretrained tiny model: its recipe, the release `make pretrained` builds from it, and
the reference run in data/pretrained/tiny that a build must reproduce."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import SMALL_MODEL
from w2v2_lite import ModelConfig
from w2v2_lite.cli import main, make_train_config, resolve_config
from w2v2_lite.models import Wav2Vec2ForPreTraining
from w2v2_lite.plots import read_log
from w2v2_lite.pretrained import load_pretrained, read_release_config, shipped_release
from w2v2_lite.training.release import RECIPES, RELEASE_PRECISION, build_release, recipe_hash

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "data" / "pretrained" / "tiny"  # the run the recipe was measured with: config and log, no weights


@pytest.fixture(scope="module")
def release() -> Path:
    """The built release; `make test` builds it first (`make pretrained`)."""
    try:
        return shipped_release("tiny", build=False)
    except FileNotFoundError as error:
        pytest.fail(f"{error} (make test does this before the tests)")


@pytest.fixture(scope="module")
def description(release) -> dict:
    return read_release_config(release)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((REFERENCE / "config.json").read_text())


def test_it_loads_as_the_tiny_pretraining_model(release, description):
    model = load_pretrained(release)
    assert isinstance(model, Wav2Vec2ForPreTraining) and not model.training
    tiny = ModelConfig.tiny()
    assert model.config == ModelConfig.from_dict(description["config"])
    for name in ("conv_layers", "hidden_size", "num_layers", "num_heads", "num_code_groups", "num_codes_per_group"):
        assert getattr(model.config, name) == getattr(tiny, name), name
    size = sum(p.numel() for p in model.parameters())
    assert 2.0e6 < size < 2.6e6, size  # tiny: about 2.3 M parameters, about 9 MB in fp32
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = model(0.1 * torch.randn(2, 48_000, generator=generator), generator=generator)
    assert math.isfinite(float(out.loss)) and out.logits.shape[1] == model.config.num_negatives + 1


def test_its_recorded_metrics_are_those_of_its_log(release, description):
    records = read_log(release / description["log"])
    at_update = next(r for r in records if r["update"] == description["update"])
    assert description["metrics"] == {k: v for k, v in at_update.items() if k.startswith("dev_")}
    assert description["wall_s"] == pytest.approx(sum(r["wall_s"] for r in records
                                                      if r["update"] <= description["update"]), abs=0.1)
    assert records[-1]["update"] == description["train_config"]["max_updates"] == description["update"]
    # It learned: dev accuracy far above chance (1 in K + 1 candidates), and no codebook collapse
    # (code perplexity at least half of G * V).
    config = ModelConfig.from_dict(description["config"])
    assert description["metrics"]["dev_accuracy"] > 5 / (config.num_negatives + 1)
    assert description["metrics"]["dev_code_perplexity"] >= config.num_code_groups * config.num_codes_per_group / 2


def test_it_was_built_from_the_recipe_which_is_configs_pretrain_tiny(description):
    assert description["recipe"] == "tiny" and description["recipe_sha256"] == recipe_hash("tiny")
    assert "overrides" not in description
    recipe = RECIPES["tiny"]
    # The recipe and configs/pretrain-tiny.json give the same training, wherever the files are.
    command = description["command"].split()
    assert command[:2] == ["w2v2-lite", "pretrain"] and (REPO / command[2]).is_file()
    from_file = json.loads(json.dumps(make_train_config(resolve_config("pretrain", str(REPO / command[2]), []))
                                      .to_dict()))  # tuples as JSON lists, as in config.json
    from_recipe = json.loads(json.dumps(make_train_config(recipe["train"]).to_dict()))
    trained = dict(description["train_config"])
    for values in (from_file, from_recipe, trained):  # where the files were, and how it was shown
        for where in ("train_manifest", "valid_manifest", "output_dir", "progress"):
            values.pop(where)
    precisions = [values.pop("precision") for values in (from_file, from_recipe, trained)]
    # The recipe says auto; a release trains in fp32 whatever auto would pick (releases built
    # before that rule say auto, which became fp32 where they were built).
    assert precisions[:2] == ["auto", "auto"] and precisions[2] in ("auto", RELEASE_PRECISION)
    assert description["precision"] == RELEASE_PRECISION
    assert from_file == from_recipe == trained
    assert description["seed"] == recipe["train"]["seed"]


def test_it_reproduces_the_reference_run(description, reference, release):
    """data/pretrained/tiny holds the run the recipe was first measured with (config.json and
    its log, not its weights). A build on another CPU (other vector kernels, other thread
    counts) sums in another order and drifts from it; the first updates still agree closely
    and the end metrics land near it. On the machine that made the reference (same torch,
    threads and kernels), the log is equal to the last digit."""
    unrelated = {"output_dir": None, "log_every": None, "progress": None, "tensorboard": None,
                 "train_manifest": None, "valid_manifest": None,  # where it ran and what it showed
                 "precision": None}  # "auto" in the reference, which became fp32 there; compared below
    assert reference["train_config"] | unrelated == description["train_config"] | unrelated
    assert description["precision"] == reference["precision"], \
        f"{release} trained in {description['precision']}, its reference in {reference['precision']}: " \
        "delete it and run make pretrained again"
    ours = read_log(release / description["log"])
    theirs = read_log(REFERENCE / reference["log"])
    assert [r["update"] for r in ours] == [r["update"] for r in theirs]
    assert ours[0]["loss"] == pytest.approx(theirs[0]["loss"], rel=1e-3)
    for key in ("dev_accuracy", "dev_code_perplexity"):
        assert description["metrics"][key] == pytest.approx(reference["metrics"][key], rel=0.25), key


def test_fine_tuning_configs_start_from_it(release):
    for name in ("finetune-tiny-10m", "finetune-quick", "finetune-experiment"):
        values = json.loads((REPO / "configs" / f"{name}.json").read_text())
        assert (REPO / values["init_from"]).resolve() == release.resolve(), name


@pytest.mark.skipif(not (REPO / "data/generated/experiment/dev.tsv").is_file(),
                    reason="needs the experiment corpus: w2v2-lite make-corpus --preset experiment "
                           "--out data/generated/experiment")
def test_it_scores_on_the_dev_speakers_what_its_log_says(release, description, capsys):
    assert main(["evaluate", str(release), "device=cpu", "precision=fp32"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = description["metrics"]
    # Kernel sets and corpus rebuilds move the last digits, not more.
    assert result["accuracy"] == pytest.approx(metrics["dev_accuracy"], abs=0.01)
    assert result["code_perplexity"] == pytest.approx(metrics["dev_code_perplexity"], rel=0.02)


def test_the_release_is_found_from_any_working_folder(release, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a notebook run from elsewhere finds the checkout's copy
    assert shipped_release("tiny", build=False) == release
    with pytest.raises(ValueError, match="builds \\['tiny'\\]"):
        shipped_release("base")


def test_without_a_build_the_error_names_the_command(tmp_path, monkeypatch):
    import w2v2_lite.training.release as releases

    monkeypatch.setattr(releases, "checkout_root", lambda: None)  # an install without the repository
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="make pretrained.*w2v2-lite release tiny"):
        shipped_release("tiny", build=False)


def test_a_release_is_built_resumed_and_then_found(corpus, tmp_path, monkeypatch):
    """build_release on a seconds-long recipe: interrupted (the run stops at an update), it
    resumes from the run's checkpoint; built, it is found again without training."""
    import w2v2_lite.training.release as releases
    from w2v2_lite.data.corpus import CorpusConfig

    small = {"description": "a test release", "config": "pretrain-tiny", "checkpoint": "last",
             "corpus": {"preset": "notebooks", "set": dict(pretrain_minutes=0.3, labelled_minutes=(0.2,),
                                                           dev_minutes=0.1, test_minutes=0.1, train_speakers=4,
                                                           eval_speakers=2)},
             "train": RECIPES["tiny"]["train"] | {"model": SMALL_MODEL, "max_updates": 6, "eval_every": 3,
                                                  "save_every": 3, "crop_samples": 16000,
                                                  "max_batch_samples": 32000, "device": "cpu"}}
    assert CorpusConfig.notebooks(**small["corpus"]["set"]).fingerprint() == \
        json.loads((corpus / "metadata.json").read_text())["fingerprint"]  # the fixture's corpus: no synthesis
    monkeypatch.setitem(releases.RECIPES, "small", small)
    monkeypatch.setenv("W2V2_LITE_PRECISION", "bf16")  # a CPU where auto picks bf16
    folder = tmp_path / "pretrained" / "small"
    messages: list[str] = []

    stop_at = 4  # as if Ctrl-C came during update 4: the trainer saves after it and the build stops
    from w2v2_lite.training.loop import Trainer

    real_step = Trainer.update_step

    def interrupted(self, *args, **kwargs):
        record = real_step(self, *args, **kwargs)
        if self.update >= stop_at:
            self.stop_requested = True
        return record

    monkeypatch.setattr(Trainer, "update_step", interrupted)
    with pytest.raises(KeyboardInterrupt, match="the same command resumes"):
        build_release("small", folder=folder, corpus=corpus, progress=False, echo=messages.append)
    assert not folder.exists()
    monkeypatch.setattr(Trainer, "update_step", real_step)
    out = build_release("small", folder=folder, corpus=corpus, progress=False, echo=messages.append)
    assert out == folder
    made = read_release_config(folder)
    assert made["update"] == 6 and made["recipe_sha256"] == releases.recipe_hash("small")
    assert made["precision"] == made["train_config"]["precision"] == RELEASE_PRECISION  # not what auto picks
    log = read_log(folder / made["log"])
    assert [record["update"] for record in log] == list(range(1, 7))  # resumed: no update twice, none missing
    assert isinstance(load_pretrained(folder), Wav2Vec2ForPreTraining)
    before = (folder / "model.safetensors").stat().st_mtime_ns
    messages.clear()
    assert build_release("small", folder=folder, corpus=corpus, progress=False, echo=messages.append) == folder
    assert messages == [] and (folder / "model.safetensors").stat().st_mtime_ns == before  # found, not rebuilt
    # One built in another precision (as auto made it on a bf16 CPU before releases were
    # fp32) is built again; its run folder is not the one resumed.
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"precision": "bf16"}))
    assert build_release("small", folder=folder, corpus=corpus, progress=False, echo=messages.append) == folder
    assert messages[0] == f"{folder} trained in bf16, not fp32; building it again"
    assert read_release_config(folder)["precision"] == "fp32"
