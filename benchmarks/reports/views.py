"""The views across pages, which the paper does not have (or has as a table of its own):

- accuracy against latency: Recall@10 against ms per batch with the Pareto frontier, one figure
  per dataset, device, batch size and set of evaluated users (times from different devices are
  never on one axis);
- protocol controls: the same trained models evaluated once more with one protocol choice
  flipped (history masking, 1 + 99 sampled candidates), the paper's masking asymmetry (the
  proposed rows masked, the baselines not), and runs that differ in one known-leaky model
  setting (P5's item indexing);
- the datasets (the paper's Table 8) beside the paper's statistics.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from .. import figures
from .catalogue import paper_keys
from .records import Record, RecordSet
from ..statistics import ALPHA, align_users, format_p, paired_test
from .significance import converged, is_proposed, per_user
from .tables import STALE_MARK, short
from .text import render
from .writer import Writer, slug

# The table whose classic rows the paper ran in RecBole, unmasked: its experiments get the
# masking-asymmetry table.
PAPER_MASKING_TABLE = "table3_overall"
# Model keys whose two values form a protocol control (same model, one known-leaky choice), and
# for each the leaky value with what its leak predicts.
CONTROL_MODEL_KEYS = {"indexing": "item indexing"}
LEAKY_VALUES = {"indexing": ("sequential", "consecutive ids given in order of first appearance put the order of a "
                                           "user's items into the ids, so a model that learns it scores higher")}
UNMASKED = "history masking off"  # the protocol control of a baseline evaluated as RecBole does


def named(run: str, recs: list[Record]) -> str:
    """A run's name as the tables write it: marked `(stale)` where a record of it was made under
    earlier settings than its experiment file now declares (these pages read every record)."""
    return run + STALE_MARK if any(r.stale for r in recs) else run


def accuracy_latency_page(records: RecordSet, writer: Writer) -> Path:
    """Recall@10 against ms per batch, one figure per dataset and device (full ranking only)."""
    f = records.frame
    timed = f[(f["status"] == "ok") & f["ms_per_batch"].notna() & f["recall@10"].notna()
              & (f["candidates"] == "full") & f["mask_history"] & ~f["cold_start"]]
    stale = {(r.experiment, r.dataset, r.run) for r in records if r.stale}
    sections = []
    for (dataset, device, batch, users), group in timed.groupby(["dataset", "device_name", "batch_size", "users"]):
        runs = list(group.groupby(["experiment", "run"], sort=False))
        names = [run for (_, run), _ in runs]
        mark = {run: STALE_MARK if (experiment, dataset, run) in stale else "" for (experiment, run), _ in runs}
        points = pd.DataFrame([{"label": (run if names.count(run) == 1 else f"{run} ({experiment})") + mark[run],
                                "experiment": experiment, "ms": float(np.mean(rows["ms_per_batch"].tolist())),
                                "accuracy": float(np.mean(rows["recall@10"].tolist())), "seeds": len(rows)}
                               for (experiment, run), rows in runs])
        frame = points.sort_values("ms").reset_index(drop=True)
        frame["on_front"] = figures.pareto_front(frame["ms"].to_numpy(), frame["accuracy"].to_numpy())
        subset = "" if users == "all" else "__" + slug(users)
        stem = f"accuracy_latency__{slug(dataset)}__{slug(device)}__b{batch}{subset}"
        title = f"{dataset} ({'all users' if users == 'all' else users}): Recall@10 against time per batch on {device}"
        figure = None
        if len(frame) > 1:
            paths = figures.accuracy_latency(frame, title, writer.figure_stem(stem), batch_size=batch)
            figure = writer.figure(paths, title)
        shown = pd.DataFrame({
            "model": frame["label"], "experiment": frame["experiment"], "R@10": frame["accuracy"].map("{:.4f}".format),
            "ms/batch": frame["ms"].map("{:.2f}".format), "seeds": frame["seeds"].astype(str),
            "Pareto frontier": frame["on_front"].map({True: "yes", False: ""}),
        })
        sections.append({"dataset": dataset, "device": device, "batch": batch, "users": users, "figure": figure,
                         "table": writer.table(stem, shown)})
    return writer.text("accuracy_latency.md", render("accuracy_latency.md.j2", sections=sections))


def _evaluation_controls(records: RecordSet) -> tuple[pd.DataFrame | None, list[str]]:
    """Each record's protocol controls beside its own numbers (means over seeds), and the controls
    not measured with the reason."""
    rows, not_measured = [], {}
    for rec in records.ok:
        for control, variant in rec.protocol_variants.items():
            if "skipped" in variant:
                not_measured[(rec.experiment, rec.dataset, rec.run, control)] = variant["skipped"]
            for metric in ("recall@10", "ndcg@10"):
                if metric in variant.get("metrics", {}) and metric in rec.metrics:
                    rows.append({"experiment": rec.experiment, "dataset": rec.dataset, "model": named(rec.run, [rec]),
                                 "control": control, "metric": short(metric), "seed": rec.seed,
                                 "as recorded": rec.metrics[metric], "with the control": variant["metrics"][metric]})
    if not rows:
        return None, []
    table = pd.DataFrame(rows).groupby(["experiment", "dataset", "model", "control", "metric"], sort=False).agg(
        seeds=("seed", "count"), recorded=("as recorded", "mean"), variant=("with the control", "mean")).reset_index()
    shown = pd.DataFrame({
        "experiment": table["experiment"], "dataset": table["dataset"], "model": table["model"],
        "control": table["control"], "metric": table["metric"],
        "as recorded": table["recorded"].map("{:.4f}".format),
        "with the control": table["variant"].map("{:.4f}".format),
        "change": (table["variant"] - table["recorded"]).map("{:+.4f}".format), "seeds": table["seeds"].astype(str),
    })
    lines = [f"{exp} / {ds} / {run}, {control}: {why}" for (exp, ds, run, control), why in sorted(not_measured.items())]
    return shown, lines


def protocol_controls_page(records: RecordSet, experiments: dict[str, dict], writer: Writer) -> Path:
    """How much one protocol choice moves the numbers of the same trained models."""
    evaluation, not_measured = _evaluation_controls(records)
    by_run = records.by_run()
    asymmetry = masking_asymmetry_rows(by_run, experiments)
    pairs, readings = config_control_pairs(by_run)
    text = render("protocol_controls.md.j2", not_measured=not_measured, readings=readings,
                  evaluation=writer.table("protocol_controls__evaluation", evaluation) if evaluation is not None else None,
                  asymmetry=writer.table("protocol_controls__paper_masking", pd.DataFrame(asymmetry)) if asymmetry else None,
                  indexing=writer.table("protocol_controls__indexing", pd.DataFrame(pairs)) if pairs else None,
                  control_keys=", ".join(f"`model.{k}`" for k in CONTROL_MODEL_KEYS))
    return writer.text("protocol_controls.md", text)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _unmasked(baseline: list[Record], masked: float | None, metric: str) -> float | None:
    """The baseline's metric with its history-masking-off control (means over seeds)."""
    variants = [r.protocol_variants.get(UNMASKED) or {} for r in baseline]
    if any("skipped" in v for v in variants):  # e.g. a generative model never lists history
        return masked
    return _mean((v.get("metrics") or {}).get(metric) for v in variants) if all(variants) else None


def masking_asymmetry_rows(by_run: dict[tuple, list[Record]], experiments: dict[str, dict]) -> list[dict]:
    """Per experiment feeding Table 3 and dataset: each proposed row against each baseline, both
    masked and with the baseline's history-masking-off control (R@10, N@10; means over seeds)."""
    rows = []
    for (exp, ds) in dict.fromkeys((e, d) for e, d, _ in by_run):
        definition = experiments[exp]
        if PAPER_MASKING_TABLE not in paper_keys(exp, definition.get("paper_table")):
            continue
        runs = {run: [r for r in recs if r.evaluation.get("candidates") == "full" and r.evaluation.get("mask_history")]
                for (e, d, run), recs in by_run.items() if (e, d) == (exp, ds)}
        proposed = [run for run, recs in runs.items() if recs and is_proposed(definition, run, recs[0].model)]
        baselines = [run for run, recs in runs.items() if recs and run not in proposed]
        for mine in proposed:
            for base in baselines:
                for metric in ("recall@10", "ndcg@10"):
                    ours = _mean(r.metrics.get(metric) for r in runs[mine])
                    masked = _mean(r.metrics.get(metric) for r in runs[base])
                    unmasked = _unmasked(runs[base], masked, metric)
                    if None in (ours, masked, unmasked):
                        continue
                    rows.append({"experiment": exp, "dataset": ds, "proposed": named(mine, runs[mine]),
                                 "baseline": named(base, runs[base]),
                                 "metric": short(metric), "proposed (masked)": f"{ours:.4f}",
                                 "baseline masked": f"{masked:.4f}", "baseline unmasked": f"{unmasked:.4f}",
                                 "gap, both masked": f"{ours - masked:+.4f}",
                                 "gap, paper's protocol": f"{ours - unmasked:+.4f}",
                                 "from the asymmetry": f"{masked - unmasked:+.4f}"})
    return rows


def control_reading(place: tuple[str, str], key: str, leaky: tuple[str, str, list[Record]],
                    other: tuple[str, str, list[Record]]) -> str:
    """One sentence on what a control pair shows, from its numbers: the leaky run's R@10 against
    the other's, the paired test over users, and whether both converged (a row cut by a cap
    cannot show whether the leak is there) under the settings declared now (a stale row cannot)."""
    (run_l, value_l, recs_l), (run_o, value_o, recs_o) = leaky, other
    head = (f"{place[0]} / {place[1]}: {named(run_l, recs_l)} ({key}={value_l}) against "
            f"{named(run_o, recs_o)} ({key}={value_o}), R@10 "
            f"{np.mean([r.metrics['recall@10'] for r in recs_l]):.4f} against "
            f"{np.mean([r.metrics['recall@10'] for r in recs_o]):.4f}")
    users_l, users_o = per_user(recs_l, "recall@10"), per_user(recs_o, "recall@10")
    test = paired_test(*align_users(*users_l, *users_o)[1:]) if users_l and users_o else None
    if test is not None:
        head += f" ({test.mean_difference:+.4f} over {test.n_users} users, paired t p {format_p(test.t_pvalue)})"
    stale = [run for run, recs in ((run_l, recs_l), (run_o, recs_o)) if any(r.stale for r in recs)]
    if stale:
        return head + (f": {' and '.join(stale)} {'were' if len(stale) > 1 else 'was'} made under earlier settings "
                       "than the experiment file now declares (stale), so the difference does not say whether "
                       "the leak shows as the rows are declared; `python run_all.py --list` shows them to run.")
    cut = [run for run, recs in ((run_l, recs_l), (run_o, recs_o)) if not all(converged(r) for r in recs)]
    if cut:
        return head + (f": {' and '.join(cut)} stopped by a cap, not by patience, so the difference does not yet "
                       "say whether the leak shows.")
    if test is None:
        return head + ": no per-user ranks to test the difference."
    if test.t_pvalue < ALPHA and test.mean_difference > 0:
        return head + f": the leaky {key} scores higher, as the leak predicts ({LEAKY_VALUES[key][1]})."
    if test.t_pvalue < ALPHA:
        return head + f": the leaky {key} scores lower, so the leak does not show here."
    return head + ": no significant difference, so the leak does not show here."


def config_control_pairs(by_run: dict[tuple, list[Record]]) -> tuple[list[dict], list[str]]:
    """Runs of one experiment and dataset whose configs differ only in a CONTROL_MODEL_KEYS key:
    their table rows, and one reading per pair where one of the two has the key's leaky value."""
    def stripped(cfg: dict, key: str) -> str:
        cfg = json.loads(json.dumps(cfg))
        cfg.pop("seed", None)
        cfg["model"].pop(key, None)
        return json.dumps(cfg, sort_keys=True)

    out, readings = [], []
    runs_by_place: dict[tuple, list[tuple[str, list[Record]]]] = defaultdict(list)
    for (experiment, dataset, run), recs in by_run.items():
        runs_by_place[(experiment, dataset)].append((run, recs))
    for (experiment, dataset), runs in sorted(runs_by_place.items()):
        for key, label in CONTROL_MODEL_KEYS.items():
            for i, (run_a, recs_a) in enumerate(runs):
                for run_b, recs_b in runs[i + 1:]:
                    cfg_a, cfg_b = recs_a[0].config, recs_b[0].config
                    value_a, value_b = cfg_a["model"].get(key), cfg_b["model"].get(key)
                    if value_a is None or value_a == value_b or stripped(cfg_a, key) != stripped(cfg_b, key):
                        continue
                    for metric in ("recall@10", "ndcg@10"):
                        a = float(np.mean([r.metrics[metric] for r in recs_a]))
                        b = float(np.mean([r.metrics[metric] for r in recs_b]))
                        out.append({"experiment": experiment, "dataset": dataset, "control": label,
                                    "first": f"{named(run_a, recs_a)} ({key}={value_a})",
                                    "second": f"{named(run_b, recs_b)} ({key}={value_b})",
                                    "metric": short(metric), "first value": f"{a:.4f}", "second value": f"{b:.4f}",
                                    "change": f"{b - a:+.4f}", "seeds": f"{len(recs_a)}, {len(recs_b)}"})
                    if key in LEAKY_VALUES and LEAKY_VALUES[key][0] in (value_a, value_b):
                        first, second = (run_a, value_a, recs_a), (run_b, value_b, recs_b)
                        leaky, other = (first, second) if value_a == LEAKY_VALUES[key][0] else (second, first)
                        readings.append(control_reading((experiment, dataset), key, leaky, other))
    return out, readings


def datasets_page(records: RecordSet, paper: dict, writer: Writer) -> Path:
    """Table 8: statistics of every dataset in the records, beside the paper's where it has one."""
    rows, seen = [], set()
    for rec in sorted((r for r in records if r.has_data), key=lambda r: r.dataset):
        if (rec.dataset, rec.content_hash) in seen:
            continue
        seen.add((rec.dataset, rec.content_hash))
        s = rec.stats
        rows.append({
            "dataset": rec.dataset, "source": rec.source, "users": s["users"], "items": s["items"],
            "interactions": s["interactions"], "density": round(s["density"], 6),
            "avg length": round(s["avg_sequence_length"], 1), "k-core": s["k_core"],
            "items without text": s["items_without_text"],
            "repeats removed": s["repeated_interactions_removed"], "data hash": rec.content_hash[:12],
        })
        ref = paper["datasets"].get(rec.paper_name or "")
        if ref:
            rows.append({
                "dataset": f"paper: {rec.paper_name} (Table 8)", "source": ref.get("source", ""),
                "users": ref["users"], "items": ref["items"], "interactions": ref["interactions"],
                "density": ref["sparsity_pct"], "k-core": ref["filter"],
            })
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = pd.DataFrame([{c: row.get(c, "") for c in columns} for row in rows])  # blanks, not NaN: ints stay ints
    return writer.text("datasets.md", render("datasets.md.j2", table=writer.table("datasets", table)))
