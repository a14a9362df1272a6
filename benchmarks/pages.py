"""Report pages as experiment files declare them (`report:` entries, and pages.yaml for pages no
experiment declares yet): one `ReportPage` per page, every key checked on loading. The reports
package (benchmarks/reports/) builds the pages; this module only reads their declarations."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

# What a page's tables may show, in groups of columns (benchmarks/reports/tables.py).
# `validation`: the trained model's validation metrics, for pages that choose a setting on them.
COLUMN_GROUPS = ("validation", "metrics", "latency", "latency_detail", "input_length", "training", "cold_start",
                 "sections")
# How a page's numbers sit in paper_reference.yaml under its paper_key:
#   by_dataset  {paper dataset: {row: {column: value}}}
#   one_dataset {row: {column: value}}, all on `paper_dataset`
#   one_column  {row: {paper dataset: value}}, all values of `paper_column`
PAPER_LAYOUTS = ("by_dataset", "one_dataset", "one_column")
FIGURES = ("grouped_bars", "latency_breakdown")
# What a page is: a table page (one table per experiment and dataset feeding it), or the verdict
# on the paper's claim (benchmarks/reports/verdict.py), from the same records.
PAGE_KINDS = ("table", "verdict")
# Config keys under `model:` that name a pretrained backbone (a page may vary one of them).
BACKBONE_KEYS = ("item_llm", "rec_llm", "backbone")


@dataclass(frozen=True)
class ReportPage:
    """One report page, declared as one entry of a `report:` list (reports/<page>.md)."""

    page: str                                   # the file name: reports/<page>.md
    title: str
    what: str                                   # one line: what the paper (or the page) shows
    paper_key: str | None = None                # the paper's numbers in paper_reference.yaml
    paper_layout: str = "by_dataset"            # PAPER_LAYOUTS
    paper_dataset: str | None = None            # one_dataset: the paper dataset of its numbers
    paper_column: str | None = None             # one_column: the column its numbers fill
    columns: tuple[str, ...] = ("metrics", "latency", "input_length", "training")   # COLUMN_GROUPS
    metrics: tuple[str, ...] | None = None      # short names (R@20, ...) when the paper shows a few
    figure: str | None = None                   # FIGURES: one figure per table
    candidates: str = "full"                    # the paper's ranking protocol: full | sampled
    varied_backbone: str | None = None          # BACKBONE_KEYS: the backbone the rows vary
    paper_rows_only: bool = False               # only the paper's rows (when the experiment has any)
    only_paper_datasets: tuple[str, ...] | None = None   # only datasets standing for these
    excluded_paper_datasets: tuple[str, ...] = ()        # datasets that have a page of their own
    from_paper: bool = True                     # False: a view of ours, no artefact of the paper
    reference_run: str | None = None            # every other row tested against this one
    kind: str = "table"                         # PAGE_KINDS
    declared_in: str = ""                       # the file that declares it (set on loading)


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _texts(value) -> bool:
    return isinstance(value, list) and all(_text(v) for v in value)


# key -> (check, what the value must be, how to store it)
_PAGE_FIELDS = {
    "page": (lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", v) is not None,
             "a file name (letters, digits, '_', '.', '-')", str),
    "title": (_text, "a text", str),
    "what": (_text, "a text", str),
    "paper_key": (lambda v: v is None or _text(v), "a key of paper_reference.yaml or null", lambda v: v),
    "paper_layout": (lambda v: v in PAPER_LAYOUTS, f"one of {list(PAPER_LAYOUTS)}", str),
    "paper_dataset": (lambda v: v is None or _text(v), "a paper dataset or null", lambda v: v),
    "paper_column": (lambda v: v is None or _text(v), "a column of the paper's numbers or null", lambda v: v),
    "columns": (lambda v: isinstance(v, list) and bool(v) and all(c in COLUMN_GROUPS for c in v),
                f"a non-empty list of {list(COLUMN_GROUPS)}", tuple),
    "metrics": (lambda v: v is None or _texts(v), "a list of short metric names (R@20, N@20) or null",
                lambda v: None if v is None else tuple(v)),
    "figure": (lambda v: v is None or v in FIGURES, f"one of {list(FIGURES)} or null", lambda v: v),
    "candidates": (lambda v: v in ("full", "sampled"), "full or sampled", str),
    "varied_backbone": (lambda v: v is None or v in BACKBONE_KEYS, f"one of {list(BACKBONE_KEYS)} or null",
                        lambda v: v),
    "paper_rows_only": (lambda v: isinstance(v, bool), "true or false", bool),
    "only_paper_datasets": (lambda v: v is None or _texts(v), "a list of paper datasets or null",
                            lambda v: None if v is None else tuple(v)),
    "excluded_paper_datasets": (_texts, "a list of paper datasets", tuple),
    "from_paper": (lambda v: isinstance(v, bool), "true or false", bool),
    "reference_run": (lambda v: v is None or _text(v), "a run name or null", lambda v: v),
    "kind": (lambda v: v in PAGE_KINDS, f"one of {list(PAGE_KINDS)}", str),
}
_LAYOUT_NEEDS = {"one_dataset": "paper_dataset", "one_column": "paper_column"}


def report_pages(path: Path, declarations) -> tuple[ReportPage, ...]:
    """The `report:` list of a file as ReportPage entries; any unknown key, missing field or value
    of the wrong kind is an error naming the file and the key."""
    if declarations is None:
        return ()
    if not isinstance(declarations, list):
        raise ConfigError(f"{path}: 'report' must be a list of page declarations")
    pages = []
    for number, entry in enumerate(declarations, 1):
        where = f"{path}: report entry {number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping of page settings")
        if entry.get("page"):
            where += f" (page {entry['page']!r})"
        unknown = sorted(set(entry) - set(_PAGE_FIELDS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(_PAGE_FIELDS)}")
        missing = [key for key in ("page", "title", "what") if key not in entry]
        if missing:
            raise ConfigError(f"{where}: missing {missing}")
        values = {}
        for key, value in entry.items():
            check, expected, convert = _PAGE_FIELDS[key]
            if not check(value):
                raise ConfigError(f"{where}: {key!r} must be {expected}, got {value!r}")
            values[key] = convert(value)
        layout = values.get("paper_layout", "by_dataset")
        for other, needed in _LAYOUT_NEEDS.items():
            if (layout == other) != (values.get(needed) is not None):
                raise ConfigError(f"{where}: {needed!r} goes with paper_layout {other} (and only with it)")
        pages.append(ReportPage(**values, declared_in=str(path)))
    return tuple(pages)
