"""Span masking (paper section 3.1) with fairseq's semantics: statistics, padding, edge cases."""

from __future__ import annotations

import pytest
import torch

from w2v2_lite.masking import apply_mask, span_mask, span_statistics

P, M = 0.065, 10  # the paper's span start probability and span length
MASK_PROB = P * M  # fairseq's mask_prob = 0.65


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the maximal runs of True in a 1-D bool tensor, counted with a plain loop."""
    runs, current = [], 0
    for value in row.tolist():
        if value:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return runs


@pytest.fixture(scope="module")
def paper_mask() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return span_mask((64, 2000), MASK_PROB, M, generator=generator)


def test_paper_masked_fraction_is_about_49_percent(paper_mask):
    fraction = paper_mask.float().mean().item()
    analytic = 1 - (1 - P) ** M  # each step is masked unless none of the M starts covering it fired
    assert analytic == pytest.approx(0.4894, abs=1e-3)
    assert fraction == pytest.approx(0.49, abs=0.015)
    assert fraction == pytest.approx(analytic, abs=0.015)


def test_paper_mean_merged_span_is_about_14_7_frames(paper_mask):
    runs = [length for row in paper_mask for length in _runs(row)]
    mean_run = sum(runs) / len(runs)
    # A run starts at t when t starts a span and none of the M steps before did.
    analytic = (1 - (1 - P) ** M) / (P * (1 - P) ** M)
    assert analytic == pytest.approx(14.7, abs=0.1)
    assert mean_run == pytest.approx(14.7, abs=0.5)
    assert mean_run == pytest.approx(analytic, abs=0.5)


def test_span_statistics_agrees_with_a_loop_count(paper_mask):
    fraction, mean_run = span_statistics(paper_mask)
    runs = [length for row in paper_mask for length in _runs(row)]
    assert fraction == pytest.approx(paper_mask.sum().item() / paper_mask.numel())
    assert mean_run == pytest.approx(sum(runs) / len(runs))


def test_span_statistics_counts_only_real_steps_with_lengths():
    mask = torch.tensor([[True, True, False, False], [True, False, True, False]])
    fraction, mean_run = span_statistics(mask, lengths=torch.tensor([2, 4]))
    assert fraction == pytest.approx(4 / 6)
    assert mean_run == pytest.approx(4 / 3)


def test_span_statistics_of_a_single_step_and_a_single_run():
    assert span_statistics(torch.tensor([[True]])) == (1.0, 1.0)
    assert span_statistics(torch.tensor([[False, True, True, False]])) == (0.5, 2.0)


def test_spans_overlap_and_merge_into_longer_runs(paper_mask):
    runs = [length for row in paper_mask for length in _runs(row)]
    assert max(runs) > M
    # Away from the end of the utterance no run is shorter than one span.
    interior = paper_mask[:, : 2000 - M]
    for row in interior[:8]:
        padded_runs = _runs(row)[1:-1]  # the first/last may be cut by the window
        assert min(padded_runs) >= M


def test_number_of_spans_follows_fairseq_formula():
    # With M = 1 every span is a single step, and the starts are drawn without
    # replacement, so the masked count IS the number of spans: int(mask_prob * T / M + u).
    generator = torch.Generator().manual_seed(1)
    mask = span_mask((200, 100), 0.305, 1, generator=generator)  # 30.5 + u -> 30 or 31
    counts = mask.sum(dim=1)
    assert set(counts.tolist()) <= {30, 31}
    assert 60 < (counts == 31).sum().item() < 140  # u ~ U[0, 1): about half round up


def test_no_minimum_number_of_spans_by_default():
    # fairseq's compute_mask_indices has min_masks=0; ModelConfig passes its own minimum.
    mask = span_mask((200, 20), 0.01, 3, generator=torch.Generator().manual_seed(14))
    assert (~mask.any(dim=1)).sum() > 150  # int(0.01 * 20 / 3 + u) is 0 for 99% of rows


def test_min_spans_respected_on_short_inputs():
    generator = torch.Generator().manual_seed(2)
    # T = 12 gives int(0.65 * 12 / 10 + u) = 0 or 1 spans; min_spans raises it to 2.
    mask = span_mask((500, 12), MASK_PROB, 4, min_spans=2, generator=generator)
    counts = mask.sum(dim=1)
    assert (counts >= 4).all()  # at least one whole span of 4 (two spans may overlap)
    # With M = 1 the spans are distinct single steps, so the count is exactly min_spans.
    mask = span_mask((500, 12), 0.01, 1, min_spans=3, generator=generator)
    assert (mask.sum(dim=1) == 3).all()


def test_a_single_step_utterance_is_masked_as_fairseq_does():
    # T = 1: fairseq widens the start range to num_spans + 1 = 2, so the one span starts at
    # step 0 (masking it) or at step 1 (cut away) with equal chance.
    mask = span_mask((400, 1), MASK_PROB, M, min_spans=1, generator=torch.Generator().manual_seed(15))
    assert 150 < mask.sum().item() < 250


def test_min_spans_larger_than_the_sequence_masks_within_bounds():
    generator = torch.Generator().manual_seed(3)
    mask = span_mask((10, 5), MASK_PROB, M, min_spans=4, generator=generator)
    assert mask.shape == (10, 5)
    assert mask.any(dim=1).all()


def test_zero_probability_masks_nothing():
    assert not span_mask((4, 50), 0.0, M).any()
    assert not span_mask((4, 50), 0.0, M, min_spans=2).any()  # min_spans applies only when masking
    assert span_mask((4, 0), MASK_PROB, M).shape == (4, 0)


def test_padding_is_never_masked_and_spans_follow_real_length():
    generator = torch.Generator().manual_seed(4)
    lengths = torch.tensor([2000, 500, 100, 0])
    mask = span_mask((4, 2000), MASK_PROB, M, lengths=lengths, generator=generator)
    for row, length in enumerate(lengths.tolist()):
        assert not mask[row, length:].any()
    assert not mask[3].any()
    # The number of spans follows the real length: with M = 1 the count is int(0.305 * n + u).
    lengths = torch.tensor([1000, 100, 10])
    for _ in range(20):
        mask = span_mask((3, 1000), 0.305, 1, lengths=lengths, generator=generator)
        counts = mask.sum(dim=1).tolist()
        assert counts[0] in (305, 306) and counts[1] in (30, 31) and counts[2] in (3, 4)
        assert not mask[1, 100:].any() and not mask[2, 10:].any()


def test_spans_running_past_a_short_real_length_are_cut():
    # With fewer places than spans, fairseq widens the start range and spans run past the
    # end of the utterance; they must be cut at the real length, not at the padded one.
    generator = torch.Generator().manual_seed(9)
    lengths = torch.tensor([5, 3, 12])
    for _ in range(20):
        mask = span_mask((3, 40), MASK_PROB, M, min_spans=2, lengths=lengths, generator=generator)
        for row, length in enumerate(lengths.tolist()):
            assert mask[row, :length].any()
            assert not mask[row, length:].any()


def test_an_empty_row_does_not_stop_the_rows_after_it():
    lengths = torch.tensor([0, 100, 0, 80])
    mask = span_mask((4, 100), MASK_PROB, M, min_spans=1, lengths=lengths, generator=torch.Generator().manual_seed(10))
    assert mask.any(dim=1).tolist() == [False, True, False, True]


@pytest.mark.parametrize("padded", [False, True])
def test_span_starts_are_drawn_from_range_t_minus_m(padded):
    # fairseq's compute_mask_indices (fairseq/data/data_utils.py) draws the starts from
    # range(T - M) while that leaves more places than spans: a span always fits, so the
    # last step is never masked. With min_spans=1 and a tiny mask_prob, one span per row.
    steps, span = 20, 3
    lengths = torch.full((3000,), steps) if padded else None
    mask = span_mask((3000, 2 * steps if padded else steps), 0.01, span, min_spans=1, lengths=lengths,
                     generator=torch.Generator().manual_seed(11))
    assert (mask.sum(dim=1) == span).all()
    starts = mask.int().argmax(dim=1)
    assert set(starts.tolist()) == set(range(steps - span))
    assert not mask[:, steps - 1:].any()


def test_too_few_places_widen_the_start_range_to_one_more_than_the_spans():
    # T - M = 2 places for 2 spans: fairseq then draws 2 distinct starts from range(3) and
    # cuts the spans at the end, so each row is one run: starts {0, 1}, {0, 2} or {1, 2}.
    mask = span_mask((600, 12), 0.01, 10, min_spans=2, generator=torch.Generator().manual_seed(12))
    runs = set()
    for row in mask:
        masked = row.nonzero().squeeze(-1)
        first, last = masked.min().item(), masked.max().item()
        assert len(masked) == last - first + 1
        runs.add((first, last))
    assert runs == {(0, 10), (0, 11), (1, 11)}


def test_padding_aware_fraction_matches_the_paper_on_the_real_part():
    generator = torch.Generator().manual_seed(5)
    lengths = torch.full((64,), 1000)
    mask = span_mask((64, 2000), MASK_PROB, M, lengths=lengths, generator=generator)
    fraction, _ = span_statistics(mask, lengths)
    assert fraction == pytest.approx(0.49, abs=0.02)


def test_require_same_masks_gives_equal_counts_per_row():
    generator = torch.Generator().manual_seed(6)
    lengths = torch.tensor([300, 250, 120, 300])
    mask = span_mask((4, 300), MASK_PROB, M, lengths=lengths, require_same_masks=True, generator=generator)
    counts = mask.sum(dim=1)
    assert (counts == counts[0]).all() and counts[0] > 0
    for row, length in enumerate(lengths.tolist()):
        assert not mask[row, length:].any()
    # Without it the rows differ (otherwise the flag would be untested).
    free = span_mask((4, 300), MASK_PROB, M, lengths=lengths, generator=torch.Generator().manual_seed(6))
    assert len(set(free.sum(dim=1).tolist())) > 1


def test_require_same_masks_keeps_random_steps_not_the_first_ones():
    # fairseq trims a row with np.random.choice(mask_idc, min_len, replace=False), so the kept
    # steps of a long row spread over all of it; keeping the first ones would bunch them at the start.
    lengths = torch.tensor([400, 40])
    mean_positions = []
    for seed in range(20):
        mask = span_mask((2, 400), MASK_PROB, M, lengths=lengths, require_same_masks=True,
                         generator=torch.Generator().manual_seed(seed))
        assert mask[0].sum() == mask[1].sum()
        mean_positions.append(mask[0].nonzero().float().mean().item())
    assert sum(mean_positions) / len(mean_positions) > 120  # ~200 for random steps, ~25 for the first ones


def test_require_same_masks_is_reproducible_with_a_generator():
    draws = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        draws.append(span_mask((2, 300), MASK_PROB, M, lengths=torch.tensor([300, 120]), require_same_masks=True,
                               generator=torch.Generator().manual_seed(13)))
    assert torch.equal(draws[0], draws[1])


def test_reproducible_with_a_generator():
    first = span_mask((8, 300), MASK_PROB, M, generator=torch.Generator().manual_seed(7))
    second = span_mask((8, 300), MASK_PROB, M, generator=torch.Generator().manual_seed(7))
    other = span_mask((8, 300), MASK_PROB, M, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_span_mask_dtype_and_device():
    mask = span_mask((2, 30), MASK_PROB, M, generator=torch.Generator().manual_seed(0), device="cpu")
    assert mask.dtype == torch.bool and mask.shape == (2, 30) and mask.device.type == "cpu"
    # "meta" stands in for a GPU: the mask must land on the device asked for, also when empty.
    for mask_prob in (MASK_PROB, 0.0):
        assert span_mask((2, 30), mask_prob, M, device="meta").device.type == "meta"


def test_apply_mask_replaces_exactly_the_masked_steps():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 5)
    embedding = torch.randn(5)
    time_mask = torch.zeros(2, 7, dtype=torch.bool)
    time_mask[0, [1, 2, 5]] = True
    time_mask[1, [0]] = True
    out = apply_mask(x, time_mask, embedding)
    assert out.shape == x.shape
    for b in range(2):
        for t in range(7):
            expected = embedding if time_mask[b, t] else x[b, t]
            assert torch.equal(out[b, t], expected)
    assert not torch.equal(x[0, 1], embedding)  # the input was not modified in place


def test_apply_mask_zeros_masked_channels_at_every_step():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6) + 3.0  # no accidental zeros
    channel_mask = torch.zeros(2, 6, dtype=torch.bool)
    channel_mask[0, [0, 3]] = True
    channel_mask[1, [5]] = True
    out = apply_mask(x, None, None, channel_mask)
    for b in range(2):
        for c in range(6):
            if channel_mask[b, c]:
                assert (out[b, :, c] == 0).all()
            else:
                assert torch.equal(out[b, :, c], x[b, :, c])


def test_apply_mask_time_and_channel_together():
    x = torch.ones(1, 3, 4)
    embedding = torch.full((4,), 7.0)
    time_mask = torch.tensor([[False, True, False]])
    channel_mask = torch.tensor([[False, False, True, False]])
    out = apply_mask(x, time_mask, embedding, channel_mask)
    expected = torch.tensor([[[1.0, 1.0, 0.0, 1.0], [7.0, 7.0, 0.0, 7.0], [1.0, 1.0, 0.0, 1.0]]])
    assert torch.equal(out, expected)


def test_apply_mask_keeps_the_dtype_of_the_features():
    x = torch.randn(1, 3, 4).to(torch.bfloat16)
    embedding = torch.randn(4)  # a float32 parameter, as under mixed precision
    out = apply_mask(x, torch.tensor([[False, True, False]]), embedding)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out[0, 1], embedding.to(torch.bfloat16))


def test_apply_mask_keeps_gradient_to_the_embedding():
    x = torch.randn(1, 4, 3)
    embedding = torch.zeros(3, requires_grad=True)
    time_mask = torch.tensor([[True, False, True, False]])
    apply_mask(x, time_mask, embedding).sum().backward()
    assert torch.equal(embedding.grad, torch.full((3,), 2.0))
