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
        assert np.array_equal(items, pad_histories(histories, 5))
    total = sum(len(t) for _, t in padded)
    expected = (sum(1 for s in split.train if len(s) >= 2) if strategy == "sampling"
                else sum(len(s) - 1 for s in split.train))
    assert total == expected


def test_next_item_batches_rejects_an_unknown_strategy(toy_dataset):
    split = leave_one_out(toy_dataset)
    with pytest.raises(ValueError, match="strategy"):
        next_item_batches(split.train, "every_other", 5, np.random.default_rng(0), 8)
