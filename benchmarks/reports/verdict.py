"""The verdict page (reports/verdict.md): for each dataset, from current main records only (a
stale one, made under an earlier version of its experiment file or model defaults, is left out
like a variant and named among the protocol differences), the proposed rows against the best converged baseline of each metric, and one sentence saying whether the
paper's claim (its proposed model better than the best baseline, benchmarks/paper_reference.yaml)
holds here.

Each comparison gives the difference of the means over seeds, its 95% interval over the seeds
both rows have (the t-interval of the per-seed differences, benchmarks/statistics.py), the
paired t-test over users (each user's value averaged over seeds first), how many tuning trials
each side had (a record's `tuning`), whether both converged (every stage stopped by patience),
and the paper's own difference where the dataset and protocol are the paper's. The p-values of
every comparison on the page are corrected together for multiple comparisons by
Benjamini-Hochberg (scipy.stats.false_discovery_control); a comparison is decided by its
adjusted p: better or worse at p < ALPHA, else no significant difference.

The sentence of a dataset follows from those outcomes alone (`sentence`): the claim holds when
a proposed row is better on every metric, does not hold when no proposed row is better on any
metric and the best of them is worse on at least one, is not supported when the proposed row
that did best differs on none, and holds in part when it is better on some but not all; a side
that did not converge makes it "not final". The page also lists, per dataset, the protocol
differences that remain (backbones, data, users, budgets, tuning, seeds), from the records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..statistics import ALPHA, PairedTest, SeedSummary, align_users, best_row, format_p, paired_test, summarize_seeds
from .catalogue import Group, Page
from .paper import backbone_difference, comparability, paper_rows, proposed_model
from .records import Record, current_by_run
from .significance import converged, is_proposed, per_user
from .tables import metric_columns, short
from .text import render
from .writer import TableFiles, Writer, slug

CORRECTION = "Benjamini-Hochberg (scipy.stats.false_discovery_control, method 'bh')"
BETTER, WORSE, TIE, UNTESTED = "better", "worse", "no significant difference", "not tested"


@dataclass
class Comparison:
    """One proposed row against the best converged baseline on one metric."""

    proposed: str
    baseline: str
    metric: str
    proposed_mean: float
    baseline_mean: float
    interval: SeedSummary | None          # the per-seed differences over the seeds both rows have
    test: PairedTest | None               # None: no per-user arrays
    proposed_trials: int = 0
    baseline_trials: int = 0
    proposed_converged: bool = True
    baseline_converged: bool = True
    paper: str = ""                       # the paper's own difference, where comparable
    adjusted: float = math.nan            # the corrected p-value (filled by `correct`)
    outcome: str = UNTESTED

    @property
    def difference(self) -> float:
        return self.proposed_mean - self.baseline_mean


@dataclass
class GroupVerdict:
    """One experiment on one dataset: its comparisons, its sentence, its remaining differences."""

    experiment: str
    dataset: str
    comparisons: list[Comparison] = field(default_factory=list)
    problem: str = ""                     # why nothing could be compared
    differences: list[str] = field(default_factory=list)
    sentence: str = ""
    table: TableFiles | None = None


def _mean(records: list[Record], metric: str) -> float:
    summary = summarize_seeds(r.metrics.get(metric) for r in records)
    return summary.mean if summary else math.nan


def trials(records: list[Record]) -> int:
    """The tuning trials behind a row's settings (0: the experiment file's settings)."""
    return max(int((r.raw.get("tuning") or {}).get("trials") or 0) for r in records)


def seed_interval(mine: list[Record], theirs: list[Record], metric: str) -> SeedSummary | None:
    by_seed = {r.seed: r.metrics.get(metric) for r in theirs}
    return summarize_seeds(r.metrics[metric] - by_seed[r.seed] for r in mine
                           if r.seed in by_seed and r.metrics.get(metric) is not None and by_seed[r.seed] is not None)


def _paper_difference(spec, paper: dict, paper_dataset: str | None, run: str, metric: str, proposed: set[str]) -> str:
    if paper_dataset is None:
        return "not comparable"
    rows = paper_rows(spec, paper, paper_dataset)
    # the paper's own rows of its proposed model (Lite-LLM4Rec_sampling, Lite-LLM4Rec_all: named by
    # the label paper_reference.yaml gives it) are no baselines of its claim, whatever we run
    label = proposed_model()["label"]
    proposed = proposed | {r for r in rows if r == label or r.startswith(label + "_")}
    column = short(metric)
    mine = (rows.get(run) or {}).get(column)
    baselines = {r: v[column] for r, v in rows.items() if r not in proposed and column in v}
    if mine is None or not baselines:
        return "n/a"
    best = max(baselines, key=baselines.get)
    return f"{mine - baselines[best]:+.4f} ({run} {mine} vs {best} {baselines[best]})"


def compare_group(page: Page, group: Group, paper: dict) -> GroupVerdict:
    """The comparisons of one experiment on one dataset (p-values not yet corrected)."""
    verdict = GroupVerdict(group.experiment, group.dataset)
    main = [r for r in group.records if r.ok and not r.stands_in]  # main records only
    ok = [r for r in main if not r.stale]  # current ones: a stale record is left out like a variant
    stale = sorted({r.run for r in main if r.stale})
    by_run = current_by_run(group.records)
    proposed = [run for run, recs in by_run.items() if is_proposed(group.exp, run, recs[0].model)]
    baselines = {run: recs for run, recs in by_run.items() if run not in proposed}
    settled = {run: recs for run, recs in baselines.items() if all(converged(r) for r in recs)}
    current = "current " if stale else ""
    if not ok:
        verdict.problem = ("only variant or stale records, which the verdict leaves out (current main records only)"
                           if stale else "only variant records, which the verdict leaves out (main records only)")
        verdict.differences = [stale_line(stale)] if stale else []
        return verdict
    if not proposed:
        verdict.problem = f"no {current}main record of the proposed model"
    elif not settled:
        verdict.problem = "no baseline converged" if baselines else f"no {current}main record of a baseline"
    paper_dataset, why = comparability(ok, paper, page.spec.candidates)
    verdict.differences = remaining_differences(by_run, proposed, baselines, settled, why)
    if stale:
        verdict.differences.insert(0, stale_line(stale))
    if verdict.problem:
        return verdict
    proposed_names = set(group.exp.get("proposed") or proposed)
    for metric in metric_columns(ok):
        best = best_row({run: _mean(recs, metric) for run, recs in settled.items()})
        if best is None:
            continue
        theirs = settled[best]
        their_users = per_user(theirs, metric)
        for run in proposed:
            mine = by_run[run]
            my_users = per_user(mine, metric)
            test = None
            if my_users is not None and their_users is not None:
                _, a, b = align_users(*my_users, *their_users)
                test = paired_test(a, b)
            verdict.comparisons.append(Comparison(
                run, best, metric, _mean(mine, metric), _mean(theirs, metric), seed_interval(mine, theirs, metric),
                test, trials(mine), trials(theirs), all(converged(r) for r in mine), all(converged(r) for r in theirs),
                _paper_difference(page.spec, paper, paper_dataset, run, metric, proposed_names)))
    return verdict


def stale_line(runs: list[str]) -> str:
    """The protocol difference of the stale rows the verdict leaves out."""
    return (f"Left out as stale (made under an earlier version of the experiment file or the model defaults; "
            f"`python run_all.py --list` shows them to run): {', '.join(runs)}.")


def remaining_differences(by_run, proposed, baselines, settled, why_not_paper: str) -> list[str]:
    """The protocol differences that remain between these records and the paper's claim."""
    out = []
    if why_not_paper:
        out.append(f"The paper's numbers are not comparable here: {why_not_paper}.")
    for run in proposed:
        backbone = backbone_difference(by_run[run][0])
        if backbone:
            out.append(f"{run}: {backbone}.")
    users = sorted({f"{run}: {recs[0].evaluation.get('users')}" for run, recs in by_run.items()
                    if recs[0].evaluation.get("users") not in (None, "all")})
    if users:
        out.append("Evaluated on a subset of the users: " + "; ".join(users) + ".")
    cut = sorted(run for run, recs in by_run.items() if not all(converged(r) for r in recs))
    if cut:
        out.append(f"Cut by a cap before converging: {', '.join(cut)}"
                   + ("; such baselines are left out of the best converged baseline." if set(cut) & set(baselines) else "."))
    tuned = {run: trials(recs) for run, recs in by_run.items()}
    searched = sorted(run for run, n in tuned.items() if n)
    if searched:
        out.append("Tuned (best of the stated trials): " + ", ".join(f"{run} ({tuned[run]})" for run in searched)
                   + "; the other rows run with their experiment file's settings (0 trials).")
    else:
        out.append("No row was tuned: every row runs with its experiment file's settings (0 trials).")
    out.append("Seeds per row: " + ", ".join(f"{run} {len(recs)}" for run, recs in by_run.items()) + ".")
    return out


def correct(comparisons: list[Comparison]) -> None:
    """Benjamini-Hochberg over every comparison's paired t-test p-value; each outcome from its
    adjusted p (comparisons without a test stay 'not tested')."""
    tested = [c for c in comparisons if c.test is not None and math.isfinite(c.test.t_pvalue)]
    if tested:
        adjusted = stats.false_discovery_control(np.array([c.test.t_pvalue for c in tested]), method="bh")
        for comparison, p in zip(tested, adjusted):
            comparison.adjusted = float(p)
            if p < ALPHA and comparison.difference != 0:
                comparison.outcome = BETTER if comparison.difference > 0 else WORSE
            else:
                comparison.outcome = TIE


def sentence(dataset: str, comparisons: list[Comparison], problem: str = "") -> str:
    """Whether the paper's claim holds on this dataset, from the outcomes alone (see the module)."""
    if problem:
        return f"On {dataset}, the paper's claim cannot be tested: {problem}."
    metrics = list(dict.fromkeys(c.metric for c in comparisons))
    n = len(metrics)
    rows: dict[str, list[Comparison]] = {}
    for c in comparisons:
        rows.setdefault(c.proposed, []).append(c)
    count = {run: {o: sum(c.outcome == o for c in cs) for o in (BETTER, WORSE, TIE, UNTESTED)} for run, cs in rows.items()}
    best = max(rows, key=lambda run: (count[run][BETTER], -count[run][WORSE], sum(c.difference for c in rows[run])))
    won, lost, even, untested = (count[best][o] for o in (BETTER, WORSE, TIE, UNTESTED))
    if untested == n:
        return f"On {dataset}, the paper's claim cannot be tested: no paired test over users was possible."
    # the rows the sentence speaks of: every proposed row when it says the claim does not hold
    # (no proposed row better anywhere, the best of them worse somewhere)
    used = comparisons if won == 0 and lost else rows[best]
    unsettled = sorted({c.proposed for c in used if not c.proposed_converged}
                       | {c.baseline for c in used if not c.baseline_converged})
    caveat = f"; not final: {', '.join(unsettled)} did not converge" if unsettled else ""
    corrected = f"adjusted p < {ALPHA}"
    if won == n:
        return (f"On {dataset}, the paper's claim holds: {best} is better than the best converged baseline on "
                f"all {n} metrics ({corrected}){caveat}.")
    if lost == n:
        losers = " and ".join(sorted(rows)) if len(rows) > 1 else best
        return (f"On {dataset}, the paper's claim does not hold: the best converged baseline is better than "
                f"{losers} on all {n} metrics ({corrected}){caveat}.")
    if won == 0 and lost == 0:
        return (f"On {dataset}, the paper's claim is not supported: {best}, the proposed row that did best, does "
                f"not differ significantly from the best converged baseline on any of the {n} metrics{caveat}.")
    if won == 0:  # worse on some metrics, even on the rest: nothing of the claim holds
        return (f"On {dataset}, the paper's claim does not hold: {best}, the proposed row that did best, is "
                f"better than the best converged baseline on none of the {n} metrics, worse on {lost} and not "
                f"significantly different on {even + untested}{caveat}.")
    return (f"On {dataset}, the paper's claim holds only in part: {best} is better than the best converged "
            f"baseline on {won} of {n} metrics, worse on {lost} and not significantly different on "
            f"{even + untested}{caveat}.")


def _interval(summary: SeedSummary | None) -> str:
    if summary is None:
        return "n/a (no common seed)"
    if summary.half_width is None:
        return "n=1: no interval"
    return f"[{summary.low:+.4f}, {summary.high:+.4f}] (n={summary.n})"


def _frame(comparisons: list[Comparison]) -> pd.DataFrame:
    return pd.DataFrame([{
        "proposed": c.proposed, "metric": short(c.metric), "best converged baseline": c.baseline,
        "proposed mean": f"{c.proposed_mean:.4f}", "baseline mean": f"{c.baseline_mean:.4f}",
        "difference": f"{c.difference:+.4f}", "95% interval over seeds": _interval(c.interval),
        "users": str(c.test.n_users) if c.test else "n/a", "paired t p": format_p(c.test.t_pvalue) if c.test else "n/a",
        "adjusted p": format_p(c.adjusted), "outcome": c.outcome,
        "trials (proposed / baseline)": f"{c.proposed_trials} / {c.baseline_trials}",
        "converged (proposed / baseline)": f"{'yes' if c.proposed_converged else 'no'} / "
                                           f"{'yes' if c.baseline_converged else 'no'}",
        "paper: proposed - best baseline": c.paper} for c in comparisons])


def verdict_page(page: Page, groups: list[Group], paper: dict, writer: Writer, not_run: str) -> tuple[Path, int]:
    """Write the verdict page; return it and its number of finished main records."""
    verdicts = [compare_group(page, group, paper) for group in groups]
    every = [c for v in verdicts for c in v.comparisons]
    correct(every)
    for verdict in verdicts:
        verdict.sentence = sentence(verdict.dataset, verdict.comparisons, verdict.problem)
        if verdict.comparisons:
            stem = f"{page.spec.page}__{slug(verdict.experiment)}__{slug(verdict.dataset)}"
            verdict.table = writer.table(stem, _frame(verdict.comparisons))
    several = len({v.experiment for v in verdicts}) > 1
    text = render("verdict.md.j2", page=page.spec, verdicts=verdicts, several=several, not_run=not_run,
                  label=proposed_model()["label"], correction=CORRECTION, n_tests=sum(c.test is not None for c in every),
                  outcomes=(BETTER, WORSE, TIE))
    n_ok = sum(1 for g in groups for r in g.records if r.ok and not r.stands_in)
    return writer.text(f"{page.spec.page}.md", text), n_ok
