"""The build: load the records once (main records, and the variants standing in where asked),
write every declared page in order (catalogue.py: table pages, and the verdict page), a page of
its own for an experiment that feeds none, a tuning page per experiment that declares `tuning:`
(from the study summaries under results/tuning/), the views across pages and the index; then
remove the files of the previous build that this one did not write."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .catalogue import (Group, declared_pages, experiment_definition, experiment_files, files_named_by,
                        not_run_line, own_page)
from .index import index_page
from .pages import artefact_page
from .paper import paper_reference
from .records import load_records
from .tuning import tuning_pages
from .verdict import verdict_page
from .views import accuracy_latency_page, datasets_page, protocol_controls_page
from .writer import Writer


def build_reports(results_dir: str | Path = "results", reports_dir: str | Path = "reports",
                  with_variants: Iterable[str] = ()) -> list[Path]:
    """Rebuild reports_dir from the records in results_dir; return the files written.
    `with_variants`: the variant tags whose records stand in for their runs' main records."""
    results_dir, reports_dir = Path(results_dir), Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    writer = Writer(reports_dir)
    paper = paper_reference()
    records = load_records(results_dir, with_variants)
    by_exp, variants = records.by_experiment(), records.by_experiment(variants=True)
    named = files_named_by([*records, *records.variants])
    experiments = {name: experiment_definition(name, [r for recs in {**variants.get(name, {}), **by_exp.get(name, {})}.values()
                                                      for r in recs], named)
                   for name in set(by_exp) | set(variants)}
    files = experiment_files()  # every experiment file, run or not, for the "how to fill this page" lines

    def groups_of(name: str) -> list[Group]:
        datasets = sorted(set(by_exp.get(name, {})) | set(variants.get(name, {})))
        return [Group(name, experiments[name], ds, by_exp.get(name, {}).get(ds, []), variants.get(name, {}).get(ds, []))
                for ds in datasets]

    listed: list[tuple[str, Path, str]] = []
    claimed: set[str] = set()
    for page in declared_pages(named):
        groups = []
        for name in sorted(experiments):
            if not page.fed_by(name, experiments[name].get("paper_table")):
                continue
            claimed.add(name)
            groups += [g for g in groups_of(name) if page.shows_dataset(g.any_record.paper_name)]
        if page.spec.kind == "verdict":
            path, n_ok = verdict_page(page, groups, paper, writer, not_run_line(page, files))
        else:
            path, n_ok = artefact_page(page, groups, paper, writer, results_dir, not_run_line(page, files))
        listed.append((page.spec.title, path, f"{page.spec.what} ({_state(n_ok)})"))
    for name in sorted(set(experiments) - claimed):  # experiments no declared page claims
        page = own_page(name)
        path, n_ok = artefact_page(page, groups_of(name), paper, writer, results_dir, not_run_line(page, files))
        listed.append((page.spec.title, path, f"{page.spec.what} ({_state(n_ok)})"))

    listed += tuning_pages(results_dir, {**files, **experiments}, writer)  # one per experiment declaring tuning:
    if any(r.has_data for r in records):
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
