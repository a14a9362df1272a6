"""Which rows are tested, against what, and when a row earns its `*`.

- The proposed rows are the runs an experiment names under `proposed:`. An experiment that names
  none (a file without the key, or records whose experiment file is gone) falls back to the runs
  of the paper's proposed model (`proposed_model` in benchmarks/paper_reference.yaml): no model
  is named in the report code.
- Each proposed row is tested against the best baseline of each metric column (the non-proposed
  row with the highest mean over seeds), paired over users (benchmarks/statistics.py).
- A row earns its `*` when it is significantly better (the paired t-test, p < ALPHA) and its
  training converged: every stage stopped by patience, not by an epoch or time cap (a model that
  is not trained counts as converged). The table says when the best baseline was cut by its
  budget instead.
- A stale row (made under an earlier version of its experiment file or model defaults,
  staleness.py) is never the best baseline and never starred, as a row cut by its budget.
- A page with a `reference_run` (ablations) tests every other row against that row instead.
"""
from __future__ import annotations

import math

import pandas as pd

from ..statistics import (SeedSummary, align_users, best_row, format_p, paired_test,
                          per_user_mean_over_seeds)
from .paper import proposed_model
from .records import Record
from .tables import GroupTable, short


def is_proposed(exp: dict, run: str, model: str | None) -> bool:
    """Whether a run is a row of the proposed model (see the module's docstring)."""
    declared = exp.get("proposed")
    return model == proposed_model()["name"] if declared is None else run in declared


def proposed_runs(exp: dict, ok: dict[str, list[Record]]) -> set[str]:
    """The proposed rows among a table's finished runs."""
    return {run for run, recs in ok.items() if is_proposed(exp, run, recs[0].model)}


def proposed_label(groups) -> str:
    """How a page names its proposed rows in the star note: the paper's model by its label where
    every proposed row with a record is one of its (or none has a record), else the rows' names."""
    rows = {(rec.run, rec.model) for group in groups for rec in group.records
            if rec.ok and is_proposed(group.exp, rec.run, rec.model)}
    if all(model == proposed_model()["name"] for _, model in rows):
        return proposed_model()["label"]
    return ", ".join(sorted(run for run, _ in rows))


def converged(record: Record) -> bool:
    """Whether every training stage of the run stopped by patience (not by an epoch or time cap);
    a model that is not trained (MostPopular) counts as converged."""
    return not record.trained or all(stage.get("stopped_by") == "early_stopping" for stage in record.stages)


def per_user(records: list[Record], metric: str):
    """(user_index, each user's value averaged over the seeds), or None without per-user arrays."""
    arrays = []
    for rec in records:
        values = rec.per_user()
        if values is None:
            return None
        arrays.append(values)
    return per_user_mean_over_seeds(arrays, metric)


def paired_columns(users_a, users_b, label_a: str, label_b: str):
    """The paired test of two rows' per-user values ((user_index, values) each) over their common
    users, and its table columns: both means, the difference, the users and both p-values."""
    _, a, b = align_users(*users_a, *users_b)
    test = paired_test(a, b)
    return test, {label_a: f"{test.mean_a:.4f}", label_b: f"{test.mean_b:.4f}",
                  "difference": f"{test.mean_difference:+.4f}", "users": str(test.n_users),
                  "paired t p": format_p(test.t_pvalue), "Wilcoxon p": format_p(test.wilcoxon_pvalue)}


def _without_empty_notes(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).fillna("")
    return frame if frame["note"].any() else frame.drop(columns="note")


def significance(table: GroupTable, exp: dict) -> tuple[pd.DataFrame | None, dict[tuple[str, str], bool]]:
    """Each proposed row against the best baseline of each metric, paired over users; and the
    stars: (run, metric) -> starred."""
    proposed = [run for run, recs in table.ok.items() if is_proposed(exp, run, recs[0].model)]
    baselines = [run for run in table.ok if run not in proposed and run not in table.stale]
    if not proposed or not baselines:
        return None, {}
    rows, stars = [], {}
    for metric in table.metrics:
        means = {run: (table.values[run].get(short(metric)) or SeedSummary(math.nan, None, 0)).mean for run in baselines}
        best = best_row(means)
        if best is None:
            continue
        best_users = per_user(table.ok[best], metric)
        for run in proposed:
            row = {"proposed": run, "metric": short(metric), "best baseline": best}
            mine = per_user(table.ok[run], metric)
            if mine is None or best_users is None:
                missing = run if mine is None else best
                rows.append({**row, "note": f"no per-user arrays for {missing}"})
                continue
            test, columns = paired_columns(mine, best_users, "proposed mean", "baseline mean")
            mine_converged = all(converged(r) for r in table.ok[run])
            stars[(run, metric)] = test.a_significantly_better and mine_converged and run not in table.stale
            notes = [test.note] if test.note else []
            if test.a_significantly_better and not mine_converged:
                notes.append(f"not starred: {run} was cut by its budget")
            if run in table.stale:
                notes.append(f"{run} is stale (made under earlier settings): never starred")
            if not all(converged(r) for r in table.ok[best]):
                notes.append(f"the best baseline {best} was cut by its budget")
            rows.append({**row, **columns, "*": "*" if stars[(run, metric)] else "", "note": "; ".join(notes)})
    if not rows:
        return None, {}
    return _without_empty_notes(rows), stars


def against_reference(table: GroupTable, reference: str) -> pd.DataFrame | None:
    """Every other row against the reference row (an ablation against the full model), per
    metric, paired over users."""
    if reference not in table.ok or len(table.ok) < 2:
        return None
    rows = []
    for run in (r for r in table.ok if r != reference):
        for metric in table.metrics:
            ref_users, run_users = per_user(table.ok[reference], metric), per_user(table.ok[run], metric)
            row = {"row": table.name(run), "metric": short(metric), "against": table.name(reference)}
            if ref_users is None or run_users is None:
                rows.append({**row, "note": "no per-user arrays"})
                continue
            test, columns = paired_columns(run_users, ref_users, "row mean", "reference mean")
            rows.append({**row, **columns, "note": test.note})
    return _without_empty_notes(rows)
