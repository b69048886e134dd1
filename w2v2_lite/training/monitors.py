"""Health monitors: the failures users of wav2vec 2.0 meet, noticed and explained.

Each check reads the records the training loop logs and returns plain-language
warnings that name the likely cause and the fix. A warning is given once per kind.

- Codebook collapse (transformers #14387, fairseq #3735): code perplexity falling to a
  few codes, or to a small part of the most the run had used, or contrastive accuracy
  stuck at chance or at 1.
- Non-finite loss (speechbrain #1803): the loop skips the update and counts it; after
  `max_bad_updates` in a row it stops.
- CTC emitting only blanks (fairseq #3425, transformers #10884) after some updates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


class TrainingDiverged(RuntimeError):
    """Too many updates in a row had a NaN or infinite loss."""


@dataclass
class HealthMonitor:
    """Watch the logged records of a run; `check(record)` returns new warnings.

    num_entries: G * V of the quantizer (pretraining). num_negatives: K, so chance
    accuracy is 1 / (1 + K). window: updates averaged before judging. Checks start after
    `warmup` updates, when a healthy run has moved away from its start.

    Collapse is judged two ways on the window's mean code perplexity: below
    `collapse_fraction` of G * V, or below `collapse_drop` of the highest mean the run
    reached (its peak is tracked from the first full window, warmup included). The
    second catches a tiny model that keeps a dozen codes of 128: without the diversity
    loss the shipped recipe falls from about 100 to 13-20 and stays there, while its
    healthy runs never went below 85 (`experiments/ablations.json`).
    """

    num_entries: int = 0
    num_negatives: int = 0
    window: int = 50
    warmup: int = 200
    collapse_fraction: float = 0.1
    collapse_drop: float = 0.25
    max_bad_updates: int = 20
    blank_updates: int = 1000
    given: set[str] = field(default_factory=set)
    bad_in_a_row: int = 0
    bad_total: int = 0
    peak_perplexity: float = 0.0
    recent: deque = field(default_factory=lambda: deque(maxlen=50))

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.window)

    def _once(self, kind: str, message: str) -> list[str]:
        if kind in self.given:
            return []
        self.given.add(kind)
        return [message]

    def non_finite(self, update: int) -> list[str]:
        """Count a skipped update; raise `TrainingDiverged` after too many in a row."""
        self.bad_in_a_row += 1
        self.bad_total += 1
        if self.bad_in_a_row >= self.max_bad_updates:
            raise TrainingDiverged(
                f"{self.bad_in_a_row} updates in a row (up to update {update}) had a NaN or infinite loss, so "
                "training stopped. Likely causes: a learning rate too high for this batch size, or fp16; "
                "lower the learning rate, keep clipping on (clip_norm), train in bf16 or fp32.")
        return [f"update {update}: the loss is NaN or infinite; the update was skipped "
                f"({self.bad_total} so far). If it repeats, lower the learning rate or turn on clip_norm."]

    def check(self, update: int, record: dict) -> list[str]:
        """Warnings for one logged training record (after a finite update)."""
        self.bad_in_a_row = 0
        self.recent.append(record)
        if len(self.recent) < self.recent.maxlen:
            return []
        mean = {key: sum(r[key] for r in self.recent) / len(self.recent)
                for key in ("code_perplexity", "accuracy", "blank_fraction")
                if all(key in r for r in self.recent)}
        peak = self.peak_perplexity
        if "code_perplexity" in mean:
            self.peak_perplexity = max(peak, mean["code_perplexity"])
        if update < self.warmup:
            return []
        warnings: list[str] = []
        if "code_perplexity" in mean and self.num_entries:
            perplexity = mean["code_perplexity"]
            if perplexity < self.collapse_fraction * self.num_entries or perplexity < self.collapse_drop * peak:
                warnings += self._once("collapse", (
                    f"update {update}: codebook collapse: the quantizer uses about {perplexity:.1f} of "
                    f"its {self.num_entries} codes (code perplexity; the run had used {peak:.1f}). The diversity "
                    "loss is too weak or the Gumbel temperature falls too fast: raise diversity_weight (the "
                    "paper's 0.1 over a G*V-normalised term), anneal more slowly, or check that distractors "
                    "come from masked steps only."))
        if "accuracy" in mean and self.num_negatives:
            chance = 1.0 / (1 + self.num_negatives)
            if mean["accuracy"] <= 1.5 * chance:
                warnings += self._once("chance", (
                    f"update {update}: contrastive accuracy is stuck at chance ({mean['accuracy']:.3f}, chance "
                    f"{chance:.3f}). The learning rate may be too low or too high, or the targets collapsed; try "
                    "another learning rate, longer crops, or more data (fairseq #3744)."))
            elif mean["accuracy"] >= 0.99:
                warnings += self._once("trivial", (
                    f"update {update}: contrastive accuracy is {mean['accuracy']:.3f}: the task has become "
                    "trivial, which a collapsed codebook or distractors that are easy to tell apart cause. Check "
                    "the code perplexity and that distractors come from the same utterance."))
        if "blank_fraction" in mean and update >= self.blank_updates and mean["blank_fraction"] >= 0.999:
            warnings += self._once("blanks", (
                f"update {update}: CTC still emits only blanks. Early in fine-tuning this is normal (fairseq "
                "#3425); this late the learning rate is too low, the body is frozen too long "
                "(freeze_finetune_updates), or the labels are wrong; check them with the tokenizer."))
        return warnings

    def state(self) -> dict[str, object]:
        """What a checkpoint keeps, so that a resumed run judges as an uninterrupted one."""
        return {"peak_perplexity": self.peak_perplexity, "given": sorted(self.given),
                "recent": list(self.recent), "bad_total": self.bad_total}

    def load_state(self, state: dict) -> None:
        self.peak_perplexity = state.get("peak_perplexity", 0.0)
        self.given = set(state.get("given", ()))
        self.recent.extend(state.get("recent", ()))
        self.bad_total = state.get("bad_total", self.bad_total)


def replay(monitor: HealthMonitor, log: list[dict]) -> list[str]:
    """The warnings `monitor` gives over the training records of a finished run's log.

    The warnings a run logged came from the monitor of its day; replaying judges every
    run of a table by today's. Skipped (non-finite) updates leave no record, so their
    warnings are taken from the log as they were.
    """
    warnings = [w for record in log for w in record.get("warnings", []) if "NaN or infinite" in w]
    for record in log:
        if "loss" in record and "update" in record:  # an evaluated update's record carries its dev_ metrics too
            warnings += monitor.check(record["update"], record)
    return warnings
