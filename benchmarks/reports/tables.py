"""One table of a page: one experiment on one dataset, one row per run (the experiment's order,
then any other run with records), a cell per column: the mean over seeds with its 95% interval
(benchmarks/statistics.py). A row without a finished record says "not run", or "skipped:
<reason>" / "failed: <error>" from a skip or failure record; nothing is filled in from
elsewhere. Beside the numbers: how each row's training ended (`stopped by`), its seeds,
backbones, device and evaluated users; and, where variant records stand in for a row's own
(--with-variants), their tag in a `variant` column. A row whose main records were made under
an earlier version of its experiment file or model defaults (staleness.py) keeps its numbers,
its name marked `(stale)`, and says what differs in the lines under the table (`stale_lines`)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd

from .. import figures
from ..pages import ReportPage
from ..statistics import SeedSummary, format_summary, summarize_seeds
from .records import Record
from .text import one_line

METRIC_LABELS = {"recall": "R", "ndcg": "N"}
METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG"}
DIGITS = {"metric": 4, "ms": 2, "length": 1, "epochs": 1, "seconds": 1, "share": 3, "gflop": 2}
STOP_LABELS = {"early_stopping": "patience", "epochs": "epoch cap", "time_budget": "time budget"}
STALE_MARK = " (stale)"
MIN_TIMED_BATCHES = 30  # a latency median from fewer timed batches says so in its cell


def short(metric: str) -> str:
    """recall@10 -> R@10 (table columns)."""
    name, _, k = metric.partition("@")
    return f"{METRIC_LABELS.get(name, name)}@{k}" if k else metric


def long_name(metric: str) -> str:
    """recall@10 -> Recall@10 (axis labels)."""
    name, _, k = metric.partition("@")
    return f"{METRIC_NAMES.get(name, name)}@{k}"


def _metric_order(key: str):
    name, _, k = key.partition("@")
    return (name != "recall", name, int(k) if k.isdigit() else 10**9, k)


def metric_columns(records: list[Record]) -> list[str]:
    keys: list[str] = []
    for rec in records:
        for key in rec.metrics:
            if key not in keys:
                keys.append(key)
    if not keys:  # nothing ran: the columns the config asked for
        ks = next((r.ks for r in records if r.config), [10, 20])
        keys = [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks]
    return sorted(keys, key=_metric_order)


@dataclass
class Column:
    label: str
    path: tuple           # where the number sits in a record (Record.number)
    digits: int


@dataclass
class GroupTable:
    """One experiment on one dataset: the formatted table and the numbers behind it."""

    frame: pd.DataFrame
    values: dict[str, dict[str, SeedSummary | None]]   # run -> column label -> summary
    ok: dict[str, list[Record]]                        # run -> finished records
    metrics: list[str]                                 # metric keys shown (recall@10, ...)
    runs: list[str] = field(default_factory=list)      # the rows in order, by run name
    stale: dict[str, str] = field(default_factory=dict)  # run -> what differs, for a stale row

    def name(self, run: str) -> str:
        """The row's name as the table writes it: `(stale)` marked."""
        return run + STALE_MARK if run in self.stale else run


def stale_reasons(ok: list[Record]) -> str:
    """What makes a row's finished records stale ('' where every one is current), per seed
    where the seeds differ."""
    reasons = {r.seed: r.stale for r in ok if r.stale}
    if not reasons:
        return ""
    unique = list(dict.fromkeys(reasons.values()))
    if len(unique) == 1 and len(reasons) == len(ok):
        return unique[0]
    return "; ".join(f"seed {seed}: {why}" for seed, why in reasons.items())


def stale_lines(table: GroupTable) -> list[str]:
    """One line per stale row: what differs from its experiment file now, and that it is to run."""
    return [f"{run}: made under other settings than the experiment file now declares (now -> recorded: "
            f"{why}); `python run_all.py --list` shows it to run." for run, why in table.stale.items()]


ONE_RANKING = 1e-4  # user_spread below this: one ranking for all (collapsed models 1e-7, healthy >= 7e-3)


def one_ranking_lines(table: GroupTable) -> list[str]:
    """One line per trained row whose every record ranks all users alike: its test scores vary
    across users by under ONE_RANKING of their variation across items (evaluate.score_spread).
    Such a model recommends its output bias, popularity, whatever its loss; MostPopular does so by
    design and is not trained, so it never appears here. Records made before 2026-12-04 hold no
    spread and say nothing."""
    lines = []
    for run in table.runs:
        spreads = [r.number(("evaluation", "user_spread")) for r in table.ok.get(run, []) if r.trained]
        if spreads and all(x is not None and x < ONE_RANKING for x in spreads):
            lines.append(f"{table.name(run)}: ranks every user alike (its scores vary across users by "
                         f"{max(spreads):.1e} of their variation across items): a trained model collapsed to "
                         "one ranking; `python -m tools.representation_spread` shows where.")
    return lines


def short_list_lines(table: GroupTable) -> list[str]:
    """One line per generative row whose beam search returned lists shorter than k (decoded
    strings that are no item id dropped, as unconstrained decoding does): what share, from the
    model's counts (its first seed), which run over every validation, test and timed batch the
    model decoded (from its last sitting where its training was resumed)."""
    lines = []
    for run in table.runs:
        recs = table.ok.get(run, [])
        counts = (recs[0].raw.get("model_info") or {}).get("decoding", {}).get("counts") if recs else None
        if not counts or not counts.get("short_lists"):
            continue
        lists, short, invalid = counts["lists"], counts["short_lists"], counts.get("invalid_ids", 0)
        lines.append(f"{table.name(run)}: {short / lists:.0%} of the lists its beam search returned ({short:,} of "
                     f"{lists:,}, over the validations, tests and timed batches it decoded) were shorter than asked: "
                     f"{invalid:,} decoded strings were not item ids ({invalid / lists:.1f} a list) and were dropped; "
                     "its metrics count those lists as they are.")
    return lines


def has_training_throughput(records) -> bool:
    """Whether any finished record holds its training throughput (recorded since 2026-12): the
    training columns then show it, and the page says what it is."""
    return any(r.ok and r.train_rows_per_second is not None for r in records)


def columns(page: ReportPage, records: list[Record], metrics: list[str]) -> list[Column]:
    """The page's column groups (ReportPage.columns) spelled out for these records."""
    ok = [r for r in records if r.ok]
    cols: list[Column] = []
    for group in page.columns:
        if group == "validation":  # the trained model's (best validated weights) validation metrics
            cols += [Column(f"valid {short(m)}", ("valid_metrics", m), DIGITS["metric"]) for m in metrics]
        elif group == "metrics":
            cols += [Column(short(m), ("metrics", m), DIGITS["metric"]) for m in metrics]
        elif group == "latency":
            cols.append(Column("ms/batch", ("latency", "ms_per_batch_median"), DIGITS["ms"]))
            if any(r.number(("latency", "gflop_per_batch")) is not None for r in ok):  # counted since 2026-12
                cols += [Column("GFLOP/batch", ("latency", "gflop_per_batch"), DIGITS["gflop"]),
                         Column("share of peak", ("latency", "share_of_peak"), DIGITS["share"])]
        elif group == "latency_detail":
            cols.append(Column("ms/batch p90", ("latency", "ms_per_batch_p90"), DIGITS["ms"]))
        elif group == "input_length":
            cols.append(Column("input length", ("input_length", "mean"), DIGITS["length"]))
        elif group == "training":
            cols += [Column("epochs", ("training", "epochs"), DIGITS["epochs"]),
                     Column("train s", ("training", "seconds"), DIGITS["seconds"])]
            if has_training_throughput(ok):
                cols += [Column("train rows/s", ("derived", "train_rows_per_second"), DIGITS["seconds"]),
                         Column("train share of peak", ("derived", "train_share_of_peak"), DIGITS["share"])]
        elif group == "cold_start":  # the same run's other users, beside the cold-start users' metrics
            cols += [Column(f"{short(m)} other users", ("cold_start", "metrics_other_users", m), DIGITS["metric"])
                     for m in metrics]
        elif group == "sections":
            names = figures.ordered_sections({s for r in ok for s in r.sections})
            cols += [Column(f"{figures.SECTION_LABELS.get(s, s)} ms", ("latency", "sections_ms_median", s), DIGITS["ms"])
                     for s in names]
            if "beam_search" in names:
                cols.append(Column("beam search share", ("derived", "beam_search_share"), DIGITS["share"]))
    return cols


def stopped_by_cell(records: list[Record]) -> str:
    """How each seed's training ended: 'patience (best 12 of 22)', 'epoch cap (best 5 of 5)'..."""
    cells = []
    for rec in records:
        if not rec.trained:
            cells.append("not trained")
            continue
        parts = [f"{STOP_LABELS.get(stage.get('stopped_by'), stage.get('stopped_by') or 'unknown')} "
                 f"(best {stage.get('best_epoch')} of {stage.get('epochs')})" for stage in rec.stages]
        cell = " then ".join(parts) if len(parts) > 1 else parts[0]
        pretrain = (rec.raw.get("training") or {}).get("pretrain")
        if pretrain:  # a pre-training stage without validation (S3Rec): its epochs are a cap
            cell = f"pre-trained {pretrain.get('epochs')} epochs (a cap), then {cell}"
        cells.append(cell)
    unique = list(dict.fromkeys(cells))
    return unique[0] if len(unique) == 1 else "; ".join(f"seed {r.seed}: {c}" for r, c in zip(records, cells))


def missing_row(records: list[Record], cols: list[Column]) -> dict:
    """The cells of a row without a finished record: why, in the first cell."""
    failed = [r for r in records if r.failed]
    skipped = [r for r in records if r.skipped]
    note = (f"failed: {failed[0].error}" if failed else f"skipped: {skipped[0].skip_reason}" if skipped
            else "not run")
    note = one_line(note)  # a library's message may span lines; a table cell cannot
    return {c.label: note if i == 0 else "" for i, c in enumerate(cols)}


def summary_cells(cols: list[Column], ok: list[Record], run: str, stars: dict | None = None) -> tuple[dict, dict]:
    """(the row's cells, their summaries): each column's mean over the seeds' records, `*` where
    `stars` gives (run, metric) its star."""
    cells, values = {}, {}
    for col in cols:
        summary = summarize_seeds(r.number(col.path) for r in ok)
        values[col.label] = summary
        cell = format_summary(summary, col.digits)
        if stars and col.path[0] == "metrics" and stars.get((run, col.path[1])):
            cell += "*"
        if col.path == ("latency", "ms_per_batch_median") and summary is not None:
            cell += few_batches_note(ok)
        cells[col.label] = cell
    return cells, values


def few_batches_note(records: list[Record]) -> str:
    """' (3 timed batches)' where a record's latency median comes from fewer than
    MIN_TIMED_BATCHES timed batches (the fewest of the row's seeds), else ''."""
    counts = [r.latency.get("n_batches") for r in records if r.latency]
    fewest = min((int(n) for n in counts if n is not None), default=None)
    return f" ({fewest} timed batches)" if fewest is not None and fewest < MIN_TIMED_BATCHES else ""


def details(page: ReportPage, ok: list[Record]) -> dict:
    """The cells beside the numbers: training end, seeds, backbones, device, unit, users."""
    row = {}
    if "metrics" in page.columns:
        row["stopped by"] = stopped_by_cell(ok)
    row["seeds"] = f"n={len(ok)}: " + ", ".join(str(r.seed) for r in ok)
    if any(r.backbones for r in ok):
        row["backbones"] = ok[0].model_info.get("backbones", "")
    if "latency_detail" in page.columns:
        row["device"] = ", ".join(sorted({r.latency.get("device_name", "n/a") for r in ok}))
        row["dtype"] = ", ".join(sorted({str(r.latency.get("dtype", "n/a")) for r in ok}))
    if "input_length" in page.columns and "metrics" not in page.columns:
        row["unit"] = ok[0].input_length.get("unit", "")  # what Tables 1 and 5 count
    row["users"] = ok[0].evaluation.get("users", "")
    return row


def group_table(page: ReportPage, exp: dict, records: list[Record], stars: dict[tuple[str, str], bool] | None = None,
                rows_wanted: set[str] | None = None) -> GroupTable:
    """One row per run of the experiment (in the experiment's order, then any others); with
    `rows_wanted` (the paper's rows, for a page that prints a selection), only those rows when the
    experiment has any. `stars`: (run, metric) -> whether the cell gets its `*`."""
    metrics = metric_columns(records)
    if page.metrics:
        metrics = [m for m in metrics if short(m) in page.metrics]
    cols = columns(page, records, metrics)
    by_run: dict[str, list[Record]] = defaultdict(list)
    for rec in records:
        by_run[rec.run].append(rec)
    run_names = list(exp.get("runs") or {})
    run_names += [r for r in by_run if r not in run_names]
    if rows_wanted is not None:
        run_names = [r for r in run_names if r in rows_wanted] or run_names
    rows, values, ok_by_run, stale = [], {}, {}, {}
    standing = any(r.stands_in for r in records)
    for run in run_names:
        recs = by_run.get(run, [])
        ok = sorted((r for r in recs if r.ok), key=lambda r: r.seed)
        row = {"model": run}
        # the last column: which rows are variants standing in for the experiment's own records
        marked = {"variant": ", ".join(sorted({r.variant for r in recs if r.stands_in}))} if standing else {}
        if not ok:
            rows.append({**row, **missing_row(recs, cols), **marked})
            continue
        ok_by_run[run] = ok
        if why := stale_reasons(ok):
            stale[run] = why
            row["model"] += STALE_MARK
        cells, values[run] = summary_cells(cols, ok, run, stars)
        rows.append({**row, **cells, **details(page, ok), **marked})
    frame = pd.DataFrame(rows).fillna("")
    if standing:
        frame = frame[[c for c in frame.columns if c != "variant"] + ["variant"]]
    if "unit" in frame.columns:  # beside the number it qualifies
        order = [c for c in frame.columns if c != "unit"]
        order.insert(order.index("input length") + 1, "unit")
        frame = frame[order]
    return GroupTable(frame, values, ok_by_run, metrics, run_names, stale)
