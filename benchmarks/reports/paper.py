"""The paper's numbers beside ours (benchmarks/paper_reference.yaml, the only place they live).

They are shown only where they are comparable: the same dataset (the statistics of the paper's
Table 8) and the paper's evaluation protocol (full ranking with history masked, or 1 target + 99
sampled negatives, over all users). A row whose backbone is not the paper's T5 says so instead
of a difference, and the paper's times, measured on its own unnamed GPU, are never set against
ours. How a page's numbers sit under its paper_key: ReportPage.paper_layout (benchmarks/config.py).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from ..pages import BACKBONE_KEYS, ReportPage
from ..statistics import format_summary
from .records import Record
from .tables import GroupTable
from .writer import TableFiles, Writer

PAPER_FILE = Path(__file__).resolve().parent.parent / "paper_reference.yaml"
# The paper's own columns, and the columns of ours they stand beside.
PAPER_COLUMNS = {"avg_input_length": "input length", "ms_per_batch": "ms/batch",
                 "beam_search_share": "beam search share"}
# Columns the paper measured on its own, unnamed GPU: never set against times measured here.
DEVICE_BOUND_PAPER_COLUMNS = {"ms_per_batch", "beam_search_share"}


def paper_reference() -> dict:
    return yaml.safe_load(PAPER_FILE.read_text())


@functools.lru_cache(maxsize=1)
def proposed_model() -> dict:
    """The paper's proposed model: {name: its registry name, label: how the pages name it}."""
    return dict(paper_reference()["proposed_model"])


def comparability(records: list[Record], paper: dict, candidates: str = "full") -> tuple[str | None, str]:
    """(paper dataset key, '') when the paper's numbers may sit beside ours, else (None, why)."""
    rec = records[0]
    name = rec.paper_name
    if not name:
        return None, f"the paper does not evaluate on {rec.dataset}"
    ref = paper["datasets"].get(name)
    if ref is None:
        return None, f"the paper has no dataset {name!r}"
    ours = rec.stats
    diffs = [f"{k} {ours[k]:,} vs the paper's {ref[k]:,}" for k in ("users", "items", "interactions") if ours[k] != ref[k]]
    if diffs:
        return None, f"our {rec.dataset} is not the paper's {name} ({'; '.join(diffs)})"
    expected = "full ranking, history masked" if candidates == "full" else "1 target + 99 sampled negatives"
    for r in records:
        ev = r.evaluation
        if not ev:
            continue
        wrong = ev.get("candidates") != candidates or ev.get("users") != "all"
        if candidates == "full":
            wrong = wrong or not ev.get("mask_history")
        else:
            wrong = wrong or ev.get("num_negatives") != 99
        if wrong:
            return None, f"the evaluation protocol differs from the paper's ({expected}, all users)"
    return name, ""


def backbone_difference(record: Record, varied: str | None = None) -> str:
    """Why one row's model is not the paper's (a non-T5 backbone), or '' when it is."""
    model = record.model_config
    diffs = [f"{key} {model[key]} in place of the paper's T5" for key in BACKBONE_KEYS
             if key != varied and isinstance(model.get(key), str) and "t5" not in model[key].lower()]
    return "; ".join(diffs)


def paper_rows(page: ReportPage, paper: dict, paper_dataset: str) -> dict[str, dict[str, float]]:
    """The paper's numbers for one dataset as {row: {paper column: value}}."""
    table = paper.get(page.paper_key or "") or {}
    if page.paper_layout == "by_dataset":
        return table.get(paper_dataset) or {}
    if page.paper_layout == "one_column":
        return {row: {page.paper_column: values[paper_dataset]} for row, values in table.items()
                if paper_dataset in values}
    return table if page.paper_dataset == paper_dataset else {}


def paper_row_names(page: ReportPage, paper: dict) -> set[str]:
    """Every row the paper prints in this page's table, on any dataset."""
    table = paper.get(page.paper_key or "") or {}
    if page.paper_layout == "by_dataset":
        return {row for rows in table.values() for row in rows}
    return set(table)


def rows_wanted(page: ReportPage, paper: dict) -> set[str] | None:
    """The rows a page shows: every row (None), or with paper_rows_only the paper's rows and the
    page's reference_run (the row every other is tested against, e.g. the MostPopular floor)."""
    if not page.paper_rows_only:
        return None
    return paper_row_names(page, paper) | ({page.reference_run} if page.reference_run else set())


@dataclass
class PaperComparison:
    """What a table's section says about the paper's numbers (templates/artefact.md.j2)."""

    why_not: str = ""                  # the reason the paper's numbers are not shown at all
    device_bound: list[str] = field(default_factory=list)   # the paper's columns timed on its GPU
    devices: str = ""                  # where our rows were timed
    table: TableFiles | None = None    # the paper's numbers beside ours
    source: str = ""
    paper_key: str = ""
    paper_dataset: str = ""


def _comparison_row(run: str, reference: dict[str, float], table: GroupTable, note: str) -> dict:
    row = {"model": run}
    for col, value in reference.items():
        if col in DEVICE_BOUND_PAPER_COLUMNS:
            continue
        ours_col = PAPER_COLUMNS.get(col, col)
        summary = (table.values.get(run) or {}).get(ours_col)
        digits = 1 if col == "avg_input_length" else 4
        row[f"paper {ours_col}"] = f"{value}"
        row[f"ours {ours_col}"] = format_summary(summary, digits) if summary else "not run"
        if summary is None:
            row[f"ours - paper {ours_col}"] = "n/a"
        elif note:
            row[f"ours - paper {ours_col}"] = "not comparable"
        else:
            row[f"ours - paper {ours_col}"] = f"{summary.mean - value:+.{digits}f}"
    return row


def paper_comparison(page: ReportPage, table: GroupTable, records: list[Record], paper: dict,
                     writer: Writer, stem: str) -> PaperComparison | None:
    """The paper's numbers for these rows, or why they are not shown; None for a page without any."""
    if not page.paper_key:
        return None
    ok = [r for r in records if r.ok] or records
    paper_ds, why = comparability(ok, paper, page.candidates)
    if not paper_ds:
        return PaperComparison(why_not=why)
    reference = paper_rows(page, paper, paper_ds)
    out = PaperComparison(source=paper["source"], paper_key=page.paper_key, paper_dataset=paper_ds)
    out.device_bound = sorted({c for row in reference.values() for c in row} & DEVICE_BOUND_PAPER_COLUMNS)
    if out.device_bound:
        out.devices = ", ".join(sorted({r.latency.get("device_name", "n/a") for r in ok})) or "n/a"
    rows = []
    for run in table.runs:
        if run not in reference:
            continue
        note = backbone_difference(table.ok[run][0], page.varied_backbone) if run in table.ok else ""
        if run in table.stale:  # its numbers are of earlier settings, not of the row as declared now
            note = "; ".join(filter(None, [note, "stale: made under earlier settings"]))
        row = _comparison_row(run, reference[run], table, note)
        if len(row) > 1:
            rows.append({**row, "note": note})
    if rows:
        frame = pd.DataFrame(rows).fillna("")
        if not frame["note"].any():
            frame = frame.drop(columns="note")
        out.table = writer.table(stem + "__paper", frame)
    return out
