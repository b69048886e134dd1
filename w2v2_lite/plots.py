"""Figures of a training run, drawn from its JSON-lines log (OUTPUT_DIR/log.jsonl).

    figure = plot_run("runs/pretrain-tiny")        # a matplotlib Figure
    figure.savefig("pretrain-tiny.png")            # or: w2v2-lite plot runs/pretrain-tiny

Pretraining: the loss and its three terms (contrastive L_m, diversity L_d, feature
penalty), the contrastive accuracy against chance 1/(K+1), the code and softmax
perplexities against their ceiling G*V, the Gumbel temperature, the learning rate and
the gradient norm. Fine-tuning: the CTC loss and the share of frames whose best label
is the blank, both with the head-only updates shaded, dev CER and WER, the learning
rate and the gradient norm. Dev metrics (the log's `dev_*` keys) are drawn as dots.

matplotlib is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

LOG_FILE = "log.jsonl"
TRAIN_CONFIG_FILE = "train_config.json"
DEV_STYLE = "o--"  # dev metrics: a few evaluations, drawn as dots joined by a dashed line


def log_path_of(run: str | os.PathLike) -> Path:
    """The log of a run folder, or `run` itself when it names the log file."""
    path = Path(run)
    return path / LOG_FILE if path.is_dir() else path


def read_log(run: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run's log, one per logged update, in update order.

    A resumed run logs again the updates it made after its last checkpoint; the later
    record of an update replaces the earlier one. A line cut off by a crash is skipped.
    """
    path = log_path_of(run)
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}: give a run folder (OUTPUT_DIR) or its {LOG_FILE}")
    by_update: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "update" in record:
            by_update[int(record["update"])] = record
    return [by_update[update] for update in sorted(by_update)]


def run_facts(run: str | os.PathLike) -> dict[str, Any]:
    """What the figure marks besides the log, from train_config.json beside it (empty if absent):
    `codebook_size` G*V, `chance_accuracy` 1/(K+1) and `clip_norm`."""
    path = log_path_of(run).with_name(TRAIN_CONFIG_FILE)
    if not path.is_file():
        return {}
    from .config import ModelConfig

    config = json.loads(path.read_text())
    facts: dict[str, Any] = {"clip_norm": config.get("clip_norm") or None}
    if config.get("task") == "pretrain":
        try:
            model = getattr(ModelConfig, config.get("model_preset", "tiny"))(**config.get("model", {}))
        except (AttributeError, TypeError, ValueError):  # a config this version cannot rebuild: no marks
            return facts
        facts["codebook_size"] = model.num_code_groups * model.num_codes_per_group
        facts["chance_accuracy"] = 1 / (1 + model.num_negatives + model.cross_sample_negatives)
    return facts


def plot_run(run: str | os.PathLike, facts: dict[str, Any] | None = None) -> Any:
    """A figure of the run in folder `run` (or of the log file `run`): one panel per quantity.

    facts: `codebook_size`, `chance_accuracy`, `clip_norm` to mark (default: read from the
    run's train_config.json). Returns a `matplotlib.figure.Figure`, not shown or saved.
    """
    from matplotlib.figure import Figure

    records = read_log(run)
    facts = run_facts(run) if facts is None else facts
    task = next((r["task"] for r in records if "task" in r), None)
    if task is None:
        task = "finetune" if any("blank_fraction" in r for r in records) else "pretrain"
    panels = PRETRAIN_PANELS if task == "pretrain" else FINETUNE_PANELS
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(5.0 * columns, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        panel(ax, records, facts)
    for ax in axes[len(panels):]:
        ax.remove()
    name = log_path_of(run).parent.name or str(run)
    last = records[-1]["update"] if records else 0
    figure.suptitle(f"{name}: {'pretraining' if task == 'pretrain' else 'CTC fine-tuning'}, {last} updates")
    return figure


# ------------------------------------------------------------------ panels
def series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(updates, values) of `key` over the records that have it."""
    points = [(r["update"], float(r[key])) for r in records if isinstance(r.get(key), (int, float))]
    return [u for u, _ in points], [v for _, v in points]


def draw_lines(ax: Any, records: list[dict[str, Any]], lines: list[tuple[str, str, str]]) -> int:
    """Plot each (key, label, style) the log has; returns how many were drawn."""
    drawn = 0
    for key, label, style in lines:
        updates, values = series(records, key)
        if updates:
            ax.plot(updates, values, style, label=label, markersize=4)
            drawn += 1
    return drawn


def finish(ax: Any, title: str, ylabel: str, log_scale: bool = False) -> None:
    """Title, axis labels, a legend when the panel has several labelled artists, a note when empty."""
    ax.set_title(title)
    ax.set_xlabel("update")
    ax.set_ylabel(ylabel)
    if log_scale and ax.get_lines() and all(min(line.get_ydata(), default=1) > 0 for line in ax.get_lines()):
        ax.set_yscale("log")
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) > 1:
        ax.legend(fontsize="small")
    if not ax.get_lines():
        ax.text(0.5, 0.5, "not in this log", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.grid(alpha=0.3)


def shade_frozen_body(ax: Any, records: list[dict[str, Any]]) -> None:
    """Shade the updates during which only the CTC head trained (`body_frozen`)."""
    frozen = [r["update"] for r in records if r.get("body_frozen")]
    if frozen:
        ax.axvspan(0, max(frozen), color="tab:gray", alpha=0.15, label="head only (body frozen)")


def loss_terms(ax: Any, records: list[dict[str, Any]], facts: dict[str, Any]) -> None:
    draw_lines(ax, records, [("loss", "total loss", "-"), ("contrastive_loss", "contrastive $L_m$", "-"),
                             ("diversity_loss", "diversity $L_d$ (unweighted)", "-"),
                             ("feature_penalty", "feature penalty (unweighted)", "-"),
                             ("dev_contrastive_loss", "dev contrastive $L_m$", DEV_STYLE)])
    finish(ax, "Loss terms", "loss per masked step", log_scale=True)


def accuracy(ax: Any, records: list[dict[str, Any]], facts: dict[str, Any]) -> None:
    draw_lines(ax, records, [("accuracy", "train", "-"), ("dev_accuracy", "dev", DEV_STYLE)])
    if facts.get("chance_accuracy"):
        ax.axhline(facts["chance_accuracy"], color="gray", linestyle=":", label="chance 1/(K+1)")
    finish(ax, "Contrastive accuracy (true latent ranked first)", "accuracy")


def perplexity(ax: Any, records: list[dict[str, Any]], facts: dict[str, Any]) -> None:
    draw_lines(ax, records, [("code_perplexity", "code (hard choices)", "-"),
                             ("softmax_perplexity", "softmax (averaged probabilities)", "-"),
                             ("dev_code_perplexity", "dev code", DEV_STYLE)])
    if facts.get("codebook_size"):
        ax.axhline(facts["codebook_size"], color="gray", linestyle=":", label="G·V (every entry used)")
    finish(ax, "Codebook perplexity", "perplexity (sum over groups)")


def temperature(ax: Any, records: list[dict[str, Any]], facts: dict[str, Any]) -> None:
    draw_lines(ax, records, [("temperature", "Gumbel temperature", "-")])
    finish(ax, "Gumbel softmax temperature", "temperature τ")


def learning_rate(ax: Any, records: list[dict[str, Any]], facts: dict[str, Any]) -> None:
    draw_lines(ax, records, [("lr", "learning rate", "-")])
    finish(ax, "Learning rate", "learning rate")


def gradient_norm(ax: Any, records: list[dict[str, Any]], facts: dict[str, Any]) -> None:
    draw_lines(ax, records, [("grad_norm", "before clipping", "-")])
    if facts.get("clip_norm"):
        ax.axhline(facts["clip_norm"], color="gray", linestyle=":", label="clipping threshold")
    finish(ax, "Gradient norm", "total L2 norm", log_scale=True)


def ctc_loss(ax: Any, records: list[dict[str, Any]], facts: dict[str, Any]) -> None:
    draw_lines(ax, records, [("loss", "train CTC loss", "-")])
    shade_frozen_body(ax, records)
    finish(ax, "CTC loss", "loss per utterance", log_scale=True)


def blank_fraction(ax: Any, records: list[dict[str, Any]], facts: dict[str, Any]) -> None:
    draw_lines(ax, records, [("blank_fraction", "frames whose best label is blank", "-")])
    shade_frozen_body(ax, records)
    ax.set_ylim(0, 1.02)
    finish(ax, "Blank fraction", "share of frames")


def error_rates(ax: Any, records: list[dict[str, Any]], facts: dict[str, Any]) -> None:
    draw_lines(ax, records, [("dev_cer", "dev CER", DEV_STYLE), ("dev_wer", "dev WER", DEV_STYLE)])
    finish(ax, "Dev error rates (greedy decoding)", "error rate")


PRETRAIN_PANELS = (loss_terms, accuracy, perplexity, temperature, learning_rate, gradient_norm)
FINETUNE_PANELS = (ctc_loss, blank_fraction, error_rates, learning_rate, gradient_norm)
