"""The figures of a page's tables: the tidy data each one needs, from a table's records, handed
to benchmarks/figures.py, which draws them (PNG and PDF with fixed metadata).

- `grouped_bars` (Figures 4-6): one bar per row and metric, the 95% interval as error bar;
- `latency_breakdown` (Figure 2): each row's time per batch split into its named sections;
- the validation curves of every page with metrics: each trained row's first seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import figures
from ..pages import ReportPage
from .records import Record
from .significance import converged
from .tables import GroupTable, long_name, short

FIGURE_CAPTIONS = {
    "grouped_bars": "Bars: means over seeds; error bars: 95% confidence intervals over seeds (none for one seed).",
    "latency_breakdown": "Each bar: the median time of each named section over the timed batches, as a share of "
                         "their sum; the total at the right is the median time per batch.",
}
CURVES_CAPTION = ("Each trained row's validation metric (its first seed) against epoch and against training seconds; "
                  "where the rows were validated on different users, each legend entry names its own, and a row "
                  "marked (stale) was made under earlier settings than its table declares. Grey lines: an "
                  "untrained row (MostPopular) measured on the same validation users, where its record holds "
                  "its per-user validation ranks: the level a trained row must clear to have learnt more than "
                  "popularity.")


def validation_curve(record: Record) -> pd.DataFrame | None:
    """The run's validation metric per validation, its stages joined end to end: columns epoch,
    seconds, value, best (the validation whose weights the run kept), cut (the last validation
    of a run stopped by a cap)."""
    metric = record.valid_metric
    rows, epoch0, seconds0 = [], 0, 0.0
    stages = record.stages
    for number, stage in enumerate(stages):
        last = number == len(stages) - 1
        for entry in stage.get("history") or []:
            value = (entry.get("valid") or {}).get(metric)
            if value is None or (entry.get("epoch") == 0 and number > 0):  # a stage's starting point
                continue
            rows.append({"epoch": epoch0 + entry["epoch"], "seconds": seconds0 + float(entry.get("seconds", 0.0)),
                         "value": float(value), "best": last and entry["epoch"] == stage.get("best_epoch"),
                         "cut": False})
        epoch0 += int(stage.get("epochs") or 0)
        seconds0 += float(stage.get("seconds") or 0.0)
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    if not converged(record):
        frame.loc[frame.index[-1], "cut"] = True
    return frame


def validation_users(record: Record) -> str:
    """Whom the run validated on: its own fixed subset (eval.valid_max_users), else its test users."""
    return str(record.evaluation.get("valid_users") or record.evaluation.get("users") or "all")


def curve_labels(table: GroupTable, runs: list[str]) -> dict[str, str]:
    """Each row's legend entry: its name, `(stale)` as its table marks it, and its validation
    users where the rows were validated on different ones (a curve over 256 users is noisier,
    and not on the scale of one over all)."""
    users = {run: validation_users(table.ok[run][0]) for run in runs}
    mixed = len(set(users.values())) > 1
    labels = {}
    for run in runs:
        notes = (["stale"] if run in table.stale else []) + \
                ([users[run].replace("seeded subset of ", "") + " users" if users[run] != "all" else "all users"]
                 if mixed else [])
        labels[run] = f"{run} ({'; '.join(notes)})" if notes else run
    return labels


def floors(table: GroupTable, runs: list[str], metric: str) -> list[tuple[str, float]]:
    """(label, value): each untrained row's validation metric over the users each drawn curve was
    validated on (one line per distinct set of users), from its per-user validation ranks; rows
    whose record holds none (made before 2026-12-05), or not for those users, give none."""
    from ..evaluate import validation_users as chosen  # late import: the reports read no torch model

    sets = {}
    for run in runs:  # the users each curve's training validated on, as the trainer chose them
        record = table.ok[run][0]
        if (n_users := ((record.raw.get("data") or {}).get("stats") or {}).get("users")) is None:
            return []
        users = chosen(int(n_users), record.config["eval"])
        sets.setdefault(users.tobytes(), (users, "all users" if len(users) == n_users else
                                          f"{len(users)} of {n_users} users"))
    lines = []
    for run, recs in table.ok.items():
        valid = None if recs[0].trained else recs[0].per_user("valid")
        if valid is None or metric not in valid:
            continue
        position = {int(u): i for i, u in enumerate(valid["user_index"])}
        for users, named in sets.values():
            if all(int(u) in position for u in users):
                value = float(np.mean(valid[metric][[position[int(u)] for u in users]]))
                lines.append((f"{run} ({named})" if len(sets) > 1 else run, value))
    return lines


def learning_curves(table: GroupTable, title: str, stem: Path) -> list[Path]:
    """One line per trained row of the table (its first seed's curve), and the untrained rows'
    level on the same validation users (floors)."""
    curves = {run: curve for run, recs in table.ok.items() if (curve := validation_curve(recs[0])) is not None}
    labels = curve_labels(table, list(curves))
    parts = [curve.assign(model=labels[run]) for run, curve in curves.items()]
    if not parts:
        return []
    metric = table.ok[next(iter(table.ok))][0].valid_metric
    return figures.learning_curves(pd.concat(parts, ignore_index=True), title, stem, metric_label=long_name(metric),
                                   floors=floors(table, list(curves), metric))


def table_figure(page: ReportPage, table: GroupTable, title: str, stem: Path) -> list[Path]:
    """The page's own figure of one table (ReportPage.figure), or none."""
    if page.figure == "grouped_bars":
        bars = [{"model": run, "metric": short(m), "mean": s.mean,
                 "half_width": np.nan if s.half_width is None else s.half_width}
                for run in table.ok for m in table.metrics
                if (s := table.values[run].get(short(m))) is not None]
        return figures.grouped_bars(pd.DataFrame(bars), title, stem) if bars else []
    if page.figure == "latency_breakdown":
        parts, totals, batch = [], {}, 32
        for run, recs in table.ok.items():
            sections = [r.sections for r in recs]
            names = {s for sec in sections for s in sec}
            if not names:
                continue
            for name in names:
                parts.append({"model": run, "section": name, "ms": float(np.mean([sec.get(name, 0.0) for sec in sections]))})
            totals[run] = float(np.mean([r.latency["ms_per_batch_median"] for r in recs]))
            batch = recs[0].latency.get("batch_size", 32)
        return figures.latency_breakdown(pd.DataFrame(parts), totals, title, stem, batch_size=batch) if parts else []
    return []
