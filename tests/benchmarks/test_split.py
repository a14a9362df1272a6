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


def test_pad_histories_are_int64_ids_at_least_one_column_wide():
    # the array becomes embedding indices (torch.from_numpy): int64 whatever the histories hold
    for histories in ([np.array([1, 2], dtype=np.int32), np.array([3], dtype=np.uint16)], [[1, 2], [3]]):
        out = pad_histories(histories)
        assert out.dtype == np.int64 and out.tolist() == [[1, 2], [3, 0]]
    # no items at all: one padding column, for a batch of empty histories and for no batch
    assert pad_histories([np.array([], dtype=np.int64)] * 2).tolist() == [[0], [0]]
    assert pad_histories([]).shape == (0, 1) and pad_histories([]).dtype == np.int64


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


@pytest.mark.parametrize("strategy", ["sampling", "all"])
def test_samples_are_int64_targets_and_users_whatever_the_sequences_hold(strategy):
    """The targets feed a cross-entropy loss (int64 class indices) and the users index per-user
    state: int64 from int32 sequences, and when no user has a sample."""
    from benchmarks.split import all_samples, sampling_samples

    def samples(train):
        if strategy == "all":
            return all_samples(train, 3)
        return sampling_samples(train, 3, np.random.default_rng(0))

    inputs, targets, users = samples([np.array([4, 2, 9], dtype=np.int32), np.array([1, 3], dtype=np.uint16)])
    assert targets.dtype == np.int64 and users.dtype == np.int64
    assert set(users.tolist()) == {0, 1} and set(targets.tolist()) <= {2, 9, 3}
    inputs, targets, users = samples([np.array([4], dtype=np.int32)])  # one item: nothing to predict
    assert inputs == [] and targets.dtype == np.int64 and users.dtype == np.int64 and not targets.size


# ----------------------------------------------------------------------------- cold start


def _split_over(sequences, n_items):
    from benchmarks.split import Split

    seqs = [np.asarray(s, dtype=np.int64) for s in sequences]
    return Split(train=[s[:-2] for s in seqs], valid_histories=[s[:-2] for s in seqs],
                 valid_targets=np.array([s[-2] for s in seqs], dtype=np.int64),
                 test_histories=[s[:-1] for s in seqs], test_targets=np.array([s[-1] for s in seqs], dtype=np.int64),
                 n_items=n_items)


def test_hold_out_items_removes_the_items_from_training_only(toy_dataset):
    from benchmarks.split import hold_out_items

    full = leave_one_out(toy_dataset)
    split = hold_out_items(full, 0.2, seed=5)
    held = split.held_out_items
    assert held.dtype == np.int64 and len(held) == round(0.2 * full.n_items)
    assert held.tolist() == sorted(set(held.tolist()))  # sorted, distinct
    assert held.min() >= 1 and held.max() <= full.n_items
    for user in range(full.n_users):
        # training sequences and validation histories lose exactly the held-out items, in order
        assert split.train[user].tolist() == [i for i in full.train[user].tolist() if i not in held]
        assert split.valid_histories[user].tolist() == [i for i in full.valid_histories[user].tolist()
                                                        if i not in held]
        # what the test reads stays as it was
        assert split.test_histories[user].tolist() == full.test_histories[user].tolist()
    assert np.array_equal(split.valid_targets, full.valid_targets)
    assert np.array_equal(split.test_targets, full.test_targets)
    assert split.n_items == full.n_items
    assert not full.held_out_items.size  # the input split is left alone
    assert any(np.isin(full.train[u], held).any() for u in range(full.n_users))  # something was dropped


def test_the_training_split_names_the_held_out_items():
    """What fit() sees (Split.for_training) says which items are held out (cold start): a model
    must not learn them, and a sampler must not draw them."""
    from benchmarks.split import hold_out_items

    split = hold_out_items(_split_over([list(range(1, 11))] * 2, 10), 0.3, seed=1)
    training = split.for_training()
    assert np.array_equal(training.held_out_items, split.held_out_items) and len(training.held_out_items) == 3
    assert not hasattr(training, "test_targets")


def test_hold_out_items_is_seeded_and_draws_from_every_item():
    from benchmarks.split import hold_out_items

    n_items = 6
    split = _split_over([[1, 2, 3, 4, 5, 6]] * 3, n_items)
    draws = [tuple(hold_out_items(split, 0.5, seed=s).held_out_items.tolist()) for s in range(200)]
    assert all(len(d) == 3 and len(set(d)) == 3 for d in draws)  # round(0.5 * 6) distinct items
    assert draws[7] == tuple(hold_out_items(split, 0.5, seed=7).held_out_items.tolist())  # seeded
    assert len(set(draws)) > 10
    counts = np.bincount([i for d in draws for i in d], minlength=n_items + 2)
    assert counts[0] == 0 and counts[n_items + 1] == 0  # never padding, never past the catalogue
    assert np.all(counts[1:n_items + 1] > 60)  # uniform: each item about 100 times in 200 draws


def test_hold_out_items_holds_at_least_one_item_and_rejects_bad_fractions():
    from benchmarks.errors import ConfigError
    from benchmarks.split import hold_out_items

    split = _split_over([list(range(1, 11))] * 2, 10)
    assert len(hold_out_items(split, 0.01, seed=0).held_out_items) == 1  # round(0.1) = 0 -> 1
    assert len(hold_out_items(split, 0.26, seed=0).held_out_items) == 3  # rounded, not truncated
    assert len(hold_out_items(split, 0.5, seed=0).held_out_items) == 5
    for bad in (0, 0.0, 1, 1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"split\.holdout_items must be a fraction in \(0, 1\)"):
            hold_out_items(split, bad, seed=0)


def _dataset_of(sequences):
    from benchmarks.data.dataset import SequenceDataset

    n_items = int(max(max(s) for s in sequences))
    return SequenceDataset(name="t", source="test", sequences=sequences, user_ids=[str(i) for i in range(len(sequences))],
                           item_ids=["[PAD]"] + [str(i) for i in range(1, n_items + 1)],
                           item_texts=[""] * (n_items + 1), item_attributes=None, stats={}, source_hash="",
                           settings={})


def test_leave_one_out_targets_are_int64_whatever_the_sequences_hold():
    for dtype in (np.int32, np.uint16, np.int64):
        split = leave_one_out(_dataset_of([np.array([3, 1, 2], dtype=dtype), np.array([1, 2, 3, 4], dtype=dtype)]))
        assert split.valid_targets.dtype == np.int64 and split.test_targets.dtype == np.int64, dtype
        assert split.valid_targets.tolist() == [1, 3] and split.test_targets.tolist() == [2, 4]
        assert split.n_items == 4 and split.n_users == 2


def test_leave_one_out_needs_three_interactions_per_user():
    with pytest.raises(ValueError, match=r"^2 users have fewer than 3 interactions "
                                         r"\(leave-one-out needs train, validation and test items\)$"):
        leave_one_out(_dataset_of([np.array([1, 2]), np.array([1, 2, 3]), np.array([3])]))
