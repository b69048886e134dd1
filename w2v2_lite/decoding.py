"""CTC decoding: from per-frame character scores (B, T, V) to text.

Greedy decoding (the paper's "no LM" rows, Table 1) takes the best character of each
frame, merges runs of the same character and drops the blank:

    frames   _ _ H H _ E L L _ L O O _      (argmax per frame, `_` the blank)
    merged   H E L L O                      (a blank between the two L keeps them apart)

Beam search keeps the N best prefixes instead of one, summing the probabilities of all
the frame paths that spell the same prefix, and can add a word n-gram language model
(the paper's "4-gram" rows):

    score(W) = log P_CTC(W | X) + lm_weight * log P_LM(W) + word_score * |W|

The search itself is flashlight's (through `torchaudio.models.decoder.ctc_decoder`,
which needs the `flashlight-text` wheel); the language model is ours: `NGramLM` counts
the words of the training transcripts, smooths them with interpolated Kneser-Ney and
writes the standard ARPA text format, which flashlight reads with its built-in KenLM.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .data.tokenizer import WORD_DELIMITER, CharTokenizer


# ------------------------------------------------------------------ greedy decoding
@dataclass(frozen=True)
class TokenSpan:
    """One token of a CTC path: frames [start, end) and its mean per-frame probability."""

    token: int
    start: int
    end: int
    score: float


def merge_repeats(frame_tokens: Tensor, blank_id: int = 0, frame_log_probs: Tensor | None = None) -> list[TokenSpan]:
    """The CTC collapse B(path): frame_tokens (T,) -> one span per emitted token.

    Runs of the same id become one token, blanks are dropped (so a blank between two
    equal ids keeps them apart). frame_log_probs (T,): each frame's log-probability of
    its token, for the spans' scores (mean probability over the span; 1.0 without it).
    """
    values = frame_tokens.tolist()
    probs = frame_log_probs.exp().tolist() if frame_log_probs is not None else [1.0] * len(values)
    spans, start = [], 0
    for t in range(1, len(values) + 1):
        if t == len(values) or values[t] != values[start]:
            if values[start] != blank_id:
                spans.append(TokenSpan(values[start], start, t, sum(probs[start:t]) / (t - start)))
            start = t
    return spans


def _lengths(logits: Tensor, output_lengths: Tensor | None) -> list[int]:
    """output_lengths (B,) as a list, or T for every row when None."""
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(logits.shape)}")
    if output_lengths is None:
        return [logits.shape[1]] * logits.shape[0]
    lengths = output_lengths.tolist()
    if len(lengths) != logits.shape[0] or any(not 0 <= n <= logits.shape[1] for n in lengths):
        raise ValueError(f"output_lengths {lengths} do not fit logits of shape {tuple(logits.shape)}")
    return lengths


def greedy_spans(logits: Tensor, output_lengths: Tensor | None = None, blank_id: int = 0) -> list[list[TokenSpan]]:
    """Best path decoding with frame spans: logits (B, T, V), output_lengths (B,) -> B lists of spans.

    Frames past a row's length (padding) are ignored.
    """
    lengths = _lengths(logits, output_lengths)
    log_probs = F.log_softmax(logits.detach().float(), dim=-1)  # (B, T, V)
    best_log_probs, best = log_probs.max(dim=-1)  # (B, T) each
    return [merge_repeats(best[b, :n], blank_id, best_log_probs[b, :n]) for b, n in enumerate(lengths)]


def greedy_decode(logits: Tensor, output_lengths: Tensor | None = None,
                  tokenizer: CharTokenizer | None = None) -> list[str]:
    """Best path decoding: logits (B, T, V), output_lengths (B,) -> B transcripts.

    argmax per frame, merge repeats, drop blanks, ids -> characters with `|` -> space.
    """
    tokenizer = tokenizer or CharTokenizer()
    lengths = _lengths(logits, output_lengths)
    best = logits.detach().argmax(dim=-1).cpu()  # (B, T)
    return [tokenizer.decode([span.token for span in merge_repeats(best[b, :n], tokenizer.blank_id)])
            for b, n in enumerate(lengths)]


# ------------------------------------------------------- word n-gram language model
SENTENCE_START, SENTENCE_END, UNKNOWN_WORD = "<s>", "</s>", "<unk>"
ARPA_LOG_ZERO = -99.0  # ARPA's log10 probability of <s>, which is only ever a context
FALLBACK_DISCOUNT = 0.5  # when an order has no n-gram seen once or none seen twice


@dataclass(frozen=True)
class NGramLM:
    """A backoff word n-gram model: what an ARPA file holds.

    log10_probs: n-gram (w_1, ..., w_n) -> log10 P(w_n | w_1 ... w_n-1), every order.
    log10_backoffs: context (w_1, ..., w_k) -> log10 of its backoff weight.
    An n-gram not in the table backs off: P(w | h) = bow(h) * P(w | h without its first word).
    """

    order: int
    log10_probs: dict[tuple[str, ...], float]
    log10_backoffs: dict[tuple[str, ...], float]

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sequence[str]], order: int = 3) -> "NGramLM":
        """Interpolated Kneser-Ney (Chen and Goodman, 1998, one discount per order) from word lists.

        For an n-gram h w of order n < N the count is its continuation count, the number
        of distinct words seen before it, N1+(. h w), not how often it occurred: a word
        that only ever follows one other word ("FRANCISCO") is a poor guess in a new
        context. The highest order and n-grams that start with <s> keep raw counts c.
        With a(.) those counts, D_n = n1 / (n1 + 2 n2) from the order's counts of counts,

            P(w | h) = max(a(h w) - D_n, 0) / sum_v a(h v)  +  gamma(h) P(w | h'),
            gamma(h) = D_n * |{v : a(h v) > 0}| / sum_v a(h v),

        h' is h without its first word, and the unigrams interpolate with the uniform
        distribution over the vocabulary (with </s> and <unk>). Every P(. | h) sums to
        one, and gamma(h) is exactly the ARPA backoff weight of h.
        """
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        raw: list[Counter] = [Counter() for _ in range(order + 1)]  # raw[n]: counts of n-grams
        for words in sentences:
            padded = (SENTENCE_START, *words, SENTENCE_END)
            for n in range(1, order + 1):
                raw[n].update(padded[i:i + n] for i in range(len(padded) - n + 1))
        if not raw[1]:
            raise ValueError("no sentences to count: the language model needs at least one transcript")
        adjusted: list[Counter] = [Counter() for _ in range(order + 1)]
        adjusted[order] = raw[order]
        for n in range(order - 1, 0, -1):
            for gram in raw[n + 1]:  # one continuation per distinct left neighbour
                adjusted[n][gram[1:]] += 1
            for gram, count in raw[n].items():
                if gram[0] == SENTENCE_START:
                    adjusted[n][gram] = count
        vocabulary = sorted({gram[0] for gram in raw[1]} - {SENTENCE_START} | {SENTENCE_END, UNKNOWN_WORD})
        log10_probs: dict[tuple[str, ...], float] = {}
        log10_backoffs: dict[tuple[str, ...], float] = {}
        model = cls(order, log10_probs, log10_backoffs)
        for n in range(1, order + 1):
            counts = {gram: count for gram, count in adjusted[n].items() if gram != (SENTENCE_START,)}
            discount = kneser_ney_discount(counts.values())
            totals, types = defaultdict(int), defaultdict(int)  # per context: sum_v a(h v), |{v}|
            for gram, count in counts.items():
                totals[gram[:-1]] += count
                types[gram[:-1]] += 1
            gammas = {context: discount * types[context] / totals[context] for context in totals}
            for gram, count in counts.items():
                context = gram[:-1]
                lower = 1 / len(vocabulary) if n == 1 else 10 ** model.log10_prob(gram[-1], context[1:])
                log10_probs[gram] = math.log10((count - discount) / totals[context] + gammas[context] * lower)
            if n == 1:
                for word in vocabulary:  # words never seen as a unigram count (<unk>) get the uniform share
                    log10_probs.setdefault((word,), math.log10(gammas[()] / len(vocabulary)))
                log10_probs[(SENTENCE_START,)] = ARPA_LOG_ZERO
            else:
                log10_backoffs.update({context: math.log10(gamma) for context, gamma in gammas.items()})
        return model

    @property
    def vocabulary(self) -> list[str]:
        """The words the model knows, without <s>, </s> and <unk>, sorted."""
        return sorted(gram[0] for gram in self.log10_probs
                      if len(gram) == 1 and gram[0] not in (SENTENCE_START, SENTENCE_END, UNKNOWN_WORD))

    def log10_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """log10 P(word | context) by the ARPA backoff rule; unknown words score as <unk>."""
        if (word,) not in self.log10_probs:
            word = UNKNOWN_WORD
        context = tuple(context)[max(0, len(context) - self.order + 1):] if self.order > 1 else ()
        backoff = 0.0
        while (*context, word) not in self.log10_probs:
            backoff += self.log10_backoffs.get(context, 0.0)
            context = context[1:]
        return backoff + self.log10_probs[(*context, word)]

    def sentence_log10_prob(self, words: Sequence[str]) -> float:
        """log10 P(<s> w_1 ... w_n </s>), the sum of every word's and the end's log10 probability."""
        padded = (SENTENCE_START, *words, SENTENCE_END)
        return sum(self.log10_prob(padded[i], padded[:i]) for i in range(1, len(padded)))

    def write_arpa(self, path: str | os.PathLike) -> Path:
        """Write the model as an ARPA file (the text format of SRILM and KenLM); returns the path."""
        path = Path(path)
        by_order: list[list[tuple[str, ...]]] = [[] for _ in range(self.order + 1)]
        for gram in sorted(self.log10_probs):
            by_order[len(gram)].append(gram)
        lines = ["\\data\\"] + [f"ngram {n}={len(by_order[n])}" for n in range(1, self.order + 1)]
        for n in range(1, self.order + 1):
            lines += ["", f"\\{n}-grams:"]
            for gram in by_order[n]:
                line = f"{self.log10_probs[gram]:.7f}\t{' '.join(gram)}"
                if gram in self.log10_backoffs:
                    line += f"\t{self.log10_backoffs[gram]:.7f}"
                lines.append(line)
        path.write_text("\n".join(lines + ["", "\\end\\", ""]))
        return path


def kneser_ney_discount(counts: Iterable[int]) -> float:
    """D = n1 / (n1 + 2 n2) (Ney, Essen and Kneser, 1994), n_k the number of n-grams counted k times.

    Falls back to 0.5 when n1 or n2 is zero (a corpus of a few sentences), so that D stays in (0, 1).
    """
    counts_of_counts = Counter(counts)
    n1, n2 = counts_of_counts[1], counts_of_counts[2]
    return n1 / (n1 + 2 * n2) if n1 and n2 else FALLBACK_DISCOUNT


def read_transcripts(path: str | os.PathLike, tokenizer: CharTokenizer | None = None) -> list[list[str]]:
    """A transcript file (fairseq's .wrd: one utterance per line) -> the words of each line.

    Words are normalised as the tokenizer's targets are (upper case); blank lines are
    skipped; a line with characters outside the vocabulary is an error naming its number.
    """
    tokenizer = tokenizer or CharTokenizer()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such transcript file; give a fairseq .wrd file with one transcript "
                                "per line (make-corpus writes one beside each manifest)")
    sentences = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                sentences.append(tokenizer.normalize(line).split(WORD_DELIMITER))
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: {error}") from None
    if not sentences:
        raise ValueError(f"{path}: no transcripts in the file; the language model needs at least one")
    return sentences


# --------------------------------------------------------------------- beam search
@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (KenLM prints a progress bar there while it reads an ARPA file)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class BeamSearchDecoder:
    """CTC prefix beam search, optionally with a word n-gram LM: logits (B, T, V) -> B transcripts.

    Without `lm` the search is lexicon-free: any character string can come out, scored by
    the acoustic model alone (beam 1 is greedy decoding). With `lm` the words are spelled
    from the LM's vocabulary (its lexicon: each word -> its letters and `|`), and each
    finished word adds lm_weight * log P_LM(word | previous words) + word_score.

    beam_size: prefixes kept per frame. beam_threshold: prefixes scoring this much below
    the best are dropped. Paths spelling the same prefix are summed (log-add), as in the
    CTC prefix beam search, not only the best one kept.
    """

    def __init__(self, tokenizer: CharTokenizer | None = None, beam_size: int = 50, lm: NGramLM | None = None,
                 lm_weight: float = 2.0, word_score: float = 0.0, beam_threshold: float = 50.0) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        try:
            from torchaudio.models.decoder import ctc_decoder  # RuntimeError without flashlight-text
        except (ImportError, RuntimeError) as error:
            raise ImportError(f"beam search needs torchaudio with the flashlight-text package ({error}); "
                              "install it with `pip install flashlight-text`, or decode greedily") from None
        self.tokenizer = tokenizer or CharTokenizer()
        self.lm = lm
        options = dict(tokens=list(self.tokenizer.vocabulary), beam_size=beam_size, beam_threshold=beam_threshold,
                       blank_token=self.tokenizer.vocabulary[self.tokenizer.blank_id], sil_token=WORD_DELIMITER,
                       unk_word=UNKNOWN_WORD, log_add=True)
        if lm is None:
            self.decoder = ctc_decoder(lexicon=None, lm=None, **options)
            return
        with tempfile.TemporaryDirectory() as folder:  # KenLM and the lexicon are read in full here
            lexicon = Path(folder) / "lexicon.txt"
            lexicon.write_text("".join(f"{word} {' '.join(word)} {WORD_DELIMITER}\n" for word in lm.vocabulary))
            arpa = lm.write_arpa(Path(folder) / "lm.arpa")
            with _quiet_stderr():
                self.decoder = ctc_decoder(lexicon=str(lexicon), lm=str(arpa), lm_weight=lm_weight,
                                           word_score=word_score, **options)

    def __call__(self, logits: Tensor, output_lengths: Tensor | None = None) -> list[str]:
        """logits (B, T, V), output_lengths (B,) -> the best transcript of each row."""
        lengths = _lengths(logits, output_lengths)
        log_probs = F.log_softmax(logits.detach().float(), dim=-1).cpu().contiguous()  # (B, T, V)
        hypotheses = self.decoder(log_probs, torch.tensor(lengths, dtype=torch.int32))
        texts = []
        for best in (row[0] if row else None for row in hypotheses):
            if best is None:
                texts.append("")
            elif self.lm is not None:
                texts.append(" ".join(best.words))
            else:
                texts.append(self.tokenizer.decode(best.tokens))
        return texts
