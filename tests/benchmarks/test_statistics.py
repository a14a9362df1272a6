"""Statistics against hand-computed values and scipy, and their edge cases."""
import math

import numpy as np
import pytest
from scipy import stats

from benchmarks.statistics import (align_users, best_row, format_p, format_summary, paired_test,
                                   per_user_mean_over_seeds, summarize_seeds)


def test_interval_over_seeds_by_hand():
    # mean 0.3; sd = 0.1 (deviations -0.1, 0, 0.1); t(0.975, 2) = 4.302653; half = 4.302653 * 0.1 / sqrt(3)
    summary = summarize_seeds([0.2, 0.3, 0.4])
    assert summary.n == 3 and summary.mean == pytest.approx(0.3)
    assert summary.half_width == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert summary.low == pytest.approx(0.3 - summary.half_width) and summary.high == pytest.approx(0.3 + summary.half_width)
    assert format_summary(summary) == "0.3000 ± 0.2484"
    # the same interval from scipy's own t-interval
    low, high = stats.t.interval(0.95, df=2, loc=0.3, scale=stats.sem([0.2, 0.3, 0.4]))
    assert (summary.low, summary.high) == pytest.approx((low, high))


def test_one_seed_has_no_interval_and_missing_values_are_dropped():
    one = summarize_seeds([0.25, None, float("nan")])
    assert one.n == 1 and one.half_width is None and one.low is None
    assert format_summary(one) == "0.2500"
    assert summarize_seeds([None]) is None and format_summary(None) == "n/a"
    same = summarize_seeds([0.5, 0.5])
    assert same.half_width == 0.0 and format_summary(same, 2) == "0.50 ± 0.00"


def test_paired_tests_match_scipy():
    rng = np.random.default_rng(3)
    a = (rng.random(500) < 0.30).astype(float)
    b = (rng.random(500) < 0.22).astype(float)
    test = paired_test(a, b)
    assert test.n_users == 500 and test.mean_difference == pytest.approx(a.mean() - b.mean())
    assert test.t_pvalue == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert test.wilcoxon_pvalue == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert test.a_significantly_better == (test.t_pvalue < 0.05)
    # the marker needs the proposed model to be the better one: reversed, never `*`
    assert not paired_test(b, a).a_significantly_better
    assert paired_test(b, a).t_pvalue == pytest.approx(test.t_pvalue)


def test_paired_test_edge_cases_answer_without_nan_warnings():
    with np.errstate(all="raise"):
        same = paired_test([1.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    assert same.t_pvalue == 1.0 and same.wilcoxon_pvalue == 1.0 and not same.a_significantly_better
    assert "identical" in same.note
    shifted = paired_test(np.full(20, 0.5), np.zeros(20))  # zero variance, non-zero difference
    assert shifted.t_pvalue == 0.0 and shifted.a_significantly_better
    assert shifted.wilcoxon_pvalue == pytest.approx(stats.wilcoxon(np.full(20, 0.5), np.zeros(20)).pvalue)
    tiny = paired_test([1.0], [0.0])
    assert math.isnan(tiny.t_pvalue) and not tiny.a_significantly_better
    with pytest.raises(ValueError):
        paired_test([1.0, 2.0], [1.0])


def test_users_are_aligned_by_user_index_and_averaged_over_seeds():
    seed0 = {"user_index": np.array([4, 1, 7]), "recall@10": np.array([1.0, 0.0, 1.0])}
    seed1 = {"user_index": np.array([1, 7, 4, 9]), "recall@10": np.array([1.0, 0.0, 1.0, 1.0])}
    users, values = per_user_mean_over_seeds([seed0, seed1], "recall@10")
    assert users.tolist() == [1, 4, 7]  # user 9 is not in seed 0
    assert values.tolist() == [0.5, 1.0, 0.5]
    common, a, b = align_users(np.array([1, 4, 7]), np.array([0.1, 0.4, 0.7]), np.array([7, 2, 1]), np.array([7.0, 2.0, 1.0]))
    assert common.tolist() == [1, 7] and a.tolist() == [0.1, 0.7] and b.tolist() == [1.0, 7.0]
    # records without user_index hold every user in order
    users, values = per_user_mean_over_seeds([{"recall@10": np.array([0.0, 1.0])}], "recall@10")
    assert users.tolist() == [0, 1] and values.tolist() == [0.0, 1.0]
    with pytest.raises(KeyError):
        per_user_mean_over_seeds([seed0], "ndcg@10")


def test_best_baseline_skips_excluded_and_missing_rows():
    means = {"GRU4Rec": 0.18, "SASRec": 0.24, "Lite": 0.30, "Broken": float("nan"), "Skipped": None}
    assert best_row(means, exclude={"Lite"}) == "SASRec"
    assert best_row({"A": 0.2, "B": 0.2}) == "A"  # ties: the first in table order
    assert best_row({"Lite": 0.3}, exclude={"Lite"}) is None
    # a row passed over does not end the search: rows after it still count
    assert best_row({"Lite": 0.9, "A": 0.1}, exclude={"Lite"}) == "A"
    assert best_row({"Broken": float("nan"), "Skipped": None, "A": 0.1}) == "A"
    assert format_p(0.00001) == "< 0.0001" and format_p(0.0312) == "0.0312" and format_p(float("nan")) == "n/a"


def test_interval_at_another_confidence_and_over_many_seeds():
    values = [0.1, 0.4, 0.2, 0.3, 0.5]
    summary = summarize_seeds(values, confidence=0.9)
    sd = np.std(values, ddof=1)
    assert summary.n == 5 and isinstance(summary.n, int) and summary.mean == pytest.approx(0.3)
    assert summary.half_width == pytest.approx(stats.t.ppf(0.95, 4) * sd / math.sqrt(5), rel=1e-12)
    assert summarize_seeds(values).half_width == pytest.approx(stats.t.ppf(0.975, 4) * sd / math.sqrt(5), rel=1e-12)
    assert summarize_seeds([]) is None and summarize_seeds([float("inf"), None]) is None
    assert format_summary(summarize_seeds([0.123456, 0.123456]), digits=3) == "0.123 ± 0.000"
    assert format_summary(summarize_seeds([0.123456])) == "0.1235"


def test_per_user_arrays_are_checked():
    with pytest.raises(ValueError, match="^no per-user arrays$"):
        per_user_mean_over_seeds([], "recall@10")
    with pytest.raises(ValueError, match="^user_index repeats a user$"):
        per_user_mean_over_seeds([{"user_index": np.array([1, 1]), "recall@10": np.array([0.0, 1.0])}], "recall@10")
    with pytest.raises(KeyError, match=r"no per-user values for 'ndcg@10' \(have \['rank', 'recall@10'\]\)"):
        per_user_mean_over_seeds([{"recall@10": np.array([1.0]), "rank": np.array([1.0])}], "ndcg@10")
    # a seed's users in any order, integer values: averaged as floats, by user
    users, values = per_user_mean_over_seeds(
        [{"user_index": np.array([3, 0, 2]), "hits": np.array([1, 0, 1])},
         {"user_index": np.array([0, 2, 3]), "hits": np.array([1, 0, 0])}], "hits")
    assert users.tolist() == [0, 2, 3] and values.tolist() == [0.5, 0.5, 0.5] and values.dtype == np.float64
    # user indices as records store them (int32): read back as int64 indices
    users, values = per_user_mean_over_seeds([{"user_index": np.array([4, 1], dtype=np.int32),
                                               "hits": np.array([1, 0])}], "hits")
    assert dict(zip(users.tolist(), values.tolist())) == {4: 1.0, 1: 0.0} and users.dtype == np.int64


def test_paired_test_notes_and_the_star_threshold():
    shifted = paired_test([0.5, 0.7, 0.9], [0.4, 0.6, 0.8])
    assert shifted.note == "the same difference for every user" and shifted.t_pvalue == 0.0
    assert shifted.mean_a == pytest.approx(0.7) and shifted.mean_b == pytest.approx(0.6)
    assert paired_test([1.0], [0.0]).note == "fewer than 2 users"
    empty = paired_test([], [])
    assert empty.n_users == 0 and math.isnan(empty.mean_a) and math.isnan(empty.wilcoxon_pvalue)
    same = paired_test([0.2, 0.4], [0.2, 0.4])
    assert same.note == "identical values for every user" and same.mean_difference == 0.0 and same.n_users == 2
    assert (same.t_pvalue, same.wilcoxon_pvalue) == (1.0, 1.0)
    assert paired_test([0.1, 0.9, 0.4], [0.0, 0.2, 0.5]).note == ""
    with pytest.raises(ValueError, match=r"paired values need the same 1-D shape, got \(2,\) and \(1,\)"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="same 1-D shape"):
        paired_test([[1.0, 2.0]], [[1.0, 2.0]])
    from benchmarks.statistics import ALPHA, PairedTest

    assert ALPHA == 0.05
    assert PairedTest(10, 0.3, 0.2, 0.0499, 0.5).a_significantly_better
    assert not PairedTest(10, 0.3, 0.2, 0.05, 0.5).a_significantly_better  # p < 0.05, strictly
    assert not PairedTest(10, 0.2, 0.2, 0.001, 0.5).a_significantly_better  # no difference
    assert not PairedTest(10, 0.3, 0.2, math.nan, 0.5).a_significantly_better


def test_best_row_of_any_sign_and_p_value_formatting():
    assert best_row({"A": -0.5}) == "A" and best_row({"A": -0.5, "B": -0.2}) == "B"
    assert best_row({"A": float("-inf"), "B": float("inf")}) is None
    assert best_row({"A": 0.1, "B": 0.3, "C": 0.2}) == "B" and best_row({}) is None
    assert format_p(None) == "n/a" and format_p(float("inf")) == "n/a"
    assert format_p(1e-4) == "0.0001" and format_p(0.99999) == "1.0000" and format_p(0.0) == "< 0.0001"


def test_paired_test_of_hits_given_as_booleans():
    # Recall@K per user as hits (rank <= K): booleans are 0/1 values, not an error
    ranks_a, ranks_b = np.array([1, 3, 30, 2, 5, 50]), np.array([12, 3, 40, 25, 9, 60])
    hits = paired_test(ranks_a <= 10, ranks_b <= 10)
    as_floats = paired_test((ranks_a <= 10).astype(float), (ranks_b <= 10).astype(float))
    assert hits == as_floats and hits.mean_a == pytest.approx(4 / 6) and hits.mean_b == pytest.approx(2 / 6)


def test_paired_test_lets_no_warning_escape(recwarn):
    """The edge cases scipy answers with a warning are answered by definition (the docstring): none
    reaches the caller, e.g. no users, or differences equal but for rounding (scipy's t-test warns
    of catastrophic cancellation there)."""
    import warnings

    a = np.array([0.3, 0.7, 0.9, 0.55])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = paired_test([], [])
        nearly = paired_test(a, a - 0.1)  # differences 0.1 up to rounding: not all equal as floats
    assert math.isnan(empty.mean_a) and math.isnan(empty.mean_b) and empty.n_users == 0
    assert nearly.n_users == 4 and nearly.mean_difference == pytest.approx(0.1)
    assert nearly.wilcoxon_pvalue == pytest.approx(stats.wilcoxon(a, a - 0.1).pvalue)
    assert not recwarn.list
