"""The training commands: config files, key=value overrides, pretrain, finetune, evaluate."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from conftest import SMALL_MODEL
from w2v2_lite.cli import ConfigError, main, parse_value, resolve_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.json"))
# A model small enough that an update takes a fraction of a second on one CPU core.



def test_values_are_json_when_they_parse_and_text_otherwise():
    assert parse_value("3") == 3 and parse_value("3e-4") == 3e-4 and parse_value("true") is True
    assert parse_value("null") is None and parse_value("[0.9, 0.95]") == [0.9, 0.95]
    assert parse_value('{"num_layers": 2}') == {"num_layers": 2}
    assert parse_value("runs/x") == "runs/x" and parse_value("10m") == "10m" and parse_value("") == ""


def test_overrides_replace_values_and_set_keys_of_the_model_dict():
    values = resolve_config("pretrain", "pretrain-tiny", [
        "max_updates=7", "learning_rate=1e-3", "model.num_layers=2", "model.hidden_size=96", "valid_manifest=null",
        "adam_betas=[0.9, 0.95]", "precision=fp32", "output_dir=2024", "model.num_layers=3"])
    assert values["max_updates"] == 7 and values["learning_rate"] == 1e-3 and values["precision"] == "fp32"
    assert values["model"] == {"num_layers": 3, "hidden_size": 96}  # the later override wins
    assert values["valid_manifest"] is None and values["adam_betas"] == [0.9, 0.95]
    assert values["output_dir"] == "2024"  # a text field keeps the text JSON would read as a number
    assert values["train_manifest"] == "data/generated/experiment/pretrain.tsv"  # from the file
    replaced = resolve_config("pretrain", "pretrain-tiny", ['model={"num_layers": 1}'])
    assert replaced["model"] == {"num_layers": 1}


@pytest.mark.parametrize("override, message", [
    ("max_update=5", "command line: unknown key 'max_update'; did you mean 'max_updates'?"),
    ("model.num_layer=2", "did you mean 'model.num_layers'?"),
    ("num_layers=2", "did you mean 'model.num_layers'?"),
    ("learning_rate=fast", 'learning_rate="fast" should be float'),
    ("max_updates=2.5", "max_updates=2.5 should be int"),
    ("max_updates=0", "TrainConfig.max_updates=0: must be a positive integer"),
    ("model.num_heads=5", "ModelConfig.hidden_size=192: must be divisible by num_heads=5"),
    ("model_preset=huge", "choose tiny, base or large"),
    ("max_updates", "is not key=value"),
])
def test_a_bad_key_or_value_exits_2_with_a_message_and_no_traceback(override, message, capsys):
    assert main(["pretrain", "pretrain-tiny", override, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.startswith("w2v2-lite pretrain: ")
    assert "Traceback" not in captured.err and captured.out == ""


def test_a_misspelt_key_in_a_config_file_names_the_file(tmp_path, capsys):
    config = tmp_path / "typo.json"
    config.write_text(json.dumps({"task": "pretrain", "learnig_rate": 1e-3}))
    assert main(["pretrain", str(config)]) == 2
    assert f"{config}: unknown key 'learnig_rate'; did you mean 'learning_rate'?" in capsys.readouterr().err
    assert main(["pretrain", "pretrain-tny"]) == 2
    assert "no config 'pretrain-tny'; did you mean 'pretrain-tiny'?" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="is a finetune config: run `w2v2-lite finetune"):
        resolve_config("pretrain", "finetune-tiny-10m", [])


def test_dry_run_prints_the_resolved_config_wherever_the_flag_stands(capsys):
    assert main(["finetune", "configs/finetune-tiny-10m.json", "max_updates=5", "--dry-run",
                 "model.layerdrop=0.0"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["task"] == "finetune" and config["max_updates"] == 5
    assert config["model"] == {"freeze_finetune_updates": 100, "layerdrop": 0.0}  # the file's, and the override
    assert config["init_from"] == "data/generated/pretrained/tiny" and config["adam_eps"] == 1e-8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_every_config_in_configs_resolves_and_reads_as_a_train_config(path, capsys):
    from w2v2_lite.training import TrainConfig

    values = json.loads(path.read_text())
    assert main([values["task"], path.stem, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == TrainConfig(**values).to_dict() | {"adam_betas": [0.9, 0.98]}


def test_the_configs_the_readme_names_exist():
    names = {path.stem for path in CONFIGS}
    assert {"pretrain-tiny", "finetune-tiny-10m", "scratch-tiny-10m", "pretrain-quick", "finetune-quick",
            "scratch-quick"} <= names


def test_help_lists_the_configs_and_the_main_keys_with_defaults(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["pretrain", "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert "pretrain-tiny" in out and "finetune-tiny-10m" not in out
    assert "max_updates=2000" in out and "model.num_layers=2" in out and "init_from" not in out
    with pytest.raises(SystemExit):
        main(["finetune", "-h"])
    out = capsys.readouterr().out
    assert "scratch-tiny-10m" in out and "init_from" in out and "recipe" in out
    with pytest.raises(SystemExit):
        main(["evaluate", "-h"])
    assert "manifest" in capsys.readouterr().out


# ------------------------------------------------------------ real runs
def small_config(folder: Path, corpus: Path, task: str) -> Path:
    """A config file like those in configs/, for the tiny corpus and a very small model."""
    values = {"task": task, "train_manifest": str(corpus / ("pretrain.tsv" if task == "pretrain"
                                                           else "train-0.2min.tsv")),
              "valid_manifest": str(corpus / "dev.tsv"), "output_dir": str(folder / f"run-{task}"),
              "max_updates": 2, "max_batch_samples": 64_000, "max_batch_size": 2, "precision": "fp32",
              "device": "cpu", "progress": False}
    values |= {"model": SMALL_MODEL, "crop_samples": 32_000} if task == "pretrain" else {"learning_rate": 5e-5}
    path = folder / f"{task}.json"
    path.write_text(json.dumps(values))
    return path


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pretrain")
    assert main(["pretrain", str(small_config(folder, corpus, "pretrain"))]) == 0
    return folder / "run-pretrain"


def test_pretrain_writes_the_log_the_config_and_checkpoints(pretrained):
    records = [json.loads(line) for line in (pretrained / "log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == [1, 2]
    assert {"loss", "lr", "contrastive_loss", "accuracy", "code_perplexity", "temperature"} <= set(records[0])
    assert "dev_accuracy" in records[-1]
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "train_config.json"):
        assert (pretrained / name).is_file()
    assert json.loads((pretrained / "train_config.json").read_text())["model"]["hidden_size"] == 32


def test_a_finished_run_run_again_has_nothing_to_do(pretrained, capsys):
    assert main(["pretrain", str(pretrained.parent / "pretrain.json")]) == 0
    assert "already holds 2 of 2 updates" in capsys.readouterr().out


def test_finetune_from_the_pretrained_checkpoint(pretrained, corpus, tmp_path, capsys):
    config = small_config(tmp_path, corpus, "finetune")
    assert main(["finetune", str(config), f"init_from={pretrained / 'checkpoint_last.pt'}"]) == 0
    assert "finetune: update 2 of 2" in capsys.readouterr().out
    run = tmp_path / "run-finetune"
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"blank_fraction", "body_frozen"} <= set(records[0]) and "dev_cer" in records[-1]
    assert (run / "checkpoint_last.pt").is_file() and (run / "checkpoint_best.pt").is_file()

    assert main(["evaluate", str(config), "checkpoint=last"]) == 0  # a config stands for its output_dir
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "finetune" and result["update"] == 2 and result["checkpoint"].endswith("last.pt")
    assert {"cer", "wer"} <= set(result) and result["manifest"] == str(corpus / "dev.tsv")


def test_evaluate_prints_the_metrics_of_a_run_as_json(pretrained, corpus, capsys):
    assert main(["evaluate", str(pretrained), f"manifest={corpus / 'test.tsv'}"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"contrastive_loss", "accuracy", "code_perplexity"} <= set(result)
    assert result["task"] == "pretrain" and result["checkpoint"].endswith("checkpoint_best.pt")
    assert result["manifest"] == str(corpus / "test.tsv")
    assert main(["evaluate", str(pretrained), "manfest=x.tsv"]) == 2
    assert "did you mean 'manifest'?" in capsys.readouterr().err
    assert main(["evaluate", str(pretrained / "nowhere")]) == 2
    assert "is no run folder, release folder or config" in capsys.readouterr().err


def test_evaluate_reads_a_release_folder(pretrained, corpus, capsys):
    from w2v2_lite.cli import load_for_evaluation
    from w2v2_lite.pretrained import save_pretrained

    model, _, _, _ = load_for_evaluation(str(pretrained), "last")
    release = pretrained.parent / "release"
    save_pretrained(model, release)
    assert main(["evaluate", str(release), f"manifest={corpus / 'dev.tsv'}", "device=cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "pretrain" and result["update"] is None and "accuracy" in result


def test_tensorboard_events_hold_the_logged_scalars(pretrained):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    board = event_accumulator.EventAccumulator(str(pretrained / "tensorboard"))
    board.Reload()
    records = [json.loads(line) for line in (pretrained / "log.jsonl").read_text().splitlines()]
    losses = board.Scalars("train/loss")
    assert [event.step for event in losses] == [1, 2]
    assert [event.value for event in losses] == pytest.approx([r["loss"] for r in records], rel=1e-6)
    assert board.Scalars("dev/accuracy")[-1].value == pytest.approx(records[-1]["dev_accuracy"], rel=1e-6)


def test_export_writes_a_release_with_the_metrics_of_its_log(pretrained, corpus, tmp_path, capsys):
    from w2v2_lite.pretrained import load_pretrained, read_release_config

    release = tmp_path / "release"
    assert main(["export", str(pretrained), str(release)]) == 0
    printed = json.loads(capsys.readouterr().out)
    description = read_release_config(release)
    records = [json.loads(line) for line in (pretrained / "log.jsonl").read_text().splitlines()]
    at_update = next(r for r in records if r["update"] == description["update"])
    assert description["metrics"] == {k: v for k, v in at_update.items() if k.startswith("dev_")}
    assert printed["dev_accuracy"] == at_update["dev_accuracy"]
    assert description["seed"] == 1 and description["command"].startswith("w2v2-lite pretrain ")
    assert (release / "train_log.jsonl").read_text() == (pretrained / "log.jsonl").read_text()
    model = load_pretrained(release)
    assert type(model).__name__ == "Wav2Vec2ForPreTraining" and model.config.hidden_size == 32
    # Evaluating the release on the dev set gives the metrics its log recorded.
    assert main(["evaluate", str(release), f"manifest={corpus / 'dev.tsv'}", "device=cpu", "precision=fp32"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy"] == pytest.approx(at_update["dev_accuracy"], abs=1e-6)
    assert again["contrastive_loss"] == pytest.approx(at_update["dev_contrastive_loss"], rel=1e-4)

    assert main(["export", str(pretrained / "nowhere"), str(tmp_path / "x")]) == 2
    assert "is no run folder" in capsys.readouterr().err


def test_ctrl_c_saves_a_checkpoint_and_exits_130(corpus, tmp_path, monkeypatch, capsys):
    from w2v2_lite.training.loop import Trainer

    update_step = Trainer.update_step

    def interrupted(self, micro_batches):  # Ctrl-C arrives during the first update
        os.kill(os.getpid(), signal.SIGINT)
        return update_step(self, micro_batches)

    monkeypatch.setattr(Trainer, "update_step", interrupted)
    config = small_config(tmp_path, corpus, "pretrain")
    assert main(["pretrain", str(config), "max_updates=3"]) == 130
    assert "checkpoint" in capsys.readouterr().err
    assert (tmp_path / "run-pretrain" / "checkpoint_last.pt").is_file()
    assert len((tmp_path / "run-pretrain" / "log.jsonl").read_text().splitlines()) == 1


def test_a_missing_corpus_says_how_to_make_it(tmp_path, capsys):
    manifest = tmp_path / "notebooks" / "pretrain.tsv"
    assert main(["pretrain", "pretrain-quick", f"train_manifest={manifest}"]) == 2
    assert f"make-corpus --preset notebooks --out {manifest.parent}" in capsys.readouterr().err
