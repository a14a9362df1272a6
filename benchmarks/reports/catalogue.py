"""Which pages there are, in which order, and which records feed each.

A page is declared in the `report:` list of the experiment file that feeds it (ReportPage in
benchmarks/config.py has every key); a page no experiment file feeds yet is declared in the
experiments folder's pages.yaml. The declarations are read from the shipped experiments folder
and from `config.EXPERIMENTS_DIR` when that is another folder (a test's, a user's): there a file
takes the place of the shipped file of the same name, and its pages join the others. One page
name declared twice is an error naming both files.

Feeding: a page is fed by the experiment that declares it and by every experiment whose
`paper_table` (one key or a list) names the page's paper_key or the declaring experiment. An
experiment with records that feeds no page gets a page of its own, named after it; so does the
`quick` experiment of `run_all.py --model`, which has no file and feeds no paper table.

Experiment files outside the experiments folder (`--experiments path/to/mine.yaml`): their
records name the file (`experiment_file`), and the file's pages and `proposed:` are read from it
while it is there.

Order (the index lists the pages in it): the paper's tables, then its figures, each by the first
number in the page name (table1 ... table9, figure2, figure4_5, figure6); then the pages of ours
(`from_paper: false`) by name; then the experiments' own pages by experiment name.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as cfgmod
from ..pages import ReportPage
from ..planning import QUICK
from .records import Record


@dataclass(frozen=True)
class Page:
    """A declared page and the experiment that declares it (None: pages.yaml)."""

    spec: ReportPage
    experiment: str | None = None

    @property
    def keys(self) -> list[str]:
        """The `paper_table` values (or experiment names) that feed this page."""
        return [k for k in (self.spec.paper_key, self.experiment) if k]

    def fed_by(self, name: str, paper_table) -> bool:
        return bool(set(self.keys) & paper_keys(name, paper_table))

    def shows_dataset(self, paper_name: str | None) -> bool:
        if self.spec.only_paper_datasets is not None:
            return paper_name in self.spec.only_paper_datasets
        return paper_name not in self.spec.excluded_paper_datasets


@dataclass
class Group:
    """The records of one experiment on one dataset: one table of a page."""

    experiment: str
    exp: dict
    dataset: str
    records: list[Record] = field(default_factory=list)
    variants: list[Record] = field(default_factory=list)   # shown apart, under the table

    @property
    def any_record(self) -> Record:
        return (self.records or self.variants)[0]


def paper_keys(name: str, paper_table) -> set[str]:
    """The keys an experiment feeds: its own name and its paper_table value(s)."""
    keys = {name}
    if isinstance(paper_table, (list, tuple)):
        keys |= {str(k) for k in paper_table}
    elif paper_table:
        keys.add(str(paper_table))
    return keys


def _experiment_files(named: dict[str, Path] | None = None) -> dict[str, Path]:
    """Experiment files by name: the shipped ones, those of EXPERIMENTS_DIR in their place, and
    the files records name (`named`, from `files_named_by`)."""
    files = {}
    for folder in dict.fromkeys([cfgmod.SHIPPED_EXPERIMENTS_DIR, cfgmod.EXPERIMENTS_DIR]):
        files.update({p.stem: p for p in sorted(Path(folder).glob("*.yaml"))})
    files.update(named or {})
    return files


def files_named_by(records) -> dict[str, Path]:
    """{experiment: its file} for the records made from an experiment file given by its path,
    where that file is still there."""
    return {rec.experiment: Path(rec.experiment_file) for rec in records
            if rec.experiment_file and Path(rec.experiment_file).is_file()}


def _order(page: Page) -> tuple:
    name = page.spec.page
    kind = 0 if name.startswith("table") else 1 if name.startswith("figure") else 2
    number = re.search(r"\d+", name)
    return (not page.spec.from_paper, kind, int(number.group()) if number else math.inf, name)


def declared_pages(named: dict[str, Path] | None = None) -> list[Page]:
    """Every declared page, in the index's order (see the module's docstring); `named`: the
    experiment files records name (files_named_by)."""
    pages: dict[str, Page] = {}
    for name, path in _experiment_files(named).items():
        if name == cfgmod.PAGES:
            found = [Page(spec) for spec in cfgmod.load_pages_file(path)]
        elif name in cfgmod.NOT_EXPERIMENTS:
            continue
        else:
            found = [Page(spec, name) for spec in cfgmod.load_experiment(str(path))[1]["report"]]
        for page in found:
            if page.spec.page in pages:
                raise cfgmod.ConfigError(f"report page {page.spec.page!r} is declared twice: in "
                                         f"{pages[page.spec.page].spec.declared_in} and in {page.spec.declared_in}")
            pages[page.spec.page] = page
    return sorted(pages.values(), key=_order)


def own_page(name: str) -> Page:
    """The page of an experiment that feeds no declared page."""
    if name == QUICK:
        return Page(ReportPage(name, "Models run by themselves", "each model run alone with its defaults "
                               "(`python run_all.py --model NAME --dataset NAME`), beside the others run so",
                               from_paper=False), name)
    return Page(ReportPage(name, name, f"the records of experiment `{name}`, which feeds no table or figure "
                                       "of the paper", from_paper=False), name)


def experiment_definition(name: str, records: list[Record], named: dict[str, Path] | None = None) -> dict:
    """The experiment file's content (from the file its records name, where they name one), the
    quick experiment's, or what its records say where the file no longer exists."""
    if name == QUICK:
        return {"runs": {}, "paper_table": None,
                "description": "each model by itself with its defaults (`python run_all.py --model NAME`)"}
    try:
        return cfgmod.load_experiment(str((named or {}).get(name, name)))[1]
    except cfgmod.ConfigError:
        return {"runs": {}, "description": "(the experiment file no longer exists)",
                "paper_table": records[0].paper_table}


def experiment_files() -> dict[str, dict]:
    """Every experiment of EXPERIMENTS_DIR, run or not (for the lines saying how to fill a page)."""
    out = {}
    for name in cfgmod.list_experiments():
        try:
            out[name] = cfgmod.load_experiment(name)[1]
        except cfgmod.ConfigError:
            continue
    return out


def not_run_line(page: Page, files: dict[str, dict]) -> str:
    feeding = [name for name, exp in files.items() if page.fed_by(name, exp.get("paper_table"))]
    if feeding:
        return (f"Not run: no records yet. Experiment file(s) feeding this page: "
                f"{', '.join(f'`{f}`' for f in feeding)} (`python run_all.py --experiments {','.join(feeding)}`).")
    keys = [page.spec.paper_key] if page.spec.paper_key else page.keys
    return (f"Not run: no experiment file feeds this page yet (an experiment whose `paper_table` is "
            f"{' or '.join(f'`{k}`' for k in keys)} would).")
