"""The build: load the records once, write every declared page in order (catalogue.py), a page
of its own for an experiment that feeds none, the views across pages and the index; then remove
the files of the previous build that this one did not write."""
from __future__ import annotations

from pathlib import Path

from .catalogue import (Group, declared_pages, experiment_definition, experiment_files, not_run_line,
                        own_page)
from .index import index_page
from .pages import artefact_page
from .paper import paper_reference
from .records import load_records
from .views import accuracy_latency_page, datasets_page, protocol_controls_page
from .writer import Writer


def build_reports(results_dir: str | Path = "results", reports_dir: str | Path = "reports") -> list[Path]:
    """Rebuild reports_dir from the records in results_dir; return the files written."""
    results_dir, reports_dir = Path(results_dir), Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    writer = Writer(reports_dir)
    paper = paper_reference()
    records = load_records(results_dir)
    by_exp = records.by_experiment()
    experiments = {name: experiment_definition(name, [r for recs in datasets.values() for r in recs])
                   for name, datasets in by_exp.items()}
    files = experiment_files()  # every experiment file, run or not, for the "how to fill this page" lines

    listed: list[tuple[str, Path, str]] = []
    claimed: set[str] = set()
    for page in declared_pages():
        groups = []
        for name in sorted(by_exp):
            if not page.fed_by(name, experiments[name].get("paper_table")):
                continue
            claimed.add(name)
            for dataset in sorted(by_exp[name]):
                recs = by_exp[name][dataset]
                if page.shows_dataset(recs[0].paper_name):
                    groups.append(Group(name, experiments[name], dataset, recs))
        path, n_ok = artefact_page(page, groups, paper, writer, results_dir, not_run_line(page, files))
        listed.append((page.spec.title, path, f"{page.spec.what} ({_state(n_ok)})"))
    for name in sorted(set(by_exp) - claimed):  # experiments no declared page claims
        page = own_page(name)
        groups = [Group(name, experiments[name], ds, by_exp[name][ds]) for ds in sorted(by_exp[name])]
        path, n_ok = artefact_page(page, groups, paper, writer, results_dir, not_run_line(page, files))
        listed.append((page.spec.title, path, f"{page.spec.what} ({_state(n_ok)})"))

    if records:
        listed.append(("Table 8: datasets", datasets_page(records, paper, writer),
                       "statistics after processing, beside the paper's"))
    listed.append(("Accuracy against latency", accuracy_latency_page(records, writer),
                   "Recall@10 against ms per batch with the Pareto frontier, per device"))
    listed.append(("Protocol controls", protocol_controls_page(records, experiments, writer),
                   "how much history masking, sampled candidates and item indexing move the numbers"))
    index_page(records, listed, writer)
    writer.remove_stale()
    return writer.written


def _state(n_ok: int) -> str:
    return f"{n_ok} finished record(s)" if n_ok else "not run yet"
