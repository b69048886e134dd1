"""Summarise a `mutmut run` (make mutation): mutants per module and status, then the survivors.

A survivor is a small change to the code (a flipped comparison, a dropped argument) that no
test noticed. Each one either needs a test, or is equivalent: it cannot change what the
code does. The equivalent ones reviewed so far are listed below, keyed by the line the
mutant removes and the line it adds, so they stay recognised when mutmut renumbers its
mutants; any other survivor is printed with its diff as one to look at.

Run from the repository root after `mutmut run`: python tests/mutation_summary.py
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict

STATUSES = ("killed", "survived", "timeout")

# (line removed, line added), stripped -> why the change cannot alter behaviour.
REVIEWED_EQUIVALENT = {
    ("draws = torch.randint(0, n - 1, (n, count), generator=generator)",
     "draws = torch.randint(n - 1, (n, count), generator=generator)"): "randint(high) starts at 0 anyway",
    ("indices = torch.arange(batch * steps).unsqueeze(-1).repeat(1, total)  # (B*T, K)",
     "indices = torch.arange(batch * steps).unsqueeze(+1).repeat(1, total)  # (B*T, K)"): "1-D: dim 1 is dim -1",
    ("masked = torch.nonzero(flat_mask[row * steps:(row + 1) * steps]).squeeze(-1) + row * steps",
     "masked = torch.nonzero(flat_mask[row * steps:(row + 1) * steps]).squeeze(+1) + row * steps"):
        "nonzero of 1-D is (n, 1): dim 1 is dim -1",
    ("masked = torch.nonzero(flat_mask).squeeze(-1)", "masked = torch.nonzero(flat_mask).squeeze(+1)"):
        "nonzero of 1-D is (n, 1): dim 1 is dim -1",
    ("entropy = -torch.xlogy(mean_probs, mean_probs).sum(dim=-1)  # (G,), with 0 log 0 = 0",
     "entropy = -torch.xlogy(mean_probs, mean_probs).sum(dim=+1)  # (G,), with 0 log 0 = 0"): "(G, V): dim 1 is dim -1",
    ("probs = scores.softmax(dim=-1).view(batch * steps, groups, codes)  # (B*T, G, V)",
     "probs = scores.softmax(dim=+1).view(batch * steps, groups, codes)  # (B*T, G, V)"): "2-D: dim 1 is dim -1",
    ("one_hot = F.one_hot(scores.argmax(dim=-1), codes).float()",
     "one_hot = F.one_hot(scores.argmax(dim=+1), codes).float()"): "2-D: dim 1 is dim -1",
    ("best = one_hot if not self.training else F.one_hot(scores.detach().argmax(dim=-1), codes).view_as(one_hot)",
     "best = one_hot if not self.training else F.one_hot(scores.detach().argmax(dim=+1), codes).view_as(one_hot)"):
        "2-D: dim 1 is dim -1",
    ("best = one_hot if not self.training else F.one_hot(scores.detach().argmax(dim=-1), codes).view_as(one_hot)",
     "best = one_hot if (not self.training) and False else F.one_hot(scores.detach().argmax(dim=-1), codes)"
     ".view_as(one_hot)"): "in eval one_hot already is the one-hot argmax of the scores",
    ('quantized = torch.einsum("ngv,gvd->ngd", one_hot, codebooks).reshape(batch, steps, -1)',
     'quantized = torch.einsum("NGV,GVD->NGD", one_hot, codebooks).reshape(batch, steps, -1)'):
        "einsum takes upper-case subscripts alike",
    ("nn.init.normal_(self.logits.weight, mean=0.0, std=1.0)", "nn.init.normal_(self.logits.weight, std=1.0)"):
        "mean=0.0 is the default",
    ("nn.init.normal_(self.logits.weight, mean=0.0, std=1.0)", "nn.init.normal_(self.logits.weight, mean=0.0, )"):
        "std=1.0 is the default",
    ("return (logits[:, 0] > logits[:, 1:].max(dim=-1).values).float().mean()",
     "return (logits[:, 0] > logits[:, 1:].max(dim=+1).values).float().mean()"): "(N, K): dim 1 is dim -1",
    ('logits[:, 1:] = logits[:, 1:].masked_fill(same_as_positive, float("-inf"))',
     'logits[:, 1:] = logits[:, 1:].masked_fill(same_as_positive, float("-INF"))'): 'float("-INF") is -inf',
    ("padded = torch.nn.functional.pad(mask.to(torch.int8), (1, 1))",
     "padded = torch.nn.functional.pad(mask.to(torch.int8), (2, 1))"): "another leading 0 adds no 0 -> 1 step",
    ("padded = torch.nn.functional.pad(mask.to(torch.int8), (1, 1))",
     "padded = torch.nn.functional.pad(mask.to(torch.int8), (1, 2))"): "a trailing 0 adds no 0 -> 1 step",
    ("return torch.tensor([self.symbol_ids[c] for c in self.normalize(text)], dtype=torch.long)",
     "return torch.tensor([self.symbol_ids[c] for c in self.normalize(text)], dtype=None)"):
        "a non-empty list of ints is int64 already (normalize rejects empty text)",
    ("return torch.tensor([self.symbol_ids[c] for c in self.normalize(text)], dtype=torch.long)",
     "return torch.tensor([self.symbol_ids[c] for c in self.normalize(text)], )"):
        "a non-empty list of ints is int64 already (normalize rejects empty text)",
    ("values = ids.tolist() if isinstance(ids, Tensor) else list(ids)",
     "values = ids.tolist() if (isinstance(ids, Tensor)) and False else list(ids)"):
        "list(tensor) gives 0-d tensors, which compare and index a tuple like ints",
    ("time = torch.arange(length, dtype=torch.float32) / sample_rate",
     "time = torch.arange(length, dtype=None) / sample_rate"): "int64 / int is float32 already",
    ("time = torch.arange(length, dtype=torch.float32) / sample_rate", "time = torch.arange(length, ) / sample_rate"):
        "int64 / int is float32 already",
    ("size = waveform.numel() + response.numel() - 1", "size = waveform.numel() + response.numel() + 1"):
        "a longer FFT only pads more zeros: the first L samples are the same linear convolution",
    ("if size <= 0:", "if size < 0:"):
        "an empty row then draws random numbers but still masks nothing; the other rows' masks change "
        "only as another seed would change them",
    ("symbols = [self.vocabulary[i] for i in values if len(SPECIAL_TOKENS) <= i < len(self.vocabulary)]",
     "symbols = [self.vocabulary[i] for i in values if len(SPECIAL_TOKENS) <= i <= len(self.vocabulary)]"):
        "differs only for an id past the vocabulary (IndexError instead of dropped), which a CTC head of "
        "vocab_size outputs never holds",
}
CPU_ONLY = ("a device argument dropped: the same on the CPU, where mutmut runs (sample_negatives and "
            "span_statistics need a second real device to tell; span_mask and contrastive_loss are tested on 'meta')")


def run_mutmut(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "mutmut", *args], capture_output=True, text=True, check=True).stdout


def mutant_diff(name: str) -> str:
    try:  # in-process: a second per mutant less than `mutmut show`
        from mutmut.__main__ import find_mutant, get_diff_for_mutant
    except ImportError:
        return run_mutmut("show", name)
    return get_diff_for_mutant(name, path=find_mutant(name).path)


def changed_lines(name: str) -> tuple[str, str]:
    """(removed, added) line of a mutant's diff, stripped; several lines are joined by ' / '."""
    diff = mutant_diff(name).splitlines()
    removed = [line[1:].strip() for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")]
    return " / ".join(removed), " / ".join(added)


def reason_if_equivalent(removed: str, added: str) -> str | None:
    if (removed, added) in REVIEWED_EQUIVALENT:
        return REVIEWED_EQUIVALENT[removed, added]
    if "device" in removed and (added.count("device") < removed.count("device") or "device=None" in added):
        return CPU_ONLY
    return None


def main() -> int:
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors: list[tuple[str, str]] = []
    for line in run_mutmut("results", "--all", "true").splitlines():
        name, _, status = line.strip().rpartition(": ")
        if not name.startswith("w2v2_lite."):
            continue
        module = name.rsplit(".", 1)[0]  # w2v2_lite.masking.x_span_mask__mutmut_3 -> w2v2_lite.masking
        counts[module][status] += 1
        if status == "survived":
            survivors.append((module, name))

    equivalent: Counter = Counter()
    to_review = []
    for module, name in survivors:
        removed, added = changed_lines(name)
        reason = reason_if_equivalent(removed, added)
        if reason is None:
            to_review.append((name, removed, added))
        else:
            equivalent[module] += 1

    header = f"{'module':<26} {'total':>6} {'killed':>7} {'survived':>9} {'(equivalent)':>13} {'timeout':>8} {'other':>6}"
    print(header)
    print("-" * len(header))
    totals: Counter = Counter()
    for module in sorted(counts):
        row = counts[module]
        other = sum(row.values()) - sum(row[s] for s in STATUSES)
        print(f"{module:<26} {sum(row.values()):>6} {row['killed']:>7} {row['survived']:>9} "
              f"{equivalent[module]:>13} {row['timeout']:>8} {other:>6}")
        totals.update(row)
    other = sum(totals.values()) - sum(totals[s] for s in STATUSES)
    print("-" * len(header))
    print(f"{'all':<26} {sum(totals.values()):>6} {totals['killed']:>7} {totals['survived']:>9} "
          f"{sum(equivalent.values()):>13} {totals['timeout']:>8} {other:>6}")
    if to_review:
        print(f"\n{len(to_review)} survivor(s) to look at: add a test that fails on it, or, if it cannot change "
              "behaviour, list it in tests/mutation_summary.py with the reason.")
        for name, removed, added in to_review:
            print(f"\n{name}\n  - {removed}\n  + {added}")
    else:
        print("\nEvery survivor is a reviewed equivalent mutant.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
