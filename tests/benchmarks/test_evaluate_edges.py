"""The evaluator at its edges: any integer dtype, the device asked for, errors that name the rows
and shapes, the sampler at the catalogue's edges and its draws pinned across versions, and
evaluate()'s defaults, errors and invalid or out-of-candidate top-k lists."""
import re

import numpy as np
import pytest
import torch

from benchmarks.evaluate import evaluate, history_mask, ranks_from_scores, ranks_from_topk, sample_candidates
from tests.benchmarks.table_models import TableScores, random_histories


# ----------------------------------------------------------------------------- edges of the building blocks


def test_history_mask_any_integer_dtype_and_ids_out_of_range():
    expected = history_mask([np.array([1, 3]), np.array([4, 2])], 4, "cpu")
    for dtype in (np.uint8, np.int32, np.uint16):
        got = history_mask([np.array([1, 3], dtype=dtype), np.array([4, 2], dtype=dtype)], 4, "cpu")
        assert torch.equal(got, expected), dtype
    assert torch.equal(history_mask([[1, 3], [4, 2]], 4, "cpu"), expected)  # plain lists too
    for bad in ([np.array([1, 5])], [np.array([-1, 2])], [np.array([2]), np.array([7])]):
        with pytest.raises(ValueError, match=r"history contains item ids outside 0\.\.4"):
            history_mask(bad, 4, "cpu")


def test_history_mask_is_built_on_the_device_asked_for():
    # "meta" stands in for an accelerator on a CPU-only machine: the mask is made where the scores are
    mask = history_mask([np.array([1, 3]), np.array([2])], 4, "meta")
    assert mask.device.type == "meta" and mask.dtype == torch.bool and mask.shape == (2, 5)


def test_topk_positions_are_valid_first_occurrences_kept_on_the_lists_device():
    from benchmarks.evaluate import _topk_keep

    # a generated list's positions: valid ids (1..n_items), each at its first occurrence; an
    # excluded (history) item drops out unless it is the target itself
    ids = torch.tensor([[3, 0, 3, 6, 2, 5, 2], [1, 4, 4, -1, 5, 1, 2]])
    targets = torch.tensor([2, 4])
    assert _topk_keep(ids, targets, 5, None).tolist() == [[True, False, False, False, True, True, False],
                                                          [True, True, False, False, True, False, True]]
    exclude = history_mask([np.array([3, 2]), np.array([4, 5])], 5, "cpu")
    assert _topk_keep(ids, targets, 5, exclude).tolist() == [[False, False, False, False, True, True, False],
                                                             [True, True, False, False, False, False, True]]
    # built where the lists are ("meta" standing in for an accelerator)
    on_meta = _topk_keep(ids.to("meta"), targets.to("meta"), 5, exclude.to("meta"))
    assert on_meta.device.type == "meta" and on_meta.shape == ids.shape
    assert _topk_keep(ids.to("meta"), targets.to("meta"), 5, None).device.type == "meta"


def test_nan_error_names_the_rows():
    def message(nan_rows, n_users=8):
        scores = torch.rand(n_users, 6)
        scores[nan_rows, 3] = float("nan")
        with pytest.raises(ValueError) as err:
            ranks_from_scores(scores, [1] * n_users)
        return str(err.value)

    assert message([2, 5]) == ("model returned NaN scores for 2 user(s) in this batch (batch rows [2, 5]); "
                               "a NaN cannot be ranked, so the model output must be fixed")
    assert "for 5 user(s) in this batch (batch rows [0, 1, 2, 3, 4]);" in message([0, 1, 2, 3, 4])
    assert "for 6 user(s) in this batch (batch rows [0, 1, 2, 3, 4]...);" in message([0, 1, 2, 3, 4, 6])
    assert "for 7 user(s) in this batch (batch rows [0, 1, 2, 3, 4]...);" in message([0, 1, 2, 3, 4, 6, 7])


def test_targets_of_any_integer_type_are_item_ids():
    # sequences may be stored as int32 or uint16 (and targets passed as lists or tensors): the
    # ranks are the same as for int64 targets
    scores = torch.tensor([[0.0, 0.9, 0.5, 0.1, 0.7], [0.0, 0.2, 0.4, 0.8, 0.6]])
    exclude = history_mask([np.array([1]), np.array([3])], 4, "cpu")
    expected = ranks_from_scores(scores, np.array([2, 4], dtype=np.int64), exclude)
    assert expected.tolist() == [2.0, 1.0]
    for targets in (np.array([2, 4], dtype=np.int32), np.array([2, 4], dtype=np.uint16), [2, 4],
                    torch.tensor([2, 4], dtype=torch.int32)):
        np.testing.assert_array_equal(ranks_from_scores(scores, targets, exclude), expected)
        assert ranks_from_topk(torch.tensor([[1, 2, 3], [3, 4, 1]]), targets).tolist() == [2.0, 2.0]
    hist = [np.array([1, 2], dtype=np.int32), np.array([5], dtype=np.int32)]
    model = TableScores(12, seed=3)
    np.testing.assert_array_equal(evaluate(model, hist, np.array([3, 4], dtype=np.int32)).ranks,
                                  evaluate(model, hist, [3, 4]).ranks)


def test_ranks_from_scores_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"scores must be \(batch, n_items \+ 1\), got shape \(6,\)"):
        ranks_from_scores(torch.rand(6), [1])
    with pytest.raises(ValueError, match=r"exclude mask shape \(1, 5\) != scores shape \(1, 6\)"):
        ranks_from_scores(torch.rand(1, 6), [1], torch.zeros(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="2 targets for 1 users"):
        ranks_from_scores(torch.rand(1, 6), [1, 2])
    with pytest.raises(ValueError, match=r"targets must be item ids in 1\.\.5"):
        ranks_from_scores(torch.rand(1, 6), [6])


def test_exclude_may_be_a_0_1_mask():
    scores = torch.tensor([[0.0, 0.9, 0.5, 0.1, 0.7]])
    as_bool = torch.tensor([[False, True, True, False, False]])
    for mask in (as_bool.long(), as_bool.to(torch.uint8)):
        assert ranks_from_scores(scores, [2], mask)[0] == ranks_from_scores(scores, [2], as_bool)[0] == 2


def test_ranks_from_topk_errors():
    with pytest.raises(ValueError, match=r"top-k ids must be \(batch, k\), got shape \(3,\)"):
        ranks_from_topk(torch.tensor([1, 2, 3]), [1])
    with pytest.raises(ValueError, match="2 targets for 3 lists"):
        ranks_from_topk(torch.ones(3, 4, dtype=torch.long), [1, 2])


def test_sample_candidates_defaults_and_edges():
    hist = [np.array([1, 2]), np.array([3])]
    # the paper's 1 + 99 candidates, seeded with 2024 unless told otherwise
    default = sample_candidates(hist, [3, 4], 300)
    assert default.shape == (2, 100)
    np.testing.assert_array_equal(default, sample_candidates(hist, [3, 4], 300, num_negatives=99, seed=2024))
    # no negatives: the target alone
    assert sample_candidates(hist, [3, 4], 10, num_negatives=0).tolist() == [[3], [4]]
    with pytest.raises(ValueError, match="^num_negatives must be >= 0$"):
        sample_candidates(hist, [3, 4], 10, num_negatives=-1)
    with pytest.raises(ValueError, match="^user_index must have one entry per user$"):
        sample_candidates(hist, [3, 4], 10, num_negatives=2, user_index=[0])


def test_sample_candidates_never_draws_history_or_padding_at_the_catalogue_edges():
    n_items = 10
    # padding (0) in a history is not an item: exactly 6 eligible items remain, and all are used
    cand = sample_candidates([np.array([0, 0, 1, 2, 3])], [4], n_items, num_negatives=6)
    assert sorted(cand[0, 1:].tolist()) == [5, 6, 7, 8, 9, 10]
    # the last item in the history is never a negative; too few eligible items is an error
    cand = sample_candidates([np.array([10, 9, 8])], [1], n_items, num_negatives=6)
    assert sorted(cand[0, 1:].tolist()) == [2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match=r"user 0 has only 6 items outside their history and target, "
                                         r"fewer than num_negatives=7"):
        sample_candidates([np.array([10, 9, 8])], [1], n_items, num_negatives=7)


def test_sample_candidates_sparse_path_draws_every_eligible_item():
    # 500 items, 3 negatives: the rejection path; item 1 and item 500 are eligible and get drawn
    n_users, n_items = 4000, 500
    hist = [np.array([250], dtype=np.int64)] * n_users
    cand = sample_candidates(hist, np.full(n_users, 251), n_items, num_negatives=3, seed=1)
    counts = np.bincount(cand[:, 1:].ravel(), minlength=n_items + 1)
    assert counts[0] == 0 and counts[250] == 0 and counts[251] == 0
    assert counts[1] > 0 and counts[n_items] > 0
    assert (counts[1:] > 0).sum() > 0.85 * (n_items - 2)  # 12,000 draws cover nearly every eligible item


# sample_candidates(..., seed=2024) as of this suite's first mutation-testing run (see below)
DENSE_2024 = [[5, 9, 4, 6], [6, 1, 7, 10]]
BOUNDARY_2024 = [[4, 6, 20, 8, 14]]
SPARSE_2024 = [[5, 15, 41, 6, 13, 20], [6, 55, 30, 27, 54, 47]]
JUST_SPARSE_2024 = [[2, 5, 14, 7, 19]]


def test_sample_candidates_are_reproducible_across_versions():
    """The negatives of a (seed, user) are part of every sampled-candidate record: a change to the
    sampler (its dense/sparse rule, its draws) would silently change recorded results. Pinned for both
    paths and for the boundary between them (eligible items == 4 x negatives: the dense path)."""
    hist = [np.array([1, 2, 3]), np.array([4])]
    dense = sample_candidates(hist, [5, 6], 12, num_negatives=3, seed=2024)   # 8 eligible <= 12
    boundary = sample_candidates([np.array([1, 2, 3])], [4], 20, num_negatives=4, seed=2024)  # 16 == 16
    sparse = sample_candidates(hist, [5, 6], 60, num_negatives=5, seed=2024)  # 56 eligible > 20
    just_sparse = sample_candidates([np.array([1])], [2], 20, num_negatives=4, seed=2024)  # 18 > 16
    assert dense.tolist() == DENSE_2024
    assert boundary.tolist() == BOUNDARY_2024
    assert sparse.tolist() == SPARSE_2024
    assert just_sparse.tolist() == JUST_SPARSE_2024


# ----------------------------------------------------------------------------- evaluate(): edges


def test_evaluate_defaults_are_the_papers_protocol(capsys):
    rng = np.random.default_rng(8)
    n_users, n_items = 300, 30
    hist = random_histories(rng, n_users, n_items)
    targets = rng.integers(1, n_items + 1, size=n_users)
    model = TableScores(n_items, seed=4, integer=True)
    batches = []
    model.prepare = lambda h, _prepare=model.prepare: (batches.append(len(h)), _prepare(h))[1]
    res = evaluate(model, hist, targets)
    assert res.settings == {"ks": [10, 20], "mask_history": True, "candidates": "full", "num_negatives": None,
                            "negative_seed": None, "n_users": n_users}
    np.testing.assert_array_equal(
        res.ranks, ranks_from_scores(model.table[torch.tensor([h[-1] for h in hist])], targets,
                                     history_mask(hist, n_items, "cpu")))
    assert batches == [256, 44]  # batches of 256 users
    assert capsys.readouterr().err == ""  # no progress bar unless asked
    sampled = evaluate(model, hist, targets, candidates="sampled", num_negatives=20)
    assert sampled.settings["num_negatives"] == 20 and sampled.settings["negative_seed"] == 2024
    np.testing.assert_array_equal(
        sampled.ranks, evaluate(model, hist, targets, candidates="sampled", num_negatives=20,
                                negative_seed=2024).ranks)
    default_sampled = evaluate(TableScores(150, seed=4), [np.array([1, 2])] * 3, [3, 4, 5], candidates="sampled")
    assert default_sampled.settings["num_negatives"] == 99
    assert "topk_lists" not in res.settings and "topk_lists" not in sampled.settings
    evaluate(model, hist, targets, progress=True, batch_size=100)
    err = capsys.readouterr().err  # a tqdm bar: "\revaluate: 100%|...| 3/3 [00:00<00:00, 128.87batch/s]"
    assert re.search(r"(^|\r)evaluate: +100%", err) and " 3/3 " in err
    assert re.search(r"[0-9?]batch/s\]|[0-9]s/batch\]", err)


def test_evaluate_a_model_without_an_output_attribute_is_a_scoring_model():
    class Plain:
        n_items = 20

        def __init__(self):
            self.inner = TableScores(20, seed=6)

        def prepare(self, histories):
            return self.inner.prepare(histories)

        def score(self, batch):
            return self.inner.score(batch)

    hist = [np.array([1, 2]), np.array([5])]
    np.testing.assert_array_equal(evaluate(Plain(), hist, [3, 4]).ranks,
                                  evaluate(TableScores(20, seed=6), hist, [3, 4]).ranks)


def test_evaluate_errors_say_what_is_wrong():
    model = TableScores(10)
    hist = [np.array([1, 2])]
    with pytest.raises(ValueError, match="candidates must be 'full' or 'sampled', got 'bogus'"):
        evaluate(model, hist, [3], candidates="bogus")
    for ks in ((0, 10), (), (-5,)):
        with pytest.raises(ValueError, match="ks must be positive integers"):
            evaluate(model, hist, [3], ks=ks)
    with pytest.raises(ValueError, match="^batch_size must be >= 1$"):
        evaluate(model, hist, [3], batch_size=0)
    with pytest.raises(ValueError, match="^no users to evaluate$"):
        evaluate(model, [], [])

    class Odd(TableScores):
        output = "ranking"

    with pytest.raises(ValueError, match="model.output must be 'scores' or 'topk', got 'ranking'"):
        evaluate(Odd(10), hist, [3])

    class WrongSecondBatch(TableScores):
        def score(self, batch):
            scores = super().score(batch)
            return scores if len(batch) == 2 else scores[:, 1:]

    with pytest.raises(ValueError, match=r"WrongSecondBatch\.score returned shape \(1, 10\), expected \(1, 11\)"):
        evaluate(WrongSecondBatch(10), [np.array([1])] * 3, [2, 3, 4], batch_size=2)

    class NoCandidates(TableScores):
        output = "topk"

        def recommend(self, batch, k):
            return torch.topk(self.table[batch], k, dim=1).indices

    with pytest.raises(ValueError, match="NoCandidates.recommend takes no candidates=: a top-k model must list "
                                         "only each user's candidates to be evaluated on sampled candidates"):
        evaluate(NoCandidates(30), hist, [3], ks=(5,), candidates="sampled", num_negatives=5)


class _FixedLists:
    """A top-k model returning fixed lists (whatever the candidates)."""

    output = "topk"
    device = torch.device("cpu")

    def __init__(self, n_items, lists):
        self.n_items = n_items
        self.lists = torch.tensor(lists)

    def prepare(self, histories):
        return len(histories)

    def recommend(self, batch, k, candidates=None):
        return self.lists[:batch, :k]


def test_evaluate_topk_invalid_ids_are_skipped_not_fatal():
    # -1 and ids past the catalogue are not items: they neither match nor push the target down,
    # with or without history masking
    model = _FixedLists(10, [[-1, 3, 11, 5, 7], [4, -3, 2, 99, 6]])
    hist = [np.array([9]), np.array([4, 9])]
    for mask in (True, False):
        res = evaluate(model, hist, [5, 6], ks=(5,), mask_history=mask)
        np.testing.assert_array_equal(res.ranks, [2, 2 if mask else 3])


def test_evaluate_topk_sampled_lists_must_stay_within_their_candidates():
    n_items = 50
    hist = [np.array([1, 2])]
    cand = sample_candidates(hist, [3], n_items, num_negatives=5, seed=0)[0].tolist()
    outside = next(i for i in range(4, n_items + 1) if i not in cand)  # nor history
    # padding and invalid ids may fill a short list
    res = evaluate(_FixedLists(n_items, [[cand[2], 0, -1, cand[0], 0]]), hist, [3], ks=(5,),
                   candidates="sampled", num_negatives=5, negative_seed=0)
    assert res.ranks.tolist() == [2.0]
    assert res.settings["topk_lists"] == "constrained to each user's candidates"
    for listed in (outside, 1, n_items + 3):  # a real item off the list, a history item, past the catalogue
        with pytest.raises(ValueError, match="_FixedLists.recommend listed items outside the candidates it was given"):
            evaluate(_FixedLists(n_items, [[cand[0], listed, cand[1], 0, 0]]), hist, [3], ks=(5,),
                     candidates="sampled", num_negatives=5, negative_seed=0)
    full = evaluate(_FixedLists(n_items, [[outside, 3, 0, 0, 0]]), hist, [3], ks=(5,))
    assert full.ranks.tolist() == [2.0] and "topk_lists" not in full.settings
