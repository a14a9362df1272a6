"""Reports, built from the records in results/ alone: one page per paper artefact (Tables 1-9,
Figures 2, 4-5 and 6), the views the paper does not have (accuracy against latency, protocol
controls), and an index that states the protocol once.

Which records feed which page is table-driven (`ARTEFACTS`): an experiment file feeds every page
whose paper key or source name appears in its `paper_table` (a key of paper_reference.yaml, or a
list of them) or is its own name. An experiment file such as `table1_2_4_5_generative.yaml`,
with `paper_table: [table1_inference_time_and_input_length, table4_inference_ms_per_batch_of_32,
...]`, needs nothing else to appear on those pages. An experiment that feeds no page gets a page
of its own, named after it.

Rules every page follows:
- Tables are markdown in the page, and CSV and LaTeX beside it (reports/tables/); figures are PNG
  in the page and PDF beside it (reports/figures/).
- Cells are means over seeds with the 95% confidence interval (benchmarks/statistics.py); the
  `*` marks a proposed row significantly better than the best baseline, paired over users.
- The paper's numbers (benchmarks/paper_reference.yaml) sit beside ours, labelled as the
  paper's, with the difference, only where the dataset and the evaluation protocol match the
  paper's; a row whose backbone differs from the paper's says so instead of a difference, and
  the paper's times (measured on its own unnamed GPU) are never set against ours.
- A cell with no record says "not run" (or "skipped: <reason>" from a skip record); nothing is
  filled in from elsewhere.
"""
from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import config as cfgmod
from . import figures
from . import records as records_mod
from .evaluate import TOPK_SAMPLED_RULE
from .records import iter_records, per_user_path, read_per_user
from .statistics import (ALPHA, STAR_TEST, TEST_NAMES, SeedSummary, align_users, best_row, format_p,
                         format_summary, paired_test, per_user_mean_over_seeds, summarize_seeds)

PAPER_FILE = Path(__file__).resolve().parent / "paper_reference.yaml"
METRIC_LABELS = {"recall": "R", "ndcg": "N"}
METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG"}
PAPER_MASKING_TABLE = "table3_overall"  # the table whose classic rows the paper ran in RecBole, unmasked
PROPOSED_MODELS = {"lite_llm4rec"}  # rows tested against the best baseline (the paper's `*`)
# The paper's own columns, and the columns of ours they stand beside.
PAPER_COLUMNS = {"avg_input_length": "input length", "ms_per_batch": "ms/batch",
                 "beam_search_share": "beam search share"}
# Columns the paper measured on its own, unnamed GPU: never set against times measured here.
DEVICE_BOUND_PAPER_COLUMNS = {"ms_per_batch", "beam_search_share"}
# Config keys under `model:` that name a pretrained backbone. The paper's LLM-based models use
# T5 (T5-small unless a table varies it); any other backbone makes the row not comparable.
BACKBONE_KEYS = ("item_llm", "rec_llm", "backbone")
# Model keys whose two values form a protocol control (same model, one known-leaky choice).
CONTROL_MODEL_KEYS = {"indexing": "item indexing"}
MANIFEST = ".generated"  # what the last build wrote: files it no longer writes are removed
DIGITS = {"metric": 4, "ms": 2, "length": 1, "epochs": 1, "seconds": 1, "share": 3}


# ----------------------------------------------------------------------------- the pages


@dataclass(frozen=True)
class Artefact:
    """One report page standing for one paper table or figure."""

    page: str                                  # reports/<page>.md
    title: str
    what: str                                  # one line: what the paper shows there
    paper_key: str | None = None               # key in paper_reference.yaml with the paper's numbers
    sources: tuple[str, ...] = ()              # other paper_table values / experiment names feeding it
    paper_layout: str = "by_dataset"           # by_dataset | ml-1m | by_model:<paper column>
    columns: tuple[str, ...] = ("metrics", "latency", "input_length", "training")
    metrics: tuple[str, ...] | None = None     # short names (R@20, ...) when the paper shows a few
    figure: str | None = None                  # latency_breakdown | grouped_bars
    candidates: str = "full"                   # the paper's ranking protocol for this artefact
    varied_backbone: str | None = None         # the backbone the rows vary (Tables 6, 7)
    paper_rows_only: bool = False              # show only the paper's rows (when the experiment has any)
    paper_datasets: tuple[str, ...] | None = None   # only datasets standing for these paper datasets
    excluded_paper_datasets: tuple[str, ...] = ()   # datasets that have their own page
    from_paper: bool = True                    # False: a view of ours, no artefact of the paper
    reference_run: str | None = None           # every other row tested against this one (ablations)

    def feeds_on(self, keys: set[str]) -> bool:
        return bool(({self.paper_key, *self.sources} - {None}) & keys)

    def shows_dataset(self, paper_name: str | None) -> bool:
        if self.paper_datasets is not None:
            return paper_name in self.paper_datasets
        return paper_name not in self.excluded_paper_datasets


ARTEFACTS = [
    Artefact("table1", "Table 1: inference time and input length",
             "milliseconds per batch of 32 users and tokens (or vectors) read per user, ML-1m",
             paper_key="table1_inference_time_and_input_length", paper_layout="ml-1m",
             columns=("input_length", "latency"), paper_rows_only=True),
    Artefact("table2", "Table 2: decoder and title variants of P5 and POD",
             "P5 and POD with and without the decoder (w/o_d) and with titles as item ids (TID); "
             "R@20, N@20 and time, ML-1m and Movies", paper_key="table2_decoder_and_title_variants",
             columns=("metrics", "latency"), metrics=("R@20", "N@20"), excluded_paper_datasets=("toys", "kindle"),
             paper_rows_only=True),
    Artefact("table3", "Table 3: overall accuracy",
             "every model, full ranking, Recall and NDCG at 10 and 20", paper_key="table3_overall"),
    Artefact("table4", "Table 4: inference time",
             "milliseconds per batch of 32 users of P5, POD, LightLM and Lite-LLM4Rec",
             paper_key="table4_inference_ms_per_batch_of_32", paper_layout="by_model:ms_per_batch",
             columns=("latency", "latency_detail"), paper_rows_only=True),
    Artefact("table5", "Table 5: input length",
             "average number of tokens (or item vectors) each model reads per user",
             paper_key="table5_avg_input_length", paper_layout="by_model:avg_input_length",
             columns=("input_length",), paper_rows_only=True),
    Artefact("table6", "Table 6: Item LLM backbones",
             "Lite-LLM4Rec (sampling) with four Item LLMs, Recommendation LLM T5-small, ML-1m",
             paper_key="table6_item_llm_backbone", paper_layout="ml-1m", varied_backbone="item_llm"),
    Artefact("table7", "Table 7: Recommendation LLM scaling",
             "Lite-LLM4Rec (sampling) with T5-small, T5-base and T5-large encoders, ML-1m",
             paper_key="table7_rec_llm_scaling", paper_layout="ml-1m", varied_backbone="rec_llm"),
    Artefact("table9", "Table 9: decoder and title variants (Toys, Kindle)",
             "Table 2's variants on the Amazon Toys and Kindle data",
             paper_key="table9_decoder_and_title_variants", columns=("metrics", "latency"),
             metrics=("R@20", "N@20"), paper_datasets=("toys", "kindle"), paper_rows_only=True),
    Artefact("figure2", "Figure 2: where the inference time goes",
             "share of P5's and POD's time per batch spent in beam search, decoding and the rest",
             paper_key="figure2_latency_breakdown", paper_layout="ml-1m",
             columns=("latency", "sections"), figure="latency_breakdown"),
    Artefact("figure4_5", "Figures 4 and 5: ablations",
             "Lite-LLM4Rec against fixT5 (Recommendation LLM frozen), fixHead (projection head "
             "frozen) and Scratch (Recommendation LLM randomly initialised); the paper prints no "
             "values, only that every ablation lowers all four metrics",
             sources=("figure4_5_ablations",), columns=("metrics", "training"), figure="grouped_bars",
             reference_run="Lite-LLM4Rec"),
    Artefact("figure6", "Figure 6: top-N with 1 positive and 99 sampled negatives",
             "Lite-LLM4Rec, P5 and POD ranking the target among 99 sampled items, ML-1m; the paper "
             "prints no values", sources=("figure6_topn_sampled",), columns=("metrics",),
             figure="grouped_bars", candidates="sampled"),
    Artefact("cold_start", "Cold start",
             "accuracy on the users whose test item was held out of training entirely (items no "
             "model saw in training), beside the same run's other users (from the HLLM issue; not "
             "a table of the paper)", sources=("cold_start",), columns=("metrics", "cold_start", "training"),
             from_paper=False),
]


def paper_reference() -> dict:
    return yaml.safe_load(PAPER_FILE.read_text())


# ----------------------------------------------------------------------------- small helpers


def short(metric: str) -> str:
    name, _, k = metric.partition("@")
    return f"{METRIC_LABELS.get(name, name)}@{k}" if k else metric


def _metric_order(key: str):
    name, _, k = key.partition("@")
    return (name != "recall", name, int(k) if k.isdigit() else 10**9, k)


def metric_columns(records: list[dict]) -> list[str]:
    keys: list[str] = []
    for rec in records:
        for key in rec.get("metrics") or {}:
            if key not in keys:
                keys.append(key)
    if not keys:  # nothing ran: the columns the config asked for
        ks = next((r["config"]["eval"]["ks"] for r in records if "config" in r), [10, 20])
        keys = [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks]
    return sorted(keys, key=_metric_order)


def _get(record: dict, path: tuple) -> float | None:
    value = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _paper_keys(exp_name: str, paper_table) -> set[str]:
    keys = {exp_name}
    if isinstance(paper_table, (list, tuple)):
        keys |= {str(k) for k in paper_table}
    elif paper_table:
        keys.add(str(paper_table))
    return keys


def _slug(text: str) -> str:
    """A file-name part: lower case; runs of anything but letters, digits and '_' become one '-'."""
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-") or "x"


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


class Writer:
    """Writes the files of one build and remembers them (for the index and stale-file removal)."""

    def __init__(self, reports_dir: Path):
        self.root = reports_dir
        self.written: list[Path] = []

    def text(self, relative: str, content: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        self.written.append(path)
        return path

    def table(self, stem: str, frame: pd.DataFrame) -> str:
        """CSV and LaTeX beside the page; returns the markdown links to them."""
        csv = self.text(f"tables/{stem}.csv", frame.to_csv(index=False))
        latex = frame.to_latex(index=False, escape=True).replace("±", r"$\pm$")
        tex = self.text(f"tables/{stem}.tex", latex)
        return f"(as [CSV]({csv.relative_to(self.root)}), [LaTeX]({tex.relative_to(self.root)}))"

    def figure(self, paths: list[Path], alt: str, caption: str = "") -> list[str]:
        self.written.extend(paths)
        png = next(p for p in paths if p.suffix == ".png").relative_to(self.root)
        pdf = next(p for p in paths if p.suffix == ".pdf").relative_to(self.root)
        return [f"![{alt}]({png})", "", f"{caption} ([PDF]({pdf}))".strip(), ""]

    def remove_stale(self) -> None:
        """Delete the files the previous build wrote and this one did not (a page whose records
        went away must not linger). Only files listed in the previous manifest are touched."""
        manifest = self.root / MANIFEST
        now = {str(p.relative_to(self.root)) for p in self.written}
        if manifest.is_file():
            for name in manifest.read_text().splitlines():
                path = self.root / name
                if name and name not in now and path.is_file() and ".." not in Path(name).parts:
                    path.unlink()
        manifest.write_text("\n".join(sorted(now)) + "\n")


# ----------------------------------------------------------------------------- comparability


def comparability(records: list[dict], paper: dict, candidates: str = "full") -> tuple[str | None, str]:
    """(paper dataset key, '') when the paper's numbers may sit beside ours, else (None, why)."""
    rec = records[0]
    data = rec["data"]
    name = data.get("paper_name")
    if not name:
        return None, f"the paper does not evaluate on {rec['dataset']}"
    ref = paper["datasets"].get(name)
    if ref is None:
        return None, f"the paper has no dataset {name!r}"
    ours = data["stats"]
    diffs = [f"{k} {ours[k]:,} vs the paper's {ref[k]:,}" for k in ("users", "items", "interactions") if ours[k] != ref[k]]
    if diffs:
        return None, f"our {rec['dataset']} is not the paper's {name} ({'; '.join(diffs)})"
    expected = "full ranking, history masked" if candidates == "full" else "1 target + 99 sampled negatives"
    for r in records:
        ev = r.get("evaluation") or {}
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


def backbone_difference(record: dict, varied: str | None = None) -> str:
    """Why one row's model is not the paper's (a non-T5 backbone), or '' when it is."""
    model = (record.get("config") or {}).get("model") or {}
    diffs = [f"{key} {model[key]} in place of the paper's T5" for key in BACKBONE_KEYS
             if key != varied and isinstance(model.get(key), str) and "t5" not in model[key].lower()]
    return "; ".join(diffs)


def paper_rows(artefact: Artefact, paper: dict, paper_dataset: str) -> dict[str, dict[str, float]]:
    """The paper's numbers for one dataset as {row: {paper column: value}}."""
    table = paper.get(artefact.paper_key or "") or {}
    layout = artefact.paper_layout
    if layout == "by_dataset":
        return table.get(paper_dataset) or {}
    if layout.startswith("by_model:"):
        column = layout.split(":", 1)[1]
        return {row: {column: values[paper_dataset]} for row, values in table.items() if paper_dataset in values}
    return table if layout == paper_dataset else {}


# ----------------------------------------------------------------------------- one table


@dataclass
class Column:
    label: str
    path: tuple           # where the number sits in a record
    digits: int


@dataclass
class GroupTable:
    """One experiment on one dataset: the formatted table and the numbers behind it."""

    frame: pd.DataFrame
    values: dict[str, dict[str, SeedSummary | None]]   # run -> column label -> summary
    ok: dict[str, list[dict]]                          # run -> finished records
    metrics: list[str]                                 # metric keys shown (recall@10, ...)


def _columns(artefact: Artefact, records: list[dict], metrics: list[str]) -> list[Column]:
    ok = [r for r in records if r.get("status") == "ok"]
    cols: list[Column] = []
    for group in artefact.columns:
        if group == "metrics":
            cols += [Column(short(m), ("metrics", m), DIGITS["metric"]) for m in metrics]
        elif group == "latency":
            cols.append(Column("ms/batch", ("latency", "ms_per_batch_median"), DIGITS["ms"]))
        elif group == "latency_detail":
            cols.append(Column("ms/batch p90", ("latency", "ms_per_batch_p90"), DIGITS["ms"]))
        elif group == "input_length":
            cols.append(Column("input length", ("input_length", "mean"), DIGITS["length"]))
        elif group == "training":
            cols += [Column("epochs", ("training", "epochs"), DIGITS["epochs"]),
                     Column("train s", ("training", "seconds"), DIGITS["seconds"])]
        elif group == "cold_start":  # the same run's other users, beside the cold-start users' metrics
            cols += [Column(f"{short(m)} other users", ("cold_start", "metrics_other_users", m), DIGITS["metric"])
                     for m in metrics]
        elif group == "sections":
            names = figures._ordered_sections({s for r in ok for s in ((r.get("latency") or {}).get("sections_ms_median") or {})})
            cols += [Column(f"{figures.SECTION_LABELS.get(s, s)} ms", ("latency", "sections_ms_median", s), DIGITS["ms"])
                     for s in names]
            if "beam_search" in names:
                cols.append(Column("beam search share", ("derived", "beam_search_share"), DIGITS["share"]))
    return cols


def _derive(record: dict) -> dict:
    """Numbers computed from a record (kept out of the record itself)."""
    sections = (record.get("latency") or {}).get("sections_ms_median") or {}
    total = sum(sections.values())
    return {"beam_search_share": sections["beam_search"] / total} if "beam_search" in sections and total > 0 else {}


STOP_LABELS = {"early_stopping": "patience", "epochs": "epoch cap", "time_budget": "time budget"}


def _stages(record: dict) -> list[dict]:
    """A record's training stages in order (a two-stage model keeps its first under `stage1` and
    its second's epoch count under `stage2_epochs`, `epochs` being both stages together)."""
    training = record.get("training") or {}
    if not training.get("stage1"):
        return [training]
    second = {**training, "epochs": training.get("stage2_epochs", training.get("epochs"))}
    return [training["stage1"], second]


def trained(record: dict) -> bool:
    return any(stage.get("history") for stage in _stages(record))


def converged(record: dict) -> bool:
    """Whether every training stage of the run stopped by patience (not by an epoch or time cap);
    a model that is not trained (MostPopular) counts as converged."""
    return not trained(record) or all(stage.get("stopped_by") == "early_stopping" for stage in _stages(record))


def stopped_by_cell(records: list[dict]) -> str:
    """How each seed's training ended: 'patience (best 12 of 22)', 'epoch cap (best 5 of 5)'..."""
    cells = []
    for rec in records:
        if not trained(rec):
            cells.append("not trained")
            continue
        parts = [f"{STOP_LABELS.get(stage.get('stopped_by'), stage.get('stopped_by') or 'unknown')} "
                 f"(best {stage.get('best_epoch')} of {stage.get('epochs')})" for stage in _stages(rec)]
        cells.append(" then ".join(parts) if len(parts) > 1 else parts[0])
    unique = list(dict.fromkeys(cells))
    return unique[0] if len(unique) == 1 else "; ".join(f"seed {r['seed']}: {c}" for r, c in zip(records, cells))


def validation_curve(record: dict) -> pd.DataFrame | None:
    """The run's validation metric per validation, its stages joined end to end: columns epoch,
    seconds, value, best (the validation whose weights the run kept), cut (the last validation
    of a run stopped by a cap)."""
    metric = ((record.get("config") or {}).get("train") or {}).get("valid_metric", "recall@10")
    rows, epoch0, seconds0 = [], 0, 0.0
    stages = _stages(record)
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


def learning_curves_figure(table: "GroupTable", title: str, stem: Path) -> list[Path]:
    """One line per trained row of the table (its first seed's curve)."""
    parts = []
    for run, recs in table.ok.items():
        curve = validation_curve(recs[0])
        if curve is not None:
            parts.append(curve.assign(model=run))
    if not parts:
        return []
    metric = ((table.ok[next(iter(table.ok))][0].get("config") or {}).get("train") or {}).get("valid_metric", "recall@10")
    return figures.learning_curves(pd.concat(parts, ignore_index=True), title, stem,
                                   metric_label=figures_metric_label(metric))


def figures_metric_label(metric: str) -> str:
    """recall@10 -> Recall@10 (axis labels)."""
    name, _, k = metric.partition("@")
    return f"{METRIC_NAMES.get(name, name)}@{k}"


def paper_row_names(artefact: Artefact, paper: dict) -> set[str]:
    """Every row the paper prints in this artefact, on any dataset."""
    table = paper.get(artefact.paper_key or "") or {}
    if artefact.paper_layout == "by_dataset":
        return {row for rows in table.values() for row in rows}
    return set(table)


def group_table(artefact: Artefact, exp: dict, records: list[dict], stars: dict[tuple[str, str], bool] | None = None,
                paper: dict | None = None) -> GroupTable:
    """One row per run of the experiment (in the experiment's order, then any others); for a page
    that prints a selection of models, only the paper's rows when the experiment has any."""
    metrics = metric_columns(records)
    if artefact.metrics:
        metrics = [m for m in metrics if short(m) in artefact.metrics]
    columns = _columns(artefact, records, metrics)
    by_run: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        by_run[rec["run"]].append(rec)
    run_names = list((exp or {}).get("runs") or {})
    run_names += [r for r in by_run if r not in run_names]
    if artefact.paper_rows_only and paper is not None:
        wanted = paper_row_names(artefact, paper)
        run_names = [r for r in run_names if r in wanted] or run_names
    rows, values, ok_by_run = [], {}, {}
    for run in run_names:
        recs = by_run.get(run, [])
        ok = sorted((r for r in recs if r.get("status") == "ok"), key=lambda r: r["seed"])
        row = {"model": run}
        if not ok:
            skipped = [r for r in recs if r.get("status") == "skipped"]
            note = f"skipped: {skipped[0]['skip_reason']}" if skipped else "not run"
            row.update({c.label: note if i == 0 else "" for i, c in enumerate(columns)})
            rows.append(row)
            continue
        ok_by_run[run] = ok
        values[run] = {}
        for col in columns:
            source = [({"derived": _derive(r)} if col.path[0] == "derived" else r) for r in ok]
            summary = summarize_seeds(_get(r, col.path) for r in source)
            values[run][col.label] = summary
            cell = format_summary(summary, col.digits)
            if stars and col.path[0] == "metrics" and stars.get((run, col.path[1])):
                cell += "*"
            row[col.label] = cell
        if "metrics" in artefact.columns:
            row["stopped by"] = stopped_by_cell(ok)
        row["seeds"] = f"n={len(ok)}: " + ", ".join(str(r["seed"]) for r in ok)
        if any((r.get("model_info") or {}).get("backbones") for r in ok):
            row["backbones"] = ok[0]["model_info"].get("backbones", "")
        if "latency_detail" in artefact.columns:
            row["device"] = ", ".join(sorted({(r.get("latency") or {}).get("device_name", "n/a") for r in ok}))
            row["dtype"] = ", ".join(sorted({str((r.get("latency") or {}).get("dtype", "n/a")) for r in ok}))
        if "input_length" in artefact.columns and "metrics" not in artefact.columns:
            row["unit"] = (ok[0].get("input_length") or {}).get("unit", "")  # what Tables 1 and 5 count
        row["users"] = (ok[0].get("evaluation") or {}).get("users", "")
        rows.append(row)
    frame = pd.DataFrame(rows).fillna("")
    if "unit" in frame.columns:  # beside the number it qualifies
        order = [c for c in frame.columns if c != "unit"]
        order.insert(order.index("input length") + 1, "unit")
        frame = frame[order]
    return GroupTable(frame, values, ok_by_run, metrics)


# ----------------------------------------------------------------------------- significance


def _per_user(records: list[dict], metric: str):
    arrays = []
    for rec in records:
        path = rec.get("_path")
        if path is None or not per_user_path(Path(path)).is_file():
            return None
        arrays.append(read_per_user(Path(path)))
    return per_user_mean_over_seeds(arrays, metric)


def paired_columns(users_a, users_b, label_a: str, label_b: str):
    """The paired test of two rows' per-user values ((user_index, values) each) over their common
    users, and its table columns: both means, the difference, the users and both p-values."""
    _, a, b = align_users(*users_a, *users_b)
    test = paired_test(a, b)
    return test, {label_a: f"{test.mean_a:.4f}", label_b: f"{test.mean_b:.4f}",
                  "difference": f"{test.mean_difference:+.4f}", "users": str(test.n_users),
                  "paired t p": format_p(test.t_pvalue), "Wilcoxon p": format_p(test.wilcoxon_pvalue)}


def significance(table: GroupTable) -> tuple[pd.DataFrame | None, dict[tuple[str, str], bool]]:
    """Each proposed row against the best baseline of each metric, paired over users."""
    proposed = [run for run, recs in table.ok.items() if recs[0].get("model") in PROPOSED_MODELS]
    baselines = [run for run in table.ok if run not in proposed]
    if not proposed or not baselines:
        return None, {}
    rows, stars = [], {}
    for metric in table.metrics:
        means = {run: (table.values[run].get(short(metric)) or SeedSummary(math.nan, None, 0)).mean for run in baselines}
        best = best_row(means)
        if best is None:
            continue
        best_users = _per_user(table.ok[best], metric)
        for run in proposed:
            row = {"proposed": run, "metric": short(metric), "best baseline": best}
            mine = _per_user(table.ok[run], metric)
            if mine is None or best_users is None:
                missing = run if mine is None else best
                rows.append({**row, "note": f"no per-user arrays for {missing}"})
                continue
            test, columns = paired_columns(mine, best_users, "proposed mean", "baseline mean")
            mine_converged = all(converged(r) for r in table.ok[run])
            stars[(run, metric)] = test.a_significantly_better and mine_converged
            notes = [test.note] if test.note else []
            if test.a_significantly_better and not mine_converged:
                notes.append(f"not starred: {run} was cut by its budget")
            if not all(converged(r) for r in table.ok[best]):
                notes.append(f"the best baseline {best} was cut by its budget")
            rows.append({**row, **columns, "*": "*" if stars[(run, metric)] else "", "note": "; ".join(notes)})
    if not rows:
        return None, {}
    frame = pd.DataFrame(rows).fillna("")
    return (frame if frame["note"].any() else frame.drop(columns="note")), stars


def against_reference(table: GroupTable, reference: str) -> pd.DataFrame | None:
    """Every other row against the reference row (an ablation against the full model), per
    metric, paired over users."""
    if reference not in table.ok or len(table.ok) < 2:
        return None
    rows = []
    for run in (r for r in table.ok if r != reference):
        for metric in table.metrics:
            ref_users, run_users = _per_user(table.ok[reference], metric), _per_user(table.ok[run], metric)
            row = {"row": run, "metric": short(metric), "against": reference}
            if ref_users is None or run_users is None:
                rows.append({**row, "note": "no per-user arrays"})
                continue
            test, columns = paired_columns(run_users, ref_users, "row mean", "reference mean")
            rows.append({**row, **columns, "note": test.note})
    frame = pd.DataFrame(rows).fillna("")
    return frame if frame["note"].any() else frame.drop(columns="note")


# ----------------------------------------------------------------------------- paper numbers


def paper_comparison(artefact: Artefact, table: GroupTable, records: list[dict], paper: dict,
                     writer: Writer, stem: str) -> list[str]:
    """The lines saying what the paper reports for these rows, or why it is not shown."""
    if not artefact.paper_key:
        return []
    ok = [r for r in records if r.get("status") == "ok"] or records
    paper_ds, why = comparability(ok, paper, artefact.candidates)
    if not paper_ds:
        return [f"The paper's numbers are not shown: {why}.", ""]
    reference = paper_rows(artefact, paper, paper_ds)
    lines = []
    device_bound = sorted({c for row in reference.values() for c in row} & DEVICE_BOUND_PAPER_COLUMNS)
    if device_bound:
        devices = ", ".join(sorted({(r.get("latency") or {}).get("device_name", "n/a") for r in ok})) or "n/a"
        lines += [f"The paper's {', '.join(device_bound)} are not shown: the paper timed its models on "
                  f"its own, unnamed GPU, and these rows were timed on {devices}; times from different "
                  "devices are not comparable.", ""]
    rows = []
    for run in table.frame["model"]:
        if run not in reference:
            continue
        row = {"model": run}
        note = backbone_difference(table.ok[run][0], artefact.varied_backbone) if run in table.ok else ""
        for col, value in reference[run].items():
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
        if len(row) > 1:
            row["note"] = note
            rows.append(row)
    if rows:
        frame = pd.DataFrame(rows).fillna("")
        if not frame["note"].any():
            frame = frame.drop(columns="note")
        lines += [f"The paper's numbers ({paper['source']}, `{artefact.paper_key}`, {paper_ds}), labelled as the "
                  "paper's, beside ours:", "", _markdown(frame), "", writer.table(stem + "__paper", frame), ""]
    elif not device_bound:
        lines += ["The paper reports none of these rows for this dataset.", ""]
    return lines


# ----------------------------------------------------------------------------- figures per table


def group_figure(artefact: Artefact, table: GroupTable, title: str, stem: Path) -> list[Path]:
    if artefact.figure == "grouped_bars":
        bars = [{"model": run, "metric": short(m), "mean": s.mean,
                 "half_width": np.nan if s.half_width is None else s.half_width}
                for run in table.ok for m in table.metrics
                if (s := table.values[run].get(short(m))) is not None]
        return figures.grouped_bars(pd.DataFrame(bars), title, stem) if bars else []
    if artefact.figure == "latency_breakdown":
        parts, totals, batch = [], {}, 32
        for run, recs in table.ok.items():
            sections = [(r.get("latency") or {}).get("sections_ms_median") or {} for r in recs]
            names = {s for sec in sections for s in sec}
            if not names:
                continue
            for name in names:
                parts.append({"model": run, "section": name, "ms": float(np.mean([sec.get(name, 0.0) for sec in sections]))})
            totals[run] = float(np.mean([r["latency"]["ms_per_batch_median"] for r in recs]))
            batch = recs[0]["latency"].get("batch_size", 32)
        return figures.latency_breakdown(pd.DataFrame(parts), totals, title, stem, batch_size=batch) if parts else []
    return []


# ----------------------------------------------------------------------------- page text


def stats_line(rec: dict) -> str:
    s = rec["data"]["stats"]
    return (
        f"{s['users']:,} users, {s['items']:,} items, {s['interactions']:,} interactions, "
        f"density {s['density']:.4f} (the paper's Table 8 'sparsity'), {s['k_core']}-core, "
        f"{s['items_without_text']} items without text; source {rec['data']['source']}, "
        f"data hash `{rec['data']['content_hash'][:12]}`"
    )


def protocol_line(ev: dict) -> str:
    if ev.get("candidates") == "sampled":
        ranking = (f"sampled ranking (1 target + {ev.get('num_negatives')} sampled negatives, "
                   f"seed {ev.get('negative_seed')})")
    else:
        ranking = f"full ranking over all items, history masking {'on' if ev.get('mask_history') else 'off'}"
    return f"Protocol: leave-one-out; {ranking}; users: {ev.get('users')}."


def latency_line(records: list[dict]) -> str | None:
    lats = [r["latency"] for r in records if r.get("latency")]
    if not lats:
        return None
    lat = lats[0]
    devices = sorted({f"{x['device_name']} ({x['device']}, {x['torch_threads']} threads)" for x in lats})
    mixed = ("" if len({x["device_name"] for x in lats}) == 1 else
             " The rows were timed on different devices: compare times only between rows of one device "
             "(the `device` column); a speed-up across devices is not a measurement.")
    return (f"Latency: batches of {lat['batch_size']} users, top-{lat['top_k']}, median over "
            f"{lat['n_batches']} batches after {lat['warmup_batches']} warm-up, on {'; '.join(devices)}.{mixed}")


INTERVAL_NOTE = (
    "a cell is the mean over seeds ± the half-width of its 95% confidence interval (t-distribution "
    "over seeds); a row with one seed shows its value alone, and the `seeds` column says n=1.")
STAR_NOTE = (
    "`*`: the proposed model (Lite-LLM4Rec) is better than the best baseline of that column with "
    f"p < {ALPHA} in a {TEST_NAMES['t']} over users (each user's value averaged over seeds first); "
    f"the significance table also gives the {TEST_NAMES['wilcoxon']}. A row whose training was cut by "
    "a cap (`stopped by` other than patience) is never starred, and the significance table says when "
    "the best baseline was cut by its budget.")
STOPPED_NOTE = (
    "`stopped by`: how each row's training ended, by the suite's one rule (patience: 10 validations "
    "without a gain, best weights kept) or by a cap (epoch cap, time budget), with the best epoch of "
    "the epochs trained; a row stopped by a cap has not been shown to converge.")


FIGURE_CAPTIONS = {
    "grouped_bars": "Bars: means over seeds; error bars: 95% confidence intervals over seeds (none for one seed).",
    "latency_breakdown": "Each bar: the median time of each named section over the timed batches, as a share of "
                         "their sum; the total at the right is the median time per batch.",
}


@dataclass
class Group:
    experiment: str
    exp: dict
    dataset: str
    records: list[dict] = field(default_factory=list)


def artefact_page(artefact: Artefact, groups: list[Group], paper: dict, writer: Writer, results_dir: Path,
                  feeding: dict[str, dict]) -> tuple[Path, int]:
    """Write one artefact's page; return it and its number of finished records."""
    lines = [f"# {artefact.title}", "", f"{'The paper' if artefact.from_paper else 'This page'}: {artefact.what}.", ""]
    if artefact.paper_key:
        lines += [f"The paper's numbers: `{artefact.paper_key}` in `benchmarks/paper_reference.yaml`.", ""]
    if not groups:
        lines += _not_run_lines(artefact, feeding)
        return writer.text(f"{artefact.page}.md", "\n".join(lines)), 0
    note = f"How to read the tables: {INTERVAL_NOTE}"
    lines += [note + (f" {STAR_NOTE} {STOPPED_NOTE}" if "metrics" in artefact.columns else ""), ""]
    for name in sorted({g.experiment for g in groups}):
        exp = next(g.exp for g in groups if g.experiment == name)
        lines += [f"Experiment `{name}`: {' '.join((exp.get('description') or '').split())}", ""]
    several = len({g.experiment for g in groups}) > 1
    n_ok = 0
    for group in groups:
        records = group.records
        ok = [r for r in records if r.get("status") == "ok"]
        n_ok += len(ok)
        ref = (ok or records)[0]
        heading = f"{group.dataset} ({group.experiment})" if several else group.dataset
        lines += [f"## {heading}", "", stats_line(ref), ""]
        if ref.get("evaluation"):
            lines += [protocol_line(ref["evaluation"]), ""]
        if (lat := latency_line(ok)) and any(c in artefact.columns for c in ("latency", "sections")):
            lines += [lat, ""]
        first = group_table(artefact, group.exp, records, paper=paper)
        sig, stars = significance(first)
        table = group_table(artefact, group.exp, records, stars, paper=paper) if stars else first
        stem = f"{artefact.page}__{_slug(group.experiment)}__{_slug(group.dataset)}"
        lines += [_markdown(table.frame), "", writer.table(stem, table.frame), ""]
        if artefact.figure and table.ok:
            title = f"{artefact.title.split(':')[0]}: {group.dataset} ({group.experiment})"
            paths = group_figure(artefact, table, title, writer.root / "figures" / stem)
            if paths:
                lines += writer.figure(paths, title, FIGURE_CAPTIONS.get(artefact.figure, ""))
        if "metrics" in artefact.columns and table.ok:
            title = f"Validation curves: {group.dataset} ({group.experiment})"
            paths = learning_curves_figure(table, title, writer.root / "figures" / f"{stem}__learning_curves")
            if paths:
                lines += writer.figure(paths, title, "Each trained row's validation metric (its first seed) against "
                                       "epoch and against training seconds.")
        if sig is not None:
            lines += [f"Significance against the best baseline of each column (paired over users; `*` from "
                      f"the {STAR_TEST}, p < {ALPHA}, proposed better):", "", _markdown(sig), "",
                      writer.table(stem + "__significance", sig), ""]
        if artefact.reference_run and (versus := against_reference(table, artefact.reference_run)) is not None:
            lines += [f"Each row against {artefact.reference_run} (paired over users; {TEST_NAMES['t']} "
                      f"and {TEST_NAMES['wilcoxon']}):", "", _markdown(versus), "",
                      writer.table(stem + "__against_" + _slug(artefact.reference_run), versus), ""]
        lines += paper_comparison(artefact, table, records, paper, writer, stem)
        commits = sorted({((r.get("environment") or {}).get("git") or {}).get("commit") or "unknown" for r in records})
        lines += [f"Records: `{results_dir}/{group.experiment}/{group.dataset}/`; commits "
                  f"{', '.join(c[:10] for c in commits)}.", ""]
    return writer.text(f"{artefact.page}.md", "\n".join(lines)), n_ok


def _not_run_lines(artefact: Artefact, feeding: dict[str, dict]) -> list[str]:
    keys = [k for k in (artefact.paper_key, *artefact.sources) if k]
    files = [name for name, exp in feeding.items() if artefact.feeds_on(_paper_keys(name, exp.get("paper_table")))]
    if files:
        how = (f"Not run: no records yet. Experiment file(s) feeding this page: "
               f"{', '.join(f'`{f}`' for f in files)} (`python run_all.py --experiments {','.join(files)}`).")
    else:
        how = (f"Not run: no experiment file feeds this page yet (an experiment whose `paper_table` is "
               f"{' or '.join(f'`{k}`' for k in keys)} would).")
    return [how, ""]


# ----------------------------------------------------------------------------- views across pages


def accuracy_latency_page(all_records: list[dict], writer: Writer) -> Path:
    """Recall@10 against ms per batch, one figure per dataset and device (full ranking only)."""
    lines = ["# Accuracy against latency", "",
             "Recall@10 (full ranking, history masked) against the median milliseconds per batch, for "
             "every model with a latency record. Only records timed on the same device (and batch "
             "size) and scored on the same users share a figure: times from different devices are "
             "not comparable, and a Recall@10 over a seeded subset of users is not the all-user one. "
             "Cold-start runs (scored on other users) are left out. A point is the "
             "mean over seeds; the Pareto frontier joins the models that no other model beats on both "
             "axes (faster and at least as accurate).", ""]
    groups: dict[tuple, dict[tuple[str, str], list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in all_records:
        ev, lat = rec.get("evaluation") or {}, rec.get("latency") or {}
        if rec.get("status") != "ok" or not lat or "recall@10" not in (rec.get("metrics") or {}):
            continue
        if ev.get("candidates") != "full" or not ev.get("mask_history") or rec.get("cold_start"):
            continue  # another protocol, or only the cold-start users: not the same Recall@10
        key = (rec["dataset"], lat.get("device_name", "n/a"), lat.get("batch_size", 32), str(ev.get("users", "")))
        groups[key][(rec["experiment"], rec["run"])].append(rec)
    if not groups:
        lines += ["Not run: no record has both Recall@10 (full ranking) and a latency measurement.", ""]
    for (dataset, device, batch, users), runs in sorted(groups.items()):
        names = [run for _, run in runs]
        points = []
        for (experiment, run), recs in runs.items():
            label = run if names.count(run) == 1 else f"{run} ({experiment})"
            points.append({"label": label, "experiment": experiment,
                           "ms": float(np.mean([r["latency"]["ms_per_batch_median"] for r in recs])),
                           "accuracy": float(np.mean([r["metrics"]["recall@10"] for r in recs])),
                           "seeds": len(recs)})
        frame = pd.DataFrame(points).sort_values("ms").reset_index(drop=True)
        frame["on_front"] = figures.pareto_front(frame["ms"].to_numpy(), frame["accuracy"].to_numpy())
        subset = "" if users == "all" else "__" + _slug(users)
        stem = f"accuracy_latency__{_slug(dataset)}__{_slug(device)}__b{batch}{subset}"
        title = f"{dataset} ({'all users' if users == 'all' else users}): Recall@10 against time per batch on {device}"
        lines += [f"## {dataset}, {device}, batches of {batch}; users: {users}", ""]
        if len(frame) > 1:
            lines += writer.figure(figures.accuracy_latency(frame, title, writer.root / "figures" / stem, batch_size=batch), title)
        else:
            lines += ["One model timed on this device for these users: no trade-off to draw.", ""]
        shown = pd.DataFrame({
            "model": frame["label"], "experiment": frame["experiment"], "R@10": frame["accuracy"].map("{:.4f}".format),
            "ms/batch": frame["ms"].map("{:.2f}".format), "seeds": frame["seeds"].astype(str),
            "Pareto frontier": frame["on_front"].map({True: "yes", False: ""}),
        })
        lines += [_markdown(shown), "", writer.table(stem, shown), ""]
    return writer.text("accuracy_latency.md", "\n".join(lines))


def _filtered_topk_variant(rec: dict, variant: dict) -> bool:
    """A sampled-candidates evaluation of a generative (top-k) model recorded under the old rule."""
    settings = variant.get("evaluation") or {}
    return (settings.get("candidates") == "sampled" and "decoding" in (rec.get("model_info") or {})
            and settings.get("topk_lists") != TOPK_SAMPLED_RULE)


def protocol_controls_page(all_records: list[dict], writer: Writer) -> Path:
    """How much one protocol choice moves the numbers of the same trained models."""
    lines = ["# Protocol controls", "",
             "Each table shows how much one evaluation choice moves the numbers of the same trained "
             "models (mean over seeds). The controls: history masking on vs off, full ranking vs "
             "1 + 99 sampled candidates, and P5's random vs sequential item indexing (sequential "
             "numbers leak the order of a user's items into the ids). Among 1 + 99 candidates a "
             "generative model's beam search may spell only the user's candidates, so it ranks the "
             "same 100 items a scoring model ranks.", ""]
    rows, not_applicable = [], {}
    by_group: dict[tuple, list[dict]] = defaultdict(list)
    for rec in all_records:
        if rec.get("status") != "ok":
            continue
        by_group[(rec["experiment"], rec["dataset"], rec["run"])].append(rec)
        for control, variant in (rec.get("protocol_variants") or {}).items():
            if _filtered_topk_variant(rec, variant):
                variant = {"skipped": "recorded before top-k lists were constrained to the sampled candidates "
                                      "(its list was a full-ranking list filtered to them); re-run to measure"}
            if "skipped" in variant:
                not_applicable[(rec["experiment"], rec["dataset"], rec["run"], control)] = variant["skipped"]
            for metric in ("recall@10", "ndcg@10"):
                if metric in variant.get("metrics", {}) and metric in rec["metrics"]:
                    rows.append({"experiment": rec["experiment"], "dataset": rec["dataset"], "model": rec["run"],
                                 "control": control, "metric": short(metric), "seed": rec["seed"],
                                 "as recorded": rec["metrics"][metric], "with the control": variant["metrics"][metric]})
    lines += ["## Evaluation controls on the same trained model", ""]
    if rows:
        frame = pd.DataFrame(rows)
        table = frame.groupby(["experiment", "dataset", "model", "control", "metric"], sort=False).agg(
            seeds=("seed", "count"), recorded=("as recorded", "mean"), variant=("with the control", "mean")).reset_index()
        shown = pd.DataFrame({
            "experiment": table["experiment"], "dataset": table["dataset"], "model": table["model"],
            "control": table["control"], "metric": table["metric"],
            "as recorded": table["recorded"].map("{:.4f}".format),
            "with the control": table["variant"].map("{:.4f}".format),
            "change": (table["variant"] - table["recorded"]).map("{:+.4f}".format), "seeds": table["seeds"].astype(str),
        })
        lines += [_markdown(shown), "", writer.table("protocol_controls__evaluation", shown), ""]
        if not_applicable:
            lines += ["Controls not measured, and why:", ""]
            lines += [f"- {exp} / {ds} / {run}, {control}: {why}"
                      for (exp, ds, run, control), why in sorted(not_applicable.items())]
            lines += [""]
    else:
        lines += ["Not run: no record carries a second evaluation of its trained model. For this table the "
                  "runner must evaluate each trained model once more per control and record it as "
                  "`protocol_variants: {<control name>: {evaluation: <settings as in 'evaluation'>, metrics: "
                  "{recall@10: ..., ...}}}` (for example `history masking off`: `eval.mask_history=false`; "
                  "`1+99 sampled`: `eval.candidates=sampled`). Training twice with a different "
                  "`eval.*` override does not give this: the two records would hold differently "
                  "early-stopped models, and would share one record path.", ""]
    lines += ["## The paper's protocol: the proposed model masked, the baselines not", "",
              "The paper ranks Lite-LLM4Rec's predictions over the items a user has not seen, while its "
              "Table 3 classic rows ran in RecBole, whose sequential evaluation ranks the user's history items "
              "too. Each proposed row against each baseline of its table, twice, from the same trained "
              "models (means over seeds): the gap with both masked (this suite's protocol), and the gap "
              "with the baseline unmasked (its `history masking off` control), as the paper compared "
              "them. `from the asymmetry` is the part of the paper-style gap that the unequal masking "
              "alone makes.", ""]
    asymmetry = _masking_asymmetry_rows(by_group)
    if asymmetry:
        frame = pd.DataFrame(asymmetry)
        lines += [_markdown(frame), "", writer.table("protocol_controls__paper_masking", frame), ""]
    else:
        lines += ["Not run: no experiment has a proposed row and a baseline with its `history masking "
                  "off` control recorded under full ranking with history masked.", ""]
    lines += ["## Item indexing (two trained models that differ in one model setting)", ""]
    pairs = _config_control_pairs(by_group)
    if pairs:
        frame = pd.DataFrame(pairs)
        lines += [_markdown(frame), "", writer.table("protocol_controls__indexing", frame), ""]
    else:
        keys = ", ".join(f"`model.{k}`" for k in CONTROL_MODEL_KEYS)
        lines += [f"Not run: no experiment has two runs of one model that differ only in {keys} (for P5: "
                  "random vs sequential item indexing).", ""]
    return writer.text("protocol_controls.md", "\n".join(lines))


def _masking_asymmetry_rows(by_group: dict[tuple, list[dict]]) -> list[dict]:
    """Per experiment feeding Table 3 and dataset: each proposed row against each baseline, both
    masked and with the baseline's history-masking-off control (R@10, N@10; means over seeds)."""
    unmasked_label = "history masking off"

    def masked_full(recs):
        return [r for r in recs if (r.get("evaluation") or {}).get("candidates", "full") == "full"
                and (r.get("evaluation") or {}).get("mask_history")]

    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    rows = []
    for (exp, ds) in dict.fromkeys((e, d) for e, d, _ in by_group):
        runs = {run: masked_full(recs) for (e, d, run), recs in by_group.items() if (e, d) == (exp, ds)
                and PAPER_MASKING_TABLE in _paper_keys(e, recs[0].get("paper_table"))}
        proposed = [run for run, recs in runs.items() if recs and recs[0].get("model") in PROPOSED_MODELS]
        baselines = [run for run, recs in runs.items() if recs and run not in proposed]
        for mine in proposed:
            for base in baselines:
                for metric in ("recall@10", "ndcg@10"):
                    ours = mean(r["metrics"].get(metric) for r in runs[mine])
                    masked = mean(r["metrics"].get(metric) for r in runs[base])
                    variants = [(r.get("protocol_variants") or {}).get(unmasked_label) or {} for r in runs[base]]
                    if any("skipped" in v for v in variants):  # e.g. a generative model never lists history
                        unmasked = masked
                    else:
                        unmasked = mean((v.get("metrics") or {}).get(metric) for v in variants) if all(variants) else None
                    if None in (ours, masked, unmasked):
                        continue
                    rows.append({"experiment": exp, "dataset": ds, "proposed": mine, "baseline": base,
                                 "metric": short(metric), "proposed (masked)": f"{ours:.4f}",
                                 "baseline masked": f"{masked:.4f}", "baseline unmasked": f"{unmasked:.4f}",
                                 "gap, both masked": f"{ours - masked:+.4f}",
                                 "gap, paper's protocol": f"{ours - unmasked:+.4f}",
                                 "from the asymmetry": f"{masked - unmasked:+.4f}"})
    return rows


def _config_control_pairs(by_group: dict[tuple, list[dict]]) -> list[dict]:
    """Runs of one experiment and dataset whose configs differ only in a CONTROL_MODEL_KEYS key."""
    def stripped(cfg: dict, key: str) -> str:
        cfg = json.loads(json.dumps(cfg))
        cfg.pop("seed", None)
        cfg["model"].pop(key, None)
        return json.dumps(cfg, sort_keys=True)

    out = []
    runs_by_place: dict[tuple, list[tuple[str, list[dict]]]] = defaultdict(list)
    for (experiment, dataset, run), recs in by_group.items():
        runs_by_place[(experiment, dataset)].append((run, recs))
    for (experiment, dataset), runs in sorted(runs_by_place.items()):
        for key, label in CONTROL_MODEL_KEYS.items():
            for i, (run_a, recs_a) in enumerate(runs):
                for run_b, recs_b in runs[i + 1:]:
                    cfg_a, cfg_b = recs_a[0]["config"], recs_b[0]["config"]
                    value_a, value_b = cfg_a["model"].get(key), cfg_b["model"].get(key)
                    if value_a is None or value_a == value_b or stripped(cfg_a, key) != stripped(cfg_b, key):
                        continue
                    for metric in ("recall@10", "ndcg@10"):
                        a = float(np.mean([r["metrics"][metric] for r in recs_a]))
                        b = float(np.mean([r["metrics"][metric] for r in recs_b]))
                        out.append({"experiment": experiment, "dataset": dataset, "control": label,
                                    "first": f"{run_a} ({key}={value_a})", "second": f"{run_b} ({key}={value_b})",
                                    "metric": short(metric), "first value": f"{a:.4f}", "second value": f"{b:.4f}",
                                    "change": f"{b - a:+.4f}", "seeds": f"{len(recs_a)}, {len(recs_b)}"})
    return out


def datasets_page(all_records: list[dict], paper: dict, writer: Writer) -> Path:
    """Table 8: statistics of every dataset in the records, beside the paper's where it has one."""
    rows, seen = [], set()
    for rec in sorted(all_records, key=lambda r: r["dataset"]):
        data = rec["data"]
        if (rec["dataset"], data["content_hash"]) in seen:
            continue
        seen.add((rec["dataset"], data["content_hash"]))
        s = data["stats"]
        rows.append({
            "dataset": rec["dataset"], "source": data["source"], "users": s["users"], "items": s["items"],
            "interactions": s["interactions"], "density": round(s["density"], 6),
            "avg length": round(s["avg_sequence_length"], 1), "k-core": s["k_core"],
            "items without text": s["items_without_text"],
            "repeats removed": s["repeated_interactions_removed"], "data hash": data["content_hash"][:12],
        })
        ref = paper["datasets"].get(data.get("paper_name") or "")
        if ref:
            rows.append({
                "dataset": f"paper: {data['paper_name']} (Table 8)", "source": ref.get("source", ""),
                "users": ref["users"], "items": ref["items"], "interactions": ref["interactions"],
                "density": ref["sparsity_pct"], "k-core": ref["filter"],
            })
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = pd.DataFrame([{c: row.get(c, "") for c in columns} for row in rows])  # blanks, not NaN: ints stay ints
    lines = ["# Table 8: datasets", "", "Statistics after processing (k-core, repeats, re-indexing), from the records. "
             "Rows starting with 'paper:' are the paper's Table 8, labelled as the paper's; its "
             "'sparsity' column is interactions / (users x items), our 'density'.", "",
             _markdown(table), "", writer.table("datasets", table), ""]
    return writer.text("datasets.md", "\n".join(lines))


def protocol_section(all_records: list[dict]) -> list[str]:
    """The index's single statement of the protocol, from what the records hold."""
    ok = [r for r in all_records if r.get("status") == "ok"]
    lines = ["## Protocol", "",
             "Stated once here; a section of a page that used another protocol says so above its table.", "",
             "- Split: leave-one-out per user (last item = test target, second-to-last = validation "
             "target; the test history includes the validation item).",
             "- Ranking: rank = 1 + number of other candidate items scoring at least as high as the "
             "target (ties count against the target). Recall@K and NDCG@K averaged over users.",
             f"- Tables: {INTERVAL_NOTE}", f"- Significance: {STAR_NOTE}"]
    protocols = defaultdict(int)
    for r in ok:
        ev = r.get("evaluation") or {}
        protocols[protocol_line(ev).removeprefix("Protocol: leave-one-out; ").rstrip(".")] += 1
    for text, count in sorted(protocols.items(), key=lambda kv: -kv[1]):
        lines.append(f"- Evaluation in {count} record(s): {text}.")
    lats = [r["latency"] for r in ok if r.get("latency")]
    if lats:
        lat = lats[0]
        lines.append(f"- Latency: per batch of {lat['batch_size']} users from a prepared batch to the top-"
                     f"{lat['top_k']} ids on the host; {lat['warmup_batches']} warm-up batches excluded; "
                     "median over the timed batches; CUDA synchronised.")
        dtypes = defaultdict(set)
        for x in lats:
            dtypes[(x["device_name"], x["device"], x["torch_threads"])].add(str(x.get("dtype", "n/a")))
        for (name, device, threads), kinds in sorted(dtypes.items()):
            lines.append(f"- Device: {name} ({device}, {threads} threads); model dtypes {', '.join(sorted(kinds))}.")
    datasets = {}
    for r in all_records:
        d = r["data"]
        datasets[(r["dataset"], d["content_hash"])] = (
            f"- Data {r['dataset']}: source {d['source']}, {d['stats']['k_core']}-core, data hash "
            f"`{d['content_hash'][:12]}`, source hash `{(d.get('source_hash') or '')[:12]}` (see [Table 8](datasets.md)).")
    lines += [datasets[k] for k in sorted(datasets)]
    versions = defaultdict(set)
    for r in all_records:
        for lib, version in ((r.get("environment") or {}).get("libraries") or {}).items():
            versions[lib].add(str(version))
    if versions:
        lines.append("- Libraries: " + ", ".join(f"{lib} {' / '.join(sorted(v))}" for lib, v in versions.items()) + ".")
    commits = defaultdict(int)
    for r in all_records:
        git = (r.get("environment") or {}).get("git") or {}
        commits[(git.get("commit") or "unknown")[:10] + (" (uncommitted changes)" if git.get("dirty") else "")
                + _named_commit_check(git)] += 1
    lines.append("- Commits: " + ", ".join(f"{c} ({n} records)" for c, n in sorted(commits.items())) + ".")
    return lines + [""]


def _named_commit_check(git: dict) -> str:
    """For a record made without git (its commit named by $SUITE_GIT_COMMIT): whether the code
    that ran, by content hash, is that commit's code."""
    if not git.get("commit_from"):
        return ""
    expected = records_mod.code_hash_at(git["commit"]) if git.get("commit") else None
    if expected is None:
        return f" (named by {git['commit_from']}, not checkable here)"
    if expected == git.get("code_hash"):
        return f" (named by {git['commit_from']}; its code hash matches)"
    return f" (named by {git['commit_from']}; the code that ran DIFFERS from that commit's)"


# ----------------------------------------------------------------------------- the build


def load_records(results_dir: Path) -> list[dict]:
    records = []
    for path, rec in iter_records(results_dir):
        rec["_path"] = str(path)  # the per-user arrays sit beside it
        records.append(rec)
    return records


def _experiment(name: str, records: list[dict]) -> dict:
    try:
        return cfgmod.load_experiment(name)[1]
    except cfgmod.ConfigError:
        return {"runs": {}, "description": "(the experiment file no longer exists)",
                "paper_table": records[0].get("paper_table")}


def build_reports(results_dir: str | Path = "results", reports_dir: str | Path = "reports") -> list[Path]:
    results_dir, reports_dir = Path(results_dir), Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    writer = Writer(reports_dir)
    paper = paper_reference()
    records = load_records(results_dir)
    by_exp: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        by_exp[rec["experiment"]][rec["dataset"]].append(rec)
    experiments = {name: _experiment(name, [r for ds in datasets.values() for r in ds]) for name, datasets in by_exp.items()}
    feeding = {}  # every experiment file, run or not, for the "how to fill this page" lines
    for name in cfgmod.list_experiments():
        try:
            feeding[name] = cfgmod.load_experiment(name)[1]
        except cfgmod.ConfigError:
            continue

    pages: list[tuple[Artefact, Path, int]] = []
    claimed: set[str] = set()
    for artefact in ARTEFACTS:
        groups = []
        for name in sorted(by_exp):
            if not artefact.feeds_on(_paper_keys(name, experiments[name].get("paper_table"))):
                continue
            claimed.add(name)
            for dataset in sorted(by_exp[name]):
                recs = by_exp[name][dataset]
                if artefact.shows_dataset(recs[0]["data"].get("paper_name")):
                    groups.append(Group(name, experiments[name], dataset, recs))
        page, n_ok = artefact_page(artefact, groups, paper, writer, results_dir, feeding)
        pages.append((artefact, page, n_ok))
    for name in sorted(set(by_exp) - claimed):  # experiments no paper artefact claims
        exp = experiments[name]
        own = Artefact(name, name, f"the records of experiment `{name}`, which feeds no table or figure of the paper",
                       from_paper=False)
        groups = [Group(name, exp, ds, by_exp[name][ds]) for ds in sorted(by_exp[name])]
        page, n_ok = artefact_page(own, groups, paper, writer, results_dir, feeding)
        pages.append((own, page, n_ok))

    extra = []
    if records:
        extra.append(("Table 8: datasets", datasets_page(records, paper, writer), "statistics after processing, beside the paper's"))
    extra.append(("Accuracy against latency", accuracy_latency_page(records, writer),
                  "Recall@10 against ms per batch with the Pareto frontier, per device"))
    extra.append(("Protocol controls", protocol_controls_page(records, writer),
                  "how much history masking, sampled candidates and item indexing move the numbers"))

    index = ["# Reports", "", "Generated by `python run_all.py` (or `python run_all.py --report-only`) from the "
             "records in `results/` alone; do not edit by hand.", ""]
    index += protocol_section(records) if records else ["No records yet.", ""]
    index += ["## Pages", ""]
    for artefact, page, n_ok in pages:
        state = f"{n_ok} finished record(s)" if n_ok else "not run yet"
        index.append(f"- [{artefact.title}]({page.name}): {artefact.what} ({state})")
    for title, page, what in extra:
        index.append(f"- [{title}]({page.name}): {what}")
    writer.text("README.md", "\n".join(index) + "\n")
    writer.remove_stale()
    return writer.written
