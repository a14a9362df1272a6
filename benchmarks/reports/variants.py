"""The variant records of a table: runs whose config differs from what their experiment file
states (benchmarks/variants.py: command-line overrides, an experiment set's budget, other data).
They are shown under the table they would belong to, in a table of their own, and never in it
unless `--with-variants TAG` lets them stand in: one row per run and tag with the page's columns
(means over seeds), never starred and never the best baseline, and what differs.

What differs is what the record says made it (the runner records it); a record renamed to its
variant name before that was recorded is compared here with its experiment file as it is now."""
from __future__ import annotations

from collections import defaultdict

import pandas as pd

from ..errors import ConfigError
from ..pages import ReportPage
from ..variants import describe, differences
from .records import Record
from .tables import columns, details, metric_columns, missing_row, short, summary_cells

DIFFERS = "differs from the experiment file"


def record_differences(rec: Record, exp: dict) -> str:
    """What makes this record a variant: as recorded, or against the experiment file as it is."""
    if rec.variant_differs is not None:
        return describe(rec.variant_differs)
    from ..config import resolve_run  # late: resolving imports the model's class

    try:
        reference = resolve_run(rec.experiment, exp, rec.run, rec.dataset, rec.seed).config
    except (ConfigError, KeyError) as err:
        return f"not compared (the experiment file does not resolve this run here: {err})"
    return describe(differences(reference, rec.config))


def variant_table(page: ReportPage, exp: dict, variants: list[Record]) -> pd.DataFrame:
    """One row per run and tag: the page's columns over the variant's seeds, its stopped-by and
    seeds, and what differs from the experiment file."""
    metrics = metric_columns(variants)
    if page.metrics:
        metrics = [m for m in metrics if short(m) in page.metrics]
    cols = columns(page, variants, metrics)
    grouped: dict[tuple[str, str], list[Record]] = defaultdict(list)
    order = {run: i for i, run in enumerate(exp.get("runs") or {})}
    for rec in sorted(variants, key=lambda r: (order.get(r.run, len(order)), r.run, r.variant, r.seed)):
        grouped[(rec.run, rec.variant)].append(rec)
    rows = []
    for (run, tag), recs in grouped.items():
        ok = [r for r in recs if r.ok]
        row = {"model": run, "variant": tag}
        if ok:
            row.update(summary_cells(cols, ok, run)[0])
            row.update(details(page, ok))
        else:
            row.update(missing_row(recs, cols))
        row[DIFFERS] = " | ".join(dict.fromkeys(record_differences(r, exp) for r in recs))
        rows.append(row)
    frame = pd.DataFrame(rows).fillna("")
    return frame[[c for c in frame.columns if c != DIFFERS] + [DIFFERS]]  # the widest cell last
