"""Word and character error rates, the paper's evaluation metrics.

WER = (substitutions + deletions + insertions) / reference words, summed over the
whole test set (not averaged per utterance), as in the paper's tables; CER is the
same over characters, spaces included.
"""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance: fewest substitutions, deletions and insertions turning one into the other.

    Dynamic programming over one row: O(len(reference) * len(hypothesis)) time.
    """
    previous = list(range(len(hypothesis) + 1))  # distance from reference[:0] to each prefix of hypothesis
    for i, ref_item in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_item in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1,  # deletion
                             current[j - 1] + 1,  # insertion
                             previous[j - 1] + (ref_item != hyp_item))  # substitution or match
        previous = current
    return previous[-1]


def _as_list(texts: str | Sequence[str]) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)


def error_rate(references: str | Sequence[str], hypotheses: str | Sequence[str], unit: str) -> float:
    """Total edit distance / total reference length, in words (unit="word") or characters ("char")."""
    references, hypotheses = _as_list(references), _as_list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses; give one of each per utterance")
    split = str.split if unit == "word" else (lambda text: list(" ".join(text.split())))
    errors = total = 0
    for reference, hypothesis in zip(references, hypotheses):
        reference_units = split(reference)
        errors += edit_distance(reference_units, split(hypothesis))
        total += len(reference_units)
    if total == 0:
        raise ValueError("the references are empty, so the error rate is undefined")
    return errors / total


def word_error_rate(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """WER over a set of utterances (one reference and one hypothesis string each)."""
    return error_rate(references, hypotheses, "word")


def character_error_rate(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """CER over a set of utterances; runs of whitespace count as one space."""
    return error_rate(references, hypotheses, "char")
