"""The statistics the reports print: mean and 95% confidence interval over seeds, and paired
significance tests over users against the best baseline (the paper's `*`, p < 0.05).

Everything here takes plain numbers or arrays, so it can be checked against scipy and by hand;
`benchmarks/reports/` loads the records and the per-user arrays.

- Over seeds: the interval is the t-interval mean ± t(0.975, n-1) · sd / sqrt(n), with sd the
  sample standard deviation (ddof=1). One seed gives no interval: the value is shown with n=1.
- Over users: two models are compared on the same test users (aligned by `user_index`, the
  per-user arrays beside every record). When a model ran with several seeds, each user's value is
  first averaged over the seeds, so every user counts once. Two tests are run on the per-user
  differences, both two-sided: the paired t-test (`scipy.stats.ttest_rel`) and the Wilcoxon
  signed-rank test (`scipy.stats.wilcoxon`, zero differences dropped as in Wilcoxon's original
  method). The `*` follows the paired t-test and needs the proposed model to be the better one.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
STAR_TEST = "paired t-test"
TEST_NAMES = {
    "t": "paired t-test (scipy.stats.ttest_rel, two-sided)",
    "wilcoxon": "Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided, zero differences dropped)",
}


# ----------------------------------------------------------------------------- over seeds


@dataclass(frozen=True)
class SeedSummary:
    """The mean of one quantity over seeds and the half-width of its confidence interval."""

    mean: float
    half_width: float | None  # None when n == 1: one seed gives no interval
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


def summarize_seeds(values: Iterable[float | None], confidence: float = CONFIDENCE) -> SeedSummary | None:
    """Mean and t-interval over the finite values (None and NaN are dropped); None when none."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return None
    mean = float(finite.mean())
    if finite.size == 1:
        return SeedSummary(mean, None, 1)
    sd = float(finite.std(ddof=1))
    t_quantile = float(stats.t.ppf((1.0 + confidence) / 2.0, df=finite.size - 1))
    return SeedSummary(mean, t_quantile * sd / math.sqrt(finite.size), int(finite.size))


def format_summary(summary: SeedSummary | None, digits: int = 4) -> str:
    """'0.2100 ± 0.1271' (mean ± CI half-width), or the bare value for one seed; 'n/a' for none.
    (How many seeds a row has is printed in its own column.)"""
    if summary is None:
        return "n/a"
    if summary.half_width is None:
        return f"{summary.mean:.{digits}f}"
    return f"{summary.mean:.{digits}f} ± {summary.half_width:.{digits}f}"


# ----------------------------------------------------------------------------- over users


def per_user_mean_over_seeds(per_seed: Sequence[Mapping[str, np.ndarray]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(user_index, value) with each user's metric averaged over the seeds; only users present in
    every seed are kept (runs of one experiment evaluate the same users, so normally all)."""
    if not per_seed:
        raise ValueError("no per-user arrays")
    users = None
    for arrays in per_seed:
        index = _user_index(arrays, metric)
        users = index if users is None else np.intersect1d(users, index)
    total = np.zeros(len(users), dtype=np.float64)
    for arrays in per_seed:
        index = _user_index(arrays, metric)
        order = np.argsort(index)
        positions = order[np.searchsorted(index[order], users)]
        total += np.asarray(arrays[metric], dtype=np.float64)[positions]
    return users, total / len(per_seed)


def _user_index(arrays: Mapping[str, np.ndarray], metric: str) -> np.ndarray:
    if metric not in arrays:
        raise KeyError(f"no per-user values for {metric!r} (have {sorted(arrays)})")
    if "user_index" in arrays:
        index = np.asarray(arrays["user_index"], dtype=np.int64)
        if len(np.unique(index)) != len(index):
            raise ValueError("user_index repeats a user")
        return index
    # Records written before user_index existed hold every user in order.
    return np.arange(len(arrays[metric]), dtype=np.int64)


def align_users(users_a: np.ndarray, values_a: np.ndarray, users_b: np.ndarray, values_b: np.ndarray):
    """The two models' values on the users both were evaluated on, in the same order."""
    common, pos_a, pos_b = np.intersect1d(users_a, users_b, return_indices=True)
    return common, np.asarray(values_a)[pos_a], np.asarray(values_b)[pos_b]


@dataclass(frozen=True)
class PairedTest:
    """Model A against model B on the same users: A − B and two-sided p-values."""

    n_users: int
    mean_a: float
    mean_b: float
    t_pvalue: float         # paired t-test; NaN when it cannot be computed (fewer than 2 users)
    wilcoxon_pvalue: float  # Wilcoxon signed-rank; 1.0 when every difference is zero
    note: str = ""          # why a p-value was set by hand (identical values, too few users)

    @property
    def mean_difference(self) -> float:
        return self.mean_a - self.mean_b

    @property
    def a_significantly_better(self) -> bool:
        """The paper's `*`: A better than B and the paired t-test's p < 0.05."""
        return self.mean_difference > 0 and self.t_pvalue < ALPHA


def paired_test(values_a: Sequence[float], values_b: Sequence[float]) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of A against B, user by user.

    Edge cases scipy answers with NaN and a warning are answered here by definition: identical
    values give p = 1 (no evidence of a difference); the same non-zero difference for every user
    gives a t-test p of 0 (zero variance: the difference is exact), while Wilcoxon's exact
    p-value stays as scipy computes it; fewer than two users give NaN (never significant).
    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need the same 1-D shape, got {a.shape} and {b.shape}")
    n = int(a.size)
    mean_a = float(a.mean()) if n else math.nan
    mean_b = float(b.mean()) if n else math.nan
    if n < 2:
        return PairedTest(n, mean_a, mean_b, math.nan, math.nan, "fewer than 2 users")
    diff = a - b
    if not np.any(diff):
        return PairedTest(n, mean_a, mean_b, 1.0, 1.0, "identical values for every user")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if np.all(diff == diff[0]):
            t_p, note = 0.0, "the same difference for every user"
        else:
            t_p, note = float(stats.ttest_rel(a, b).pvalue), ""
        w_p = float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
    return PairedTest(n, mean_a, mean_b, t_p, w_p, note)


def best_row(means: Mapping[str, float | None], exclude: Iterable[str] = ()) -> str | None:
    """The row with the highest mean among those not excluded (ties: the first in order)."""
    excluded = set(exclude)
    best, best_value = None, -math.inf
    for row, value in means.items():
        if row in excluded or value is None or not math.isfinite(value):
            continue
        if value > best_value:
            best, best_value = row, value
    return best


def format_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"
