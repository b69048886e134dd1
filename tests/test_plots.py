"""Plots of a run's log: the panels of each task, their labels, and the `plot` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from w2v2_lite.cli import main
from w2v2_lite.plots import plot_run, read_log, run_facts

pytest.importorskip("matplotlib")

PRETRAIN_RECORDS = [
    {"update": 1, "loss": 5.5, "lr": 1e-4, "grad_norm": 2.0, "contrastive_loss": 4.0, "diversity_loss": 0.5,
     "feature_penalty": 0.1, "accuracy": 0.05, "code_perplexity": 50.0, "softmax_perplexity": 60.0,
     "temperature": 2.0, "mask_fraction": 0.5, "task": "pretrain", "epoch": 0, "precision": "fp32"},
    {"update": 2, "loss": 5.0, "lr": 2e-4, "grad_norm": 1.5, "contrastive_loss": 3.8, "diversity_loss": 0.4,
     "feature_penalty": 0.05, "accuracy": 0.1, "code_perplexity": 70.0, "softmax_perplexity": 80.0,
     "temperature": 1.9, "mask_fraction": 0.5, "task": "pretrain", "epoch": 0, "precision": "fp32",
     "dev_accuracy": 0.08, "dev_contrastive_loss": 3.9, "dev_code_perplexity": 65.0},
]
FINETUNE_RECORDS = [
    {"update": 1, "loss": 900.0, "lr": 5e-6, "grad_norm": 800.0, "blank_fraction": 0.1, "body_frozen": 1.0,
     "task": "finetune", "epoch": 0, "precision": "fp32"},
    {"update": 2, "loss": 700.0, "lr": 5e-5, "grad_norm": 600.0, "blank_fraction": 0.6, "body_frozen": 0.0,
     "task": "finetune", "epoch": 0, "precision": "fp32", "dev_cer": 0.9, "dev_wer": 1.0, "dev_example": "A"},
]


def write_run(folder: Path, records: list[dict], train_config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    if train_config is not None:
        (folder / "train_config.json").write_text(json.dumps(train_config))
    return folder


def check_panels(figure, titles: list[str]) -> None:
    """The panels have these titles, and every one axis labels and, with several lines, a legend."""
    assert [ax.get_title() for ax in figure.axes] == titles
    for ax in figure.axes:
        assert ax.get_xlabel() == "update" and ax.get_ylabel()
        lines = len(ax.get_legend_handles_labels()[0])
        assert (ax.get_legend() is not None) == (lines > 1), ax.get_title()


def test_a_pretraining_log_gets_loss_accuracy_perplexity_and_schedules(tmp_path):
    run = write_run(tmp_path / "pre", PRETRAIN_RECORDS, {"task": "pretrain", "model_preset": "tiny",
                                                         "model": {"num_codes_per_group": 32}, "clip_norm": 10.0})
    assert run_facts(run) == {"clip_norm": 10.0, "codebook_size": 64, "chance_accuracy": 1 / 51}
    figure = plot_run(run)
    check_panels(figure, ["Loss terms", "Contrastive accuracy (true latent ranked first)", "Codebook perplexity",
                          "Gumbel softmax temperature", "Learning rate", "Gradient norm"])
    perplexity = figure.axes[2]
    labels = perplexity.get_legend_handles_labels()[1]
    assert labels == ["code (hard choices)", "softmax (averaged probabilities)", "dev code", "G·V (every entry used)"]
    ceiling = perplexity.get_lines()[-1]
    assert list(ceiling.get_ydata()) == [64, 64]
    accuracy = figure.axes[1]
    assert [list(line.get_xdata()) for line in accuracy.get_lines()[:2]] == [[1, 2], [2]]  # dev only where evaluated
    assert figure.get_suptitle() == "pre: pretraining, 2 updates"


def test_a_finetuning_log_gets_ctc_loss_blank_fraction_and_error_rates(tmp_path):
    figure = plot_run(write_run(tmp_path / "ft", FINETUNE_RECORDS))
    check_panels(figure, ["CTC loss", "Blank fraction", "Dev error rates (greedy decoding)", "Learning rate",
                          "Gradient norm"])
    assert figure.axes[2].get_legend_handles_labels()[1] == ["dev CER", "dev WER"]
    assert "head only (body frozen)" in figure.axes[0].get_legend_handles_labels()[1]


def test_a_resumed_log_keeps_the_last_record_of_each_update_and_skips_a_cut_line(tmp_path):
    again = dict(PRETRAIN_RECORDS[1], loss=4.0)
    run = write_run(tmp_path / "resumed", [PRETRAIN_RECORDS[0], PRETRAIN_RECORDS[1], again])
    with open(run / "log.jsonl", "a") as log:
        log.write('{"update": 3, "lo')
    records = read_log(run / "log.jsonl")
    assert [r["update"] for r in records] == [1, 2] and records[1]["loss"] == 4.0


def test_the_plot_command_writes_a_png(tmp_path, capsys):
    run = write_run(tmp_path / "run", PRETRAIN_RECORDS)
    assert main(["plot", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "plot.png")
    assert (run / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "figures" / "ft.png"
    assert main(["plot", str(write_run(tmp_path / "ft", FINETUNE_RECORDS) / "log.jsonl"), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_plotting_a_folder_without_a_log_is_a_clear_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert f"no training log at {tmp_path / 'log.jsonl'}" in capsys.readouterr().err
