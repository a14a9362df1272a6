"""Property-based tests (Hypothesis) of the hand-written protocol core on small random inputs:
the iterated k-core, leave-one-out, the evaluator's ranks and metrics, and the training-sample
builders. Each property is checked against a reference written differently in the test."""
from __future__ import annotations

import dataclasses
from itertools import chain, combinations
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from benchmarks.data.dataset import k_core
from benchmarks.evaluate import evaluate, history_mask, ranks_from_scores
from benchmarks.split import all_samples, leave_one_out, next_item_batches, sampling_samples
from tests.benchmarks.protocol_reference import reference_k_core, satisfies_k_core

CHEAP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TORCH = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- iterated k-core


@st.composite
def interaction_logs(draw, max_users: int, max_items: int) -> dict[str, list[str]]:
    """user -> distinct items in time order (what k_core receives after the repeats step)."""
    items = [f"i{j}" for j in range(draw(st.integers(1, max_items)))]
    n_users = draw(st.integers(0, max_users))
    return {f"u{u}": draw(st.lists(st.sampled_from(items), min_size=1, max_size=len(items), unique=True))
            for u in range(n_users)}


DENSE = {f"u{u}": [f"i{(u + j) % 6}" for j in range(4)] for u in range(6)}  # a non-empty 3- and 4-core


@CHEAP
@given(log=interaction_logs(max_users=9, max_items=8), k=st.integers(1, 4))
@example(log=DENSE, k=3)
@example(log={"u1": ["A", "B", "D", "C"], "u2": ["D", "A", "B", "C"], "u3": ["A", "B", "C"], "u4": ["A", "D"]}, k=3)
def test_k_core_is_the_reference_fixed_point(log, k):
    kept, rounds = k_core(log, k)
    assert satisfies_k_core(kept, k)  # every user >= max(k, 3) items, every item >= k users
    assert kept == reference_k_core(log, k)
    items = {i for seq in kept.values() for i in seq}
    assert set(kept) <= set(log) and list(kept) == [u for u in log if u in kept]  # user order kept
    for user, seq in kept.items():
        assert seq == [i for i in log[user] if i in items]  # items removed, order kept, nothing added
    assert rounds >= 1 and k_core(kept, k) == (kept, 1)  # a fixed point: one round confirms it


def _subsets(values):
    values = sorted(values)
    return chain.from_iterable(combinations(values, n) for n in range(len(values) + 1))


@settings(max_examples=60, deadline=None)
@given(log=interaction_logs(max_users=5, max_items=5), k=st.integers(1, 3))
@example(log={f"u{u}": [f"i{(u + j) % 4}" for j in range(3)] for u in range(4)}, k=3)
def test_k_core_contains_every_sub_log_that_meets_the_thresholds(log, k):
    """Exhaustively: every choice of users and items whose restricted log meets the thresholds lies
    inside the k-core, so no larger subset of the input satisfies them."""
    kept, _ = k_core(log, k)
    all_items = {i for seq in log.values() for i in seq}
    for users in _subsets(log):
        for items in _subsets(all_items):
            sub = {u: [i for i in log[u] if i in items] for u in users}
            if satisfies_k_core(sub, k):
                assert all(u in kept and set(seq) <= set(kept[u]) for u, seq in sub.items()), (users, items)


# ----------------------------------------------------------------------------- leave-one-out


@st.composite
def user_sequences(draw, min_length: int = 3):
    n_items = draw(st.integers(3, 15))
    sequences = draw(st.lists(st.lists(st.integers(1, n_items), min_size=min_length, max_size=n_items, unique=True),
                              min_size=1, max_size=8))
    return n_items, [np.array(s, dtype=np.int64) for s in sequences]


@CHEAP
@given(data=user_sequences())
def test_leave_one_out_targets_histories_and_what_training_sees(data):
    n_items, sequences = data
    split = leave_one_out(SimpleNamespace(sequences=sequences, n_items=n_items))
    training = split.for_training()
    assert {f.name for f in dataclasses.fields(training)} == {"train", "valid_histories", "valid_targets",
                                                              "n_items", "held_out_items"}
    assert not hasattr(training, "test_targets") and not hasattr(training, "test_histories")
    assert training.n_users == split.n_users == len(sequences) and training.n_items == n_items
    for user, seq in enumerate(sequences):
        seq = seq.tolist()
        assert split.test_targets[user] == seq[-1] and split.valid_targets[user] == seq[-2]
        assert split.test_histories[user].tolist() == seq[:-1]  # includes the validation item
        assert split.valid_histories[user].tolist() == seq[:-2]
        assert split.train[user].tolist() == seq[:-2] and len(seq[:-2]) >= 1
        # nothing of validation or test reaches training; the test target not even validation
        assert seq[-1] not in training.train[user].tolist() + training.valid_histories[user].tolist()
        assert seq[-1] != training.valid_targets[user]
        assert seq[-2] not in training.train[user].tolist() + training.valid_histories[user].tolist()


@CHEAP
@given(data=user_sequences(min_length=1), short=st.lists(st.integers(1, 3), min_size=0, max_size=2, unique=True))
def test_leave_one_out_refuses_a_user_with_fewer_than_three_items(data, short):
    n_items, sequences = data
    with pytest.raises(ValueError, match="fewer than 3"):
        leave_one_out(SimpleNamespace(sequences=sequences + [np.array(short, dtype=np.int64)], n_items=n_items))


# ----------------------------------------------------------------------------- the evaluator


def brute_rank(row: list[float], target: int, history: set[int], mask: bool) -> int:
    """1 + the other items (never column 0; never a history item when masking) scoring >= the
    target's score; the target always counts as a candidate, even when it is in the history."""
    return 1 + sum(1 for item in range(1, len(row))
                   if item != target and not (mask and item in history) and row[item] >= row[target])


class RowScores:
    """Scores each user by a fixed row, found through the identity of the user's history array
    (the evaluator hands histories to `prepare` as it got them)."""

    output = "scores"
    device = torch.device("cpu")

    def __init__(self, scores: torch.Tensor, histories):
        self.n_items = scores.shape[1] - 1
        self.scores = scores
        self.row = {id(h): u for u, h in enumerate(histories)}

    def prepare(self, histories):
        return torch.tensor([self.row[id(h)] for h in histories], dtype=torch.long)

    def score(self, rows):
        return self.scores[rows]


@st.composite
def scored_users(draw):
    """Scores with many ties (4 levels; column 0 included, sometimes the highest), targets, and
    histories that may hold padding (0) and the target itself."""
    n_items = draw(st.integers(1, 12))
    n_users = draw(st.integers(1, 7))
    scores = draw(st.lists(st.lists(st.integers(0, 3), min_size=n_items + 1, max_size=n_items + 1),
                           min_size=n_users, max_size=n_users))
    targets = draw(st.lists(st.integers(1, n_items), min_size=n_users, max_size=n_users))
    histories = draw(st.lists(st.lists(st.integers(0, n_items), max_size=n_items + 2),
                              min_size=n_users, max_size=n_users))
    return (torch.tensor(scores, dtype=torch.float32), np.array(targets, dtype=np.int64),
            [np.array(h, dtype=np.int64) for h in histories])


@TORCH
@given(case=scored_users(), mask=st.booleans(), batch_size=st.integers(1, 4))
def test_ranks_and_metrics_equal_a_brute_force_rank_with_ties_and_masks(case, mask, batch_size):
    scores, targets, histories = case
    expected = np.array([brute_rank(scores[u].tolist(), int(t), set(h.tolist()), mask)
                         for u, (t, h) in enumerate(zip(targets, histories))], dtype=np.float64)
    exclude = history_mask(histories, scores.shape[1] - 1, "cpu") if mask else None
    np.testing.assert_array_equal(ranks_from_scores(scores, targets, exclude), expected)
    result = evaluate(RowScores(scores, histories), histories, targets, ks=(1, 3, 5), mask_history=mask,
                      batch_size=batch_size)
    np.testing.assert_array_equal(result.ranks, expected)
    for k in (1, 3, 5):
        assert result.metrics[f"recall@{k}"] == pytest.approx(np.mean(expected <= k))
        gains = [1.0 / np.log2(r + 1.0) if r <= k else 0.0 for r in expected]
        assert result.metrics[f"ndcg@{k}"] == pytest.approx(np.mean(gains))


# ----------------------------------------------------------------------------- sample builders


@st.composite
def training_parts(draw):
    n_items = draw(st.integers(1, 30))
    return [np.array(s, dtype=np.int64) for s in draw(
        st.lists(st.lists(st.integers(1, n_items), max_size=min(n_items, 12), unique=True), min_size=1, max_size=8))]


def assert_samples_from_training(train, window, inputs, targets, users, exact: bool):
    """Every target is a training item of its user at position >= 1; every input the contiguous
    run of that user's items right before it, at most `window` long (exactly min(position,
    window) when `exact`)."""
    assert len(inputs) == len(targets) == len(users)
    for history, target, user in zip(inputs, targets, users):
        seq = train[int(user)].tolist()
        assert int(target) in seq[1:]
        position = seq.index(int(target))
        history = np.asarray(history).tolist()
        assert 1 <= len(history) <= window
        assert history == seq[position - len(history):position]
        if exact:
            assert len(history) == min(position, window)


@CHEAP
@given(train=training_parts(), window=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_sampling_samples_are_segments_of_the_training_part(train, window, seed):
    inputs, targets, users = sampling_samples(train, window, np.random.default_rng(seed))
    assert users.tolist() == [u for u, s in enumerate(train) if len(s) >= 2]  # one per user who has one
    assert_samples_from_training(train, window, inputs, targets, users, exact=False)


@CHEAP
@given(train=training_parts(), window=st.integers(1, 6))
def test_all_samples_are_every_training_position(train, window):
    inputs, targets, users = all_samples(train, window)
    assert users.tolist() == [u for u, s in enumerate(train) for _ in range(1, len(s))]
    assert targets.tolist() == [int(i) for s in train for i in s[1:]]
    assert_samples_from_training(train, window, inputs, targets, users, exact=True)


@CHEAP
@given(train=training_parts(), window=st.integers(1, 6), seed=st.integers(0, 2**16),
       batch_size=st.integers(1, 5), strategy=st.sampled_from(["sampling", "all"]), padded=st.booleans())
def test_next_item_batches_hold_only_samples_of_the_training_part(train, window, seed, batch_size, strategy, padded):
    batches = next_item_batches(train, strategy, window, np.random.default_rng(seed), batch_size,
                                padded=padded, with_users=True)
    expected = sum(len(s) >= 2 for s in train) if strategy == "sampling" else sum(max(len(s) - 1, 0) for s in train)
    assert sum(len(targets) for _, targets, _ in batches) == expected
    for items, targets, users in batches:
        assert 1 <= len(targets) <= batch_size
        if padded:
            assert items.shape[1] <= window
            histories = [row[row > 0] for row in items]
            assert all(not row[len(h):].any() for row, h in zip(items, histories))  # left-aligned, 0-padded
        else:
            histories = items
        assert_samples_from_training(train, window, histories, targets, users, exact=strategy == "all")
