"""Leave-one-out and the shared training-sample rules."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.split import leave_one_out, next_item_batches, pad_histories


def test_leave_one_out_targets_and_histories(toy_dataset):
    split = leave_one_out(toy_dataset)
    for user, seq in enumerate(toy_dataset.sequences):
        assert list(split.train[user]) == list(seq[:-2])
        assert split.valid_targets[user] == seq[-2] and list(split.valid_histories[user]) == list(seq[:-2])
        assert split.test_targets[user] == seq[-1] and list(split.test_histories[user]) == list(seq[:-1])


def test_pad_histories_keeps_the_last_items_left_aligned():
    out = pad_histories([np.array([1, 2, 3, 4]), np.array([5])], 3)
    assert out.tolist() == [[2, 3, 4], [5, 0, 0]]


@pytest.mark.parametrize("strategy", ["sampling", "all"])
def test_next_item_batches_padded_and_listed_hold_the_same_samples(toy_dataset, strategy):
    split = leave_one_out(toy_dataset)
    padded = next_item_batches(split.train, strategy, 5, np.random.default_rng(3), 7)
    listed = next_item_batches(split.train, strategy, 5, np.random.default_rng(3), 7, padded=False)
    assert [len(t) for _, t in padded] == [len(t) for _, t in listed]
    assert all(len(t) <= 7 for _, t in padded)
    for (items, targets), (histories, targets2) in zip(padded, listed):
        assert np.array_equal(targets, targets2)
        own = pad_histories(histories, 5)  # padded to this batch's longest; the epoch's may be longer
        assert np.array_equal(items[:, :own.shape[1]], own) and not items[:, own.shape[1]:].any()
    total = sum(len(t) for _, t in padded)
    expected = (sum(1 for s in split.train if len(s) >= 2) if strategy == "sampling"
                else sum(len(s) - 1 for s in split.train))
    assert total == expected


def test_next_item_batches_rejects_an_unknown_strategy(toy_dataset):
    split = leave_one_out(toy_dataset)
    with pytest.raises(ValueError, match="strategy"):
        next_item_batches(split.train, "every_other", 5, np.random.default_rng(0), 8)


def _pod_rule_distribution(m: int, window: int) -> dict[tuple[int, int], float]:
    """POD's SeqSampler.sample_seq over a training sequence of m items, exactly: start uniform on
    0..m-2, end uniform on start+1..m-1, the segment cut to its last window + 1 items. Returns
    P(target position, input length)."""
    dist: dict[tuple[int, int], float] = {}
    for start in range(m - 1):
        for end in range(start + 1, m):
            key = (end, min(end - start, window))
            dist[key] = dist.get(key, 0.0) + 1.0 / (m - 1) / (m - 1 - start)
    return dist


@pytest.mark.parametrize("m", [2, 5, 30])
def test_sampling_is_pods_sampler(m):
    """Many draws from one training sequence: the segments are contiguous, end at their target and
    are at most 21 items long, and the (target position, length) frequencies follow POD's rule
    (chi-square test; the old rule, always the longest window, would fail it at m = 30)."""
    from scipy import stats

    from benchmarks.split import sampling_samples

    window, draws = 20, 40_000
    seq = np.arange(100, 100 + m)  # item ids that name their position
    inputs, targets, users = sampling_samples([seq] * draws, window, np.random.default_rng(7))
    assert users.tolist() == list(range(draws))
    assert len(inputs) == draws
    counts: dict[tuple[int, int], int] = {}
    for history, target in zip(inputs, targets):
        end = int(target) - 100
        assert 1 <= end <= m - 1 and 1 <= len(history) <= window
        assert history.tolist() == seq[end - len(history):end].tolist()  # contiguous, right before the target
        counts[(end, len(history))] = counts.get((end, len(history)), 0) + 1
    expected = _pod_rule_distribution(m, window)
    assert set(counts) <= set(expected)
    keys = sorted(expected)
    observed = np.array([counts.get(k, 0) for k in keys], dtype=float)
    if len(keys) > 1:
        assert stats.chisquare(observed, np.array([expected[k] for k in keys]) * draws).pvalue > 1e-3
    # the last training item is a target as often as the rule says (about half the time at m = 5)
    last = sum(v for (end, _), v in counts.items() if end == m - 1) / draws
    assert last == pytest.approx(sum(p for (end, _), p in expected.items() if end == m - 1), abs=0.01)


def test_sampling_skips_users_without_two_training_items():
    from benchmarks.split import sampling_samples

    inputs, targets, users = sampling_samples([np.array([7]), np.array([], dtype=np.int64), np.array([1, 2])], 20,
                                              np.random.default_rng(0))
    assert targets.tolist() == [2] and inputs[0].tolist() == [1] and users.tolist() == [2]
