"""The iterated k-core and the leave-one-out minimum on hand-made logs whose answers are known:
a round that removes only users still lowers item counts, and users need max(k, 3) items."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.data.dataset import SequenceDataset, k_core
from benchmarks.split import leave_one_out
from tests.benchmarks.data_files import assert_well_formed, load, ml1m_folder, sequences_by_user
from tests.benchmarks.protocol_reference import reference_k_core


def test_a_round_that_removes_only_a_user_is_not_the_last():
    # u1..u3 x {A, B, C} is a 3-core. D is rated by u1, u2 and u4; u4 has only two items, so the
    # first round removes u4 and no item. D then has two users and must go in the second round
    # (u1 and u2 keep A, B, C); stopping after a round without rare items would keep D.
    log = {"u1": ["A", "B", "D", "C"], "u2": ["D", "A", "B", "C"], "u3": ["A", "B", "C"], "u4": ["A", "D"]}
    kept, rounds = k_core(log, 3)
    assert kept == {"u1": ["A", "B", "C"], "u2": ["A", "B", "C"], "u3": ["A", "B", "C"]}
    assert rounds == 3  # users only, items only, nothing: the fixed point
    assert kept == reference_k_core(log, 3)


def test_the_same_through_the_loader(tmp_path):
    rows = [(1, 10), (1, 20), (1, 40), (1, 30), (2, 40), (2, 10), (2, 20), (2, 30), (3, 10), (3, 20), (3, 30),
            (4, 10), (4, 40)]
    # movies.dat is required (an empty one: no titles needed here)
    folder = ml1m_folder(tmp_path, "".join(f"{u}::{i}::5::{t}\n" for t, (u, i) in enumerate(rows)), movies="")
    ds = load(tmp_path, "ml-1m", folder, k_core=3)
    assert sequences_by_user(ds) == {"1": ["10", "20", "30"], "2": ["10", "20", "30"], "3": ["10", "20", "30"]}
    assert ds.stats["k_core_rounds"] == 3
    assert_well_formed(ds, 3)


@pytest.mark.parametrize("k", [1, 2])
def test_below_k_3_users_still_need_three_items(k):
    # every item has >= 2 users; u4 has two items and u5 one: enough for a k-core with k <= 2,
    # not for leave-one-out (train >= 1, validation 1, test 1)
    log = {"u1": ["A", "B", "C"], "u2": ["C", "A", "B"], "u3": ["B", "C", "A"], "u4": ["A", "B"], "u5": ["C"]}
    kept, _ = k_core(log, k)
    assert kept == {"u1": ["A", "B", "C"], "u2": ["C", "A", "B"], "u3": ["B", "C", "A"]}
    assert kept == reference_k_core(log, k)
    assert k_core({"only": ["A", "B"]}, k)[0] == {}


def test_loading_with_k_core_1_drops_users_too_short_for_leave_one_out(tmp_path):
    folder = ml1m_folder(tmp_path, "1::10::5::1\n1::20::5::2\n1::30::5::3\n2::10::5::1\n2::20::5::2\n3::30::5::1\n",
                         movies="")  # movies.dat is required (empty: no titles needed here)
    ds = load(tmp_path, "ml-1m", folder, k_core=1)
    assert ds.user_ids == ["1"] and sequences_by_user(ds) == {"1": ["10", "20", "30"]}
    split = leave_one_out(ds)
    assert [len(t) for t in split.train] == [1]  # every user keeps a training item


def _dataset(sequences):
    n_items = max(int(s.max()) for s in sequences)
    return SequenceDataset(name="t", source="test", sequences=sequences, user_ids=[str(u) for u in range(len(sequences))],
                           item_ids=["[PAD]"] + [str(i) for i in range(1, n_items + 1)],
                           item_texts=[""] * (n_items + 1), item_attributes=None, stats={}, source_hash="x", settings={})


def test_leave_one_out_refuses_users_with_fewer_than_three_items():
    ok = [np.array([1, 2, 3]), np.array([3, 1, 2, 4])]
    split = leave_one_out(_dataset(ok))
    assert [t.tolist() for t in split.train] == [[1], [3, 1]]
    for short in ([np.array([1, 2])], [np.array([4])]):
        with pytest.raises(ValueError, match="fewer than 3 interactions"):
            leave_one_out(_dataset(ok + short))
