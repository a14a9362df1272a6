"""Reports, built from the records in results/ alone: one markdown page per experiment (with CSV
tables beside it) and an index. The paper's numbers (benchmarks/paper_reference.yaml) are shown
beside ours only where the dataset and protocol match the paper's; otherwise the page says why
they are not comparable. A row with no record says so; nothing is filled in from elsewhere."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import config as cfgmod
from .records import iter_records

PAPER_FILE = Path(__file__).resolve().parent / "paper_reference.yaml"
METRIC_LABELS = {"recall": "R", "ndcg": "N"}
# paper tables printed for one dataset only (their rows are models, not datasets)
SINGLE_DATASET_TABLES = {"table6_item_llm_backbone": "ml-1m", "table7_rec_llm_scaling": "ml-1m",
                         "table1_inference_time_and_input_length": "ml-1m"}


def paper_reference() -> dict:
    return yaml.safe_load(PAPER_FILE.read_text())


def metric_columns(records: list[dict]) -> list[str]:
    keys: list[str] = []
    for rec in records:
        for key in rec.get("metrics") or {}:
            if key not in keys:
                keys.append(key)
    if not keys:  # nothing ran: the columns the config asked for
        ks = next((r["config"]["eval"]["ks"] for r in records if "config" in r), [10, 20])
        keys = [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks]
    return sorted(keys, key=lambda k: (k.split("@")[0] != "recall", int(k.split("@")[1])))


def short(metric: str) -> str:
    name, k = metric.split("@")
    return f"{METRIC_LABELS.get(name, name)}@{k}"


def comparability(records: list[dict], paper: dict) -> tuple[str | None, str]:
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
    for r in records:
        ev = r.get("evaluation") or {}
        if ev and (ev.get("candidates") != "full" or not ev.get("mask_history") or ev.get("users") != "all"):
            return None, "the evaluation protocol differs from the paper's (full ranking, history masked, all users)"
    return name, ""


def _fmt_mean(values: list[float], digits: int = 4) -> str:
    values = [v for v in values if v is not None and not np.isnan(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def dataset_table(exp: dict, records: list[dict]) -> pd.DataFrame:
    """One row per run of the experiment (in the experiment's order), means over seeds."""
    metrics = metric_columns(records)
    by_run = defaultdict(list)
    for rec in records:
        by_run[rec["run"]].append(rec)
    rows = []
    run_names = list(exp["runs"]) if exp else []
    run_names += [r for r in by_run if r not in run_names]
    for run in run_names:
        recs = by_run.get(run, [])
        ok = [r for r in recs if r.get("status") == "ok"]
        row = {"model": run}
        if not ok:
            skipped = [r for r in recs if r.get("status") == "skipped"]
            note = f"skipped: {skipped[0]['skip_reason']}" if skipped else "not run"
            row.update({short(m): note if i == 0 else "" for i, m in enumerate(metrics)})
            rows.append(row)
            continue
        for m in metrics:
            row[short(m)] = _fmt_mean([r["metrics"].get(m) for r in ok])
        lat = [r["latency"]["ms_per_batch_median"] for r in ok if r.get("latency")]
        row["ms/batch (median)"] = _fmt_mean(lat, 2) if lat else "n/a"
        row["input length"] = _fmt_mean([r["input_length"]["mean"] for r in ok], 1)
        row["epochs"] = _fmt_mean([r["training"].get("epochs", 0) for r in ok], 1)
        row["train s"] = _fmt_mean([r["training"].get("seconds", 0.0) for r in ok], 1)
        row["seeds"] = ", ".join(str(r["seed"]) for r in ok)
        if any((r.get("model_info") or {}).get("backbones") for r in ok):
            row["backbones"] = ok[0]["model_info"].get("backbones", "")
        row["users"] = ok[0]["evaluation"]["users"]
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def paper_table(table_key: str | None, paper_dataset: str, runs: list[str], paper: dict, ours: pd.DataFrame):
    """The paper's numbers for the same rows, labelled as the paper's, with our difference."""
    table = (paper.get(table_key) or {}) if table_key else {}
    if table_key in SINGLE_DATASET_TABLES:
        table = table if SINGLE_DATASET_TABLES[table_key] == paper_dataset else None
    else:
        table = table.get(paper_dataset)
    if not table:
        return None
    rows = []
    for run in runs:
        if run not in table:
            continue
        row = {"model": run}
        for col, value in table[run].items():
            row[f"paper {col}"] = value
            if col in ours.columns:
                mine = ours.loc[ours["model"] == run, col]
                try:
                    row[f"ours - paper {col}"] = f"{float(str(mine.iloc[0]).split(' ')[0]) - value:+.4f}"
                except (ValueError, IndexError):
                    row[f"ours - paper {col}"] = "n/a"
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def stats_line(rec: dict) -> str:
    s = rec["data"]["stats"]
    return (
        f"{s['users']:,} users, {s['items']:,} items, {s['interactions']:,} interactions, "
        f"density {s['density']:.4f} (the paper's Table 8 'sparsity'), {s['k_core']}-core, "
        f"{s['items_without_text']} items without text; source {rec['data']['source']}, "
        f"data hash `{rec['data']['content_hash'][:12]}`"
    )


def datasets_page(by_exp: dict, paper: dict, reports_dir: Path) -> Path:
    """Statistics of every dataset in the records, beside the paper's Table 8 where it has one."""
    rows, seen = [], set()
    for datasets in by_exp.values():
        for dataset, records in datasets.items():
            data = records[0]["data"]
            if (dataset, data["content_hash"]) in seen:
                continue
            seen.add((dataset, data["content_hash"]))
            s = data["stats"]
            rows.append({
                "dataset": dataset, "source": data["source"], "users": s["users"], "items": s["items"],
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
    table = pd.DataFrame(rows).fillna("")
    lines = ["# Datasets", "", "Statistics after processing (k-core, repeats, re-indexing), from the records. "
             "Rows starting with 'paper:' are the paper's Table 8, labelled as the paper's; its "
             "'sparsity' column is interactions / (users x items), our 'density'.", "",
             table.to_markdown(index=False, disable_numparse=True), ""]
    table.to_csv(reports_dir / "datasets.csv", index=False)
    page = reports_dir / "datasets.md"
    page.write_text("\n".join(lines))
    return page


def build_reports(results_dir: str | Path = "results", reports_dir: str | Path = "reports") -> list[Path]:
    results_dir, reports_dir = Path(results_dir), Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    paper = paper_reference()
    by_exp: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for _path, rec in iter_records(results_dir):
        by_exp[rec["experiment"]][rec["dataset"]].append(rec)
    written = []
    index = ["# Reports", "", "Generated by `python run_all.py` from the records in `results/`; "
             "do not edit by hand.", ""]
    for exp_name in sorted(by_exp):
        try:
            _, exp = cfgmod.load_experiment(exp_name)
        except cfgmod.ConfigError:
            exp = {"runs": {}, "description": "(experiment file no longer exists)", "paper_table": None}
        lines = [f"# {exp_name}", "", exp.get("description", "").strip(), ""]
        for dataset in sorted(by_exp[exp_name]):
            records = by_exp[exp_name][dataset]
            ok = [r for r in records if r.get("status") == "ok"] or records
            ref = ok[0]
            lines += [f"## {dataset}", "", stats_line(ref), ""]
            ev = ref.get("evaluation") or {}
            if ev:
                lines += [
                    f"Protocol: leave-one-out; {ev.get('candidates')} ranking"
                    + (f" (1 target + {ev.get('num_negatives')} sampled negatives, seed {ev.get('negative_seed')})"
                       if ev.get("candidates") == "sampled" else " over all items")
                    + f"; history masking {'on' if ev.get('mask_history') else 'off'}; users: {ev.get('users')}; "
                    f"ties count against the target.",
                    "",
                ]
            env = ref.get("environment") or {}
            lat = next((r["latency"] for r in ok if r.get("latency")), None)
            if lat:
                lines += [f"Latency: batches of {lat['batch_size']} users, top-{lat['top_k']}, median over "
                          f"{lat['n_batches']} batches after {lat['warmup_batches']} warm-up, on "
                          f"{lat['device_name']} ({lat['device']}, {lat['torch_threads']} threads, {lat['dtype']}).", ""]
            table = dataset_table(exp, records)
            lines += [table.to_markdown(index=False, disable_numparse=True), ""]
            csv = reports_dir / f"{exp_name}__{dataset}.csv"
            table.to_csv(csv, index=False)
            written.append(csv)
            paper_ds, why = comparability(ok, paper)
            if paper_ds:
                ptable = paper_table(exp.get("paper_table"), paper_ds, list(table["model"]), paper, table)
                if ptable is not None:
                    lines += [f"The paper's numbers ({paper['source']}, {exp.get('paper_table')}, {paper_ds}), "
                              "labelled as the paper's:", "", ptable.to_markdown(index=False, disable_numparse=True), ""]
                else:
                    lines += ["The paper reports none of these rows for this dataset.", ""]
            else:
                lines += [f"The paper's numbers are not shown: {why}.", ""]
            commits = sorted({(r.get("environment") or {}).get("git", {}).get("commit") or "unknown" for r in records})
            lines += [f"Records: `{results_dir}/{exp_name}/{dataset}/`; commits {', '.join(c[:10] for c in commits)}; "
                      f"device {env.get('device_name', 'n/a')}.", ""]
        page = reports_dir / f"{exp_name}.md"
        page.write_text("\n".join(lines))
        written.append(page)
        index.append(f"- [{exp_name}]({page.name}): {exp.get('description', '').strip().splitlines()[0] if exp.get('description') else ''}")
    if by_exp:
        page = datasets_page(by_exp, paper, reports_dir)
        written.append(page)
        index.append(f"- [datasets]({page.name}): statistics after processing (the paper's Table 8)")
    index_page = reports_dir / "README.md"
    index_page.write_text("\n".join(index) + "\n")
    written.append(index_page)
    return written
