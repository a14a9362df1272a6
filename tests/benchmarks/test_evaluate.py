import re

import numpy as np
import pytest
import torch

from benchmarks.evaluate import (
    EvalResult,
    evaluate,
    history_mask,
    metrics_from_ranks,
    ranks_from_scores,
    ranks_from_topk,
    sample_candidates,
)


# ----------------------------------------------------------------------------- helpers


def random_histories(rng, n_users, n_items, max_len=8):
    return [rng.choice(np.arange(1, n_items + 1), size=rng.integers(1, max_len + 1), replace=False)
            .astype(np.int64) for _ in range(n_users)]


def brute_force_rank(row, target, excluded):
    """Pure-Python reference: 1 + other non-excluded items (never padding) scoring >= target."""
    rank = 1
    for item in range(1, len(row)):
        if item == target or item in excluded:
            continue
        if row[item] >= row[target]:
            rank += 1
    return rank


class TableScores:
    """A 'scores' model: a user's scores are a fixed random row picked by their last item."""

    output = "scores"

    def __init__(self, n_items, seed=0, integer=False):
        g = torch.Generator().manual_seed(seed)
        self.n_items = n_items
        self.device = torch.device("cpu")
        shape = (n_items + 1, n_items + 1)
        self.table = (torch.randint(0, 4, shape, generator=g).float() if integer
                      else torch.rand(shape, generator=g))

    def prepare(self, histories):
        return torch.tensor([h[-1] for h in histories])

    def score(self, batch):
        return self.table[batch]

    def input_length(self, histories):
        return np.array([len(h) for h in histories], dtype=np.float64)


class TableTopk(TableScores):
    """A 'topk' model listing items by the same table, history items included."""

    output = "topk"

    def recommend(self, batch, k, candidates=None):
        scores = self.table[batch].clone()
        scores[:, 0] = -np.inf
        if candidates is not None:  # list only the candidates: the rest scored below them all
            keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, candidates, True)
            scores = scores.masked_fill(~keep, -np.inf)
        return torch.topk(scores, k, dim=1).indices


class FilteredTopk(TableTopk):
    """A top-k model that ignores the candidates it is handed (lists its catalogue-wide top k)."""

    def recommend(self, batch, k, candidates=None):
        return super().recommend(batch, k)


# ----------------------------------------------------------------------------- ranks


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("integer_scores", [False, True])
def test_ranks_match_brute_force(mask, integer_scores):
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    hist = random_histories(rng, n_users, n_items)
    targets = rng.integers(1, n_items + 1, size=n_users)
    if integer_scores:  # many ties
        scores = torch.from_numpy(rng.integers(0, 4, size=(n_users, n_items + 1)).astype(np.float32))
    else:
        scores = torch.from_numpy(rng.random((n_users, n_items + 1)).astype(np.float32))
    exclude = history_mask(hist, n_items, "cpu") if mask else None
    got = ranks_from_scores(scores, targets, exclude)
    expected = [brute_force_rank(scores[u].tolist(), int(targets[u]), set(hist[u].tolist()) if mask else set())
                for u in range(n_users)]
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float64))


def test_history_mask():
    m = history_mask([np.array([1, 3]), np.array([], dtype=np.int64), np.array([0, 2, 2])], 4, "cpu")
    assert m.dtype == torch.bool and m.shape == (3, 5)
    assert m.tolist() == [[False, True, False, True, False],
                          [False] * 5,
                          [False, False, True, False, False]]


def test_all_equal_scores_give_last_rank_and_zero_metrics():
    n_items = 50
    scores = torch.zeros(5, n_items + 1)
    targets = np.array([1, 7, 20, 49, 50])
    ranks = ranks_from_scores(scores, targets)
    np.testing.assert_array_equal(ranks, np.full(5, n_items, dtype=np.float64))
    for values in metrics_from_ranks(ranks, (10, 20)).values():
        assert values.sum() == 0
    # With history masking the target is last among the remaining candidates.
    hist = [np.array([2, 3, 4])] * 5
    ranks = ranks_from_scores(scores, targets, history_mask(hist, n_items, "cpu"))
    np.testing.assert_array_equal(ranks, np.full(5, n_items - 3, dtype=np.float64))


def test_padding_column_is_never_a_candidate():
    scores = torch.tensor([[100.0, 1.0, 0.5]])
    assert ranks_from_scores(scores, [1])[0] == 1


def test_target_in_mask_is_still_ranked():
    scores = torch.tensor([[0.0, 0.9, 0.5, 0.1, 0.7]])
    exclude = torch.tensor([[False, True, True, False, False]])
    # Target 2 is in the history: it is still ranked, item 1 (history) is removed, item 4 beats it.
    assert ranks_from_scores(scores, [2], exclude)[0] == 2
    assert ranks_from_scores(scores, [2])[0] == 3


def test_nan_raises():
    scores = torch.rand(3, 6)
    scores[1, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ranks_from_scores(scores, [1, 2, 3])
    # A NaN only in the padding column or in an excluded item is not a candidate: fine.
    scores = torch.rand(2, 6)
    scores[:, 0] = float("nan")
    scores[0, 5] = float("nan")
    exclude = torch.zeros(2, 6, dtype=torch.bool)
    exclude[0, 5] = True
    ranks_from_scores(scores, [1, 2], exclude)


def test_bad_targets_raise():
    with pytest.raises(ValueError):
        ranks_from_scores(torch.rand(1, 5), [0])
    with pytest.raises(ValueError):
        ranks_from_scores(torch.rand(1, 5), [5])


def test_ranks_from_topk():
    ids = torch.tensor([[5, 3, 9], [1, 2, 4], [7, 7, 8]])
    np.testing.assert_array_equal(ranks_from_topk(ids, [9, 6, 7]), [3, np.inf, 1])
    keep = torch.tensor([[True, False, True], [True] * 3, [True, False, True]])
    np.testing.assert_array_equal(ranks_from_topk(ids, [9, 4, 8], keep), [2, 3, 2])


# ----------------------------------------------------------------------------- metrics


def test_metrics_from_ranks_values():
    ranks = np.array([1, 2, 10, 11, 20, np.inf])
    m = metrics_from_ranks(ranks, (10, 20))
    assert set(m) == {"recall@10", "ndcg@10", "recall@20", "ndcg@20"}
    np.testing.assert_array_equal(m["recall@10"], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(m["recall@20"], [1, 1, 1, 1, 1, 0])
    np.testing.assert_allclose(m["ndcg@10"], [1, 1 / np.log2(3), 1 / np.log2(11), 0, 0, 0])
    np.testing.assert_allclose(m["ndcg@20"], [1, 1 / np.log2(3), 1 / np.log2(11), 1 / np.log2(12),
                                             1 / np.log2(21), 0])


@pytest.fixture
def recbole_metrics(monkeypatch):
    # RecBole 1.2.1's NDCG uses `np.float`, removed in NumPy 1.24; restore just that alias, only
    # for the duration of the test.
    if "float" not in np.__dict__:
        monkeypatch.setattr(np, "float", float, raising=False)
    from recbole.evaluator.metrics import NDCG, Recall

    return Recall, NDCG


def test_metrics_match_recbole(recbole_metrics):
    Recall, NDCG = recbole_metrics
    ks = (5, 10, 20)
    rng = np.random.default_rng(1)
    n_users, n_items = 300, 60
    scores = torch.from_numpy(rng.integers(0, 6, size=(n_users, n_items + 1)).astype(np.float32))
    hist = random_histories(rng, n_users, n_items)
    targets = rng.integers(1, n_items + 1, size=n_users)
    ranks = ranks_from_scores(scores, targets, history_mask(hist, n_items, "cpu"))
    ours = metrics_from_ranks(ranks, ks)

    # RecBole's input: for each user a bool row over the top-max(ks) positions, True where the
    # item at that position is positive, and the number of positives (1 here).
    topk = max(ks)
    pos_index = np.zeros((n_users, topk), dtype=bool)
    hit = ranks <= topk
    pos_index[np.nonzero(hit)[0], ranks[hit].astype(int) - 1] = True
    pos_len = np.ones(n_users, dtype=np.int64)
    config = {"topk": list(ks), "metric_decimal_place": 12}

    for cls, name in ((Recall, "recall"), (NDCG, "ndcg")):
        metric = cls(config)
        per_user = metric.metric_info(pos_index, pos_len)  # (users, topk): metric@1..@topk
        for k in ks:
            np.testing.assert_allclose(ours[f"{name}@{k}"], per_user[:, k - 1], rtol=0, atol=1e-12)

        # And the full public path, as RecBole's collector packs it: [pos_index | pos_len].
        rec_mat = torch.cat([torch.from_numpy(pos_index).int(), torch.from_numpy(pos_len).int()[:, None]], 1)

        class Data:
            def get(self, key):
                assert key == "rec.topk"
                return rec_mat

        result = metric.calculate_metric(Data())
        for k in ks:
            assert result[f"{name}@{k}"] == pytest.approx(ours[f"{name}@{k}"].mean(), abs=1e-10)


# ----------------------------------------------------------------------------- sampled candidates


@pytest.mark.parametrize("n_items", [40, 500])  # dense (explicit list) and sparse (rejection) paths
def test_sample_candidates_properties(n_items):
    rng = np.random.default_rng(2)
    n_users, num_neg = 60, 9
    hist = random_histories(rng, n_users, n_items, max_len=12)
    targets = rng.integers(1, n_items + 1, size=n_users)
    cand = sample_candidates(hist, targets, n_items, num_negatives=num_neg, seed=7)
    assert cand.dtype == np.int64 and cand.shape == (n_users, 1 + num_neg)
    np.testing.assert_array_equal(cand[:, 0], targets)
    for u in range(n_users):
        neg = cand[u, 1:]
        assert len(set(neg.tolist())) == num_neg
        assert targets[u] not in neg
        assert not set(neg.tolist()) & set(hist[u].tolist())
        assert neg.min() >= 1 and neg.max() <= n_items
    # Deterministic, seed-dependent, and per-user: a subset gets the same rows.
    np.testing.assert_array_equal(cand, sample_candidates(hist, targets, n_items, num_neg, seed=7))
    assert not np.array_equal(cand, sample_candidates(hist, targets, n_items, num_neg, seed=8))
    sub = sample_candidates(hist[10:25], targets[10:25], n_items, num_neg, seed=7, user_index=range(10, 25))
    np.testing.assert_array_equal(sub, cand[10:25])


@pytest.mark.parametrize("n_items", [12, 60])
def test_sample_candidates_roughly_uniform(n_items):
    n_users, num_neg = 3000, 3
    hist = [np.array([1], dtype=np.int64)] * n_users
    targets = np.full(n_users, 2)
    cand = sample_candidates(hist, targets, n_items, num_negatives=num_neg, seed=0)
    counts = np.bincount(cand[:, 1:].ravel(), minlength=n_items + 1)[3:]
    expected = n_users * num_neg / (n_items - 2)
    assert np.all(np.abs(counts - expected) < 0.25 * expected + 10)


def test_sample_candidates_too_few_items():
    with pytest.raises(ValueError, match="fewer than num_negatives"):
        sample_candidates([np.array([1, 2, 3])], [4], n_items=10, num_negatives=7)
    # Exactly enough is fine: every eligible item is used.
    cand = sample_candidates([np.array([1, 2, 3])], [4], n_items=10, num_negatives=6)
    assert sorted(cand[0, 1:].tolist()) == [5, 6, 7, 8, 9, 10]


# ----------------------------------------------------------------------------- evaluate()


def test_evaluate_scores_model_matches_direct_ranks():
    rng = np.random.default_rng(3)
    n_users, n_items = 70, 45
    model = TableScores(n_items, seed=1, integer=True)
    hist = random_histories(rng, n_users, n_items)
    targets = rng.integers(1, n_items + 1, size=n_users)
    scores = model.table[torch.tensor([h[-1] for h in hist])]
    for mask in (True, False):
        res = evaluate(model, hist, targets, ks=(10, 20), mask_history=mask, batch_size=16)
        assert isinstance(res, EvalResult)
        direct = ranks_from_scores(scores, targets, history_mask(hist, n_items, "cpu") if mask else None)
        np.testing.assert_array_equal(res.ranks, direct)
        assert set(res.metrics) == {"recall@10", "ndcg@10", "recall@20", "ndcg@20"}
        for key, values in metrics_from_ranks(direct, (10, 20)).items():
            np.testing.assert_array_equal(res.per_user[key], values)
            assert res.metrics[key] == pytest.approx(values.mean())
            assert isinstance(res.metrics[key], float)
        assert res.settings["n_users"] == n_users and res.settings["mask_history"] is mask
        assert res.settings["candidates"] == "full" and res.settings["ks"] == [10, 20]


def test_evaluate_sampled_deterministic_and_bounded_by_full():
    rng = np.random.default_rng(4)
    n_users, n_items = 80, 300
    model = TableScores(n_items, seed=2, integer=True)
    hist = random_histories(rng, n_users, n_items)
    targets = rng.integers(1, n_items + 1, size=n_users)
    kw = dict(candidates="sampled", num_negatives=50, negative_seed=11)
    a = evaluate(model, hist, targets, batch_size=7, **kw)
    b = evaluate(model, hist, targets, batch_size=64, **kw)
    np.testing.assert_array_equal(a.ranks, b.ranks)
    assert a.settings["num_negatives"] == 50 and a.settings["negative_seed"] == 11

    # Reference: rank among the sampled candidates, ties against the target.
    cand = sample_candidates(hist, targets, n_items, 50, seed=11)
    scores = model.table[torch.tensor([h[-1] for h in hist])]
    for u in range(n_users):
        s = scores[u, cand[u]].tolist()
        assert a.ranks[u] == 1 + sum(x >= s[0] for x in s[1:])
    assert a.ranks.max() <= 51

    for mask in (True, False):
        full = evaluate(model, hist, targets, mask_history=mask)
        assert np.all(a.ranks <= full.ranks)


def test_evaluate_topk_model():
    rng = np.random.default_rng(5)
    n_users, n_items = 60, 40
    scores_model = TableScores(n_items, seed=3)  # continuous scores: no ties
    topk_model = TableTopk(n_items, seed=3)
    hist = random_histories(rng, n_users, n_items)
    targets = rng.integers(1, n_items + 1, size=n_users)

    # Without masking, a list position is the full rank, up to the list length.
    full = evaluate(scores_model, hist, targets, mask_history=False).ranks
    got = evaluate(topk_model, hist, targets, ks=(5, 10), mask_history=False).ranks
    np.testing.assert_array_equal(got, np.where(full <= 10, full, np.inf))

    # With masking, history items in the list are dropped, so a found target's position equals its
    # masked full rank; it is missing only if it sat beyond the raw list.
    full_masked = evaluate(scores_model, hist, targets, mask_history=True).ranks
    got_masked = evaluate(topk_model, hist, targets, ks=(5, 10), mask_history=True).ranks
    found = np.isfinite(got_masked)
    np.testing.assert_array_equal(got_masked[found], full_masked[found])
    assert np.all(full[~found] > 10)
    assert np.all(got_masked <= got)

    # Sampled: the model lists only its candidates, so a top-k list position is the sampled rank
    # of a scoring model, up to the list length (filtering a full list would lose most targets).
    sampled_scores = evaluate(scores_model, hist, targets, candidates="sampled", num_negatives=20).ranks
    sampled_topk = evaluate(topk_model, hist, targets, ks=(10,), candidates="sampled", num_negatives=20).ranks
    np.testing.assert_array_equal(sampled_topk, np.where(sampled_scores <= 10, sampled_scores, np.inf))
    assert np.isfinite(sampled_topk).mean() > 0.3  # 10 of 21 candidates listed: about half the targets

    # A top-k model that lists items outside its candidates, or takes none, is an error.
    with pytest.raises(ValueError, match="outside the candidates"):
        evaluate(FilteredTopk(n_items, seed=3), hist, targets, ks=(10,), candidates="sampled", num_negatives=20)

    class NoCandidates(TableScores):
        output = "topk"

        def recommend(self, batch, k):
            return torch.topk(self.table[batch], k, dim=1).indices

    with pytest.raises(ValueError, match="takes no candidates"):
        evaluate(NoCandidates(n_items, seed=3), hist, targets, ks=(10,), candidates="sampled", num_negatives=20)


def test_evaluate_topk_drops_padding_and_repeats():
    class Fixed:
        output = "topk"
        n_items = 10
        device = torch.device("cpu")

        def prepare(self, histories):
            return len(histories)

        def recommend(self, batch, k):
            return torch.tensor([[0, 3, 3, 5, 7], [4, 2, 9, 1, 6], [1, 2, 3, 4, 5]])[:batch, :k]

    hist = [np.array([9]), np.array([4, 9]), np.array([1])]
    res = evaluate(Fixed(), hist, [5, 6, 8], ks=(5,), mask_history=True)
    # Row 0: padding and the repeat are not items -> 5 is 2nd. Row 1: 4 and 9 are history -> 6 is
    # 3rd. Row 2: 8 is not listed.
    np.testing.assert_array_equal(res.ranks, [2, 3, np.inf])


def test_evaluate_rejects_bad_arguments():
    model = TableScores(10)
    hist = [np.array([1, 2])]
    with pytest.raises(ValueError):
        evaluate(model, hist, [3], candidates="bogus")
    with pytest.raises(ValueError):
        evaluate(model, hist, [3, 4])
    with pytest.raises(ValueError):
        evaluate(model, hist, [3], candidates="sampled", num_negatives=99)

    class Wrong(TableScores):
        def score(self, batch):
            return super().score(batch)[:, 1:]

    with pytest.raises(ValueError, match="shape"):
        evaluate(Wrong(10), hist, [3])


# ----------------------------------------------------------------------------- settings, subsets, controls


def test_user_subset_is_all_users_or_a_seeded_sorted_sample():
    from benchmarks.evaluate import user_subset

    for everyone in (None, 0, 10, 11):  # no cap, or a cap at or past the number of users
        assert user_subset(10, everyone, seed=3).tolist() == list(range(10))
    sub = user_subset(10, 4, seed=3)
    assert len(sub) == 4 and sub.tolist() == sorted(set(sub.tolist()))
    assert sub.min() >= 0 and sub.max() <= 9
    assert np.array_equal(sub, user_subset(10, 4, seed=3))  # seeded
    draws = {tuple(user_subset(10, 4, seed=s).tolist()) for s in range(60)}
    assert len(draws) > 20  # the seed decides
    assert set().union(*draws) == set(range(10))  # every user can be drawn
    assert all(len(set(user_subset(10, 9, seed=s).tolist())) == 9 for s in range(20))  # without replacement


def test_evaluation_settings_fill_defaults_and_convert_types():
    from benchmarks.config import defaults
    from benchmarks.evaluate import evaluation_settings

    base = defaults()["eval"]
    got = evaluation_settings({})
    assert got == {"ks": list(base["ks"]), "mask_history": bool(base["mask_history"]),
                   "candidates": base["candidates"], "num_negatives": int(base["num_negatives"]),
                   "negative_seed": int(base["negative_seed"]), "batch_size": int(base["batch_size"]),
                   "max_users": base["max_users"], "user_subset_seed": int(base["user_subset_seed"])}
    assert got["ks"] == [10, 20] and got["mask_history"] is True and got["candidates"] == "full"
    assert got["num_negatives"] == 99 and got["negative_seed"] == 2024 and got["batch_size"] == 256
    assert got["max_users"] is None and got["user_subset_seed"] == 0

    mine = evaluation_settings({"ks": (5,), "mask_history": 0, "candidates": "sampled", "num_negatives": "49",
                                "negative_seed": 7.0, "batch_size": "32", "max_users": 100,
                                "user_subset_seed": "4", "protocol_controls": []})
    assert mine == {"ks": [5], "mask_history": False, "candidates": "sampled", "num_negatives": 49,
                    "negative_seed": 7, "batch_size": 32, "max_users": 100, "user_subset_seed": 4}
    assert all(type(mine[k]) is int for k in ("num_negatives", "negative_seed", "batch_size", "user_subset_seed"))
    assert type(mine["ks"]) is list and type(mine["mask_history"]) is bool
    # the settings are evaluate()'s keyword arguments (and the subset's two)
    kwargs = {k: v for k, v in mine.items() if k not in ("max_users", "user_subset_seed")}
    res = evaluate(TableScores(60), [np.array([1, 2])], [3], **kwargs)
    assert res.settings["candidates"] == "sampled" and res.settings["num_negatives"] == 49


def test_control_variant_flips_one_choice():
    from benchmarks.evaluate import PROTOCOL_CONTROLS, control_variant

    settings = {"ks": [10], "mask_history": True, "candidates": "full", "num_negatives": 99, "negative_seed": 1}
    assert control_variant("history_masking", settings) == (
        "history masking off", {**settings, "mask_history": False})
    assert control_variant("history_masking", {**settings, "mask_history": False}) == (
        "history masking on", settings)
    assert control_variant("candidates", settings) == (
        "1+99 sampled candidates", {**settings, "candidates": "sampled"})
    assert control_variant("candidates", {**settings, "num_negatives": 49})[0] == "1+49 sampled candidates"
    assert control_variant("candidates", {**settings, "candidates": "sampled"}) == ("full ranking", settings)
    assert settings["mask_history"] is True and settings["candidates"] == "full"  # not modified in place
    assert PROTOCOL_CONTROLS == ("history_masking", "candidates")
    with pytest.raises(ValueError, match="unknown protocol control 'popularity'; known: history_masking, candidates"):
        control_variant("popularity", settings)


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
