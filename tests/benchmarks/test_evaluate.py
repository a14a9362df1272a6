"""The evaluator: ranks against a brute-force reference, metrics against RecBole's, sampled
candidates, evaluate() on scoring and top-k models, and the evaluation settings, user subsets and
protocol controls. The edges of each: test_evaluate_edges.py."""
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
from tests.benchmarks.table_models import FilteredTopk, TableScores, TableTopk, brute_force_rank, random_histories


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


def test_user_spread_tells_one_ranking_for_all_from_user_dependent_scores():
    rng = np.random.default_rng(0)
    n_items = 30
    hist = random_histories(rng, 50, n_items)
    targets = rng.integers(1, n_items + 1, size=50)

    class SameForAll(TableScores):  # every user gets row 1: one ranking, as MostPopular or a collapse
        def score(self, batch):
            return self.table[torch.ones_like(batch)]

    assert evaluate(SameForAll(n_items), hist, targets, batch_size=16).user_spread == 0.0
    per_user = evaluate(TableScores(n_items), hist, targets, batch_size=16)
    # rows of uniform noise: an item varies across users about as much as a user across items
    assert 0.7 < per_user.user_spread < 1.3
    # a batch of one user says nothing about users; the rest still count
    assert evaluate(TableScores(n_items), hist[:17], targets[:17], batch_size=16).user_spread > 0.7
    assert evaluate(TableScores(n_items), hist[:1], targets[:1]).user_spread is None
    # top-k lists and sampled candidates carry no full score matrix
    assert evaluate(TableTopk(n_items), hist, targets).user_spread is None
    assert evaluate(TableScores(n_items), hist, targets, candidates="sampled", num_negatives=9).user_spread is None


def test_score_spread_of_one_batch():
    from benchmarks.evaluate import score_spread
    scores = torch.tensor([[-1e9, 0.0, 1.0, 2.0], [-1e9, 0.0, 1.0, 4.0]])  # padding column dropped
    across_users, across_items = score_spread(scores)
    assert across_users == pytest.approx(2 ** 0.5 / 3)  # items 1, 2 alike for both; item 3: 2 vs 4
    assert across_items == pytest.approx(float((torch.tensor([0.0, 1, 2]).std() + torch.tensor([0.0, 1, 4]).std()) / 2))
    assert score_spread(scores[:1]) is None and score_spread(scores[:, :2]) is None  # one user; one item
    assert score_spread(torch.tensor([[0.0, 1.0, float("-inf")], [0.0, 2.0, 1.0]])) is None


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
    from benchmarks.measurements import PROTOCOL_CONTROLS, control_variant

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
