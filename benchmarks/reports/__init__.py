"""Reports, built from the records in results/ alone: one page per paper artefact (Tables 1-9,
Figures 2, 4-5 and 6), the views the paper does not have (accuracy against latency, protocol
controls), and an index that states the protocol once.

Where a page is declared: in the `report:` list of the experiment file that feeds it
(benchmarks/experiments/<name>.yaml; every key: ReportPage in benchmarks/config.py), or, for a
page no experiment feeds yet, in benchmarks/experiments/pages.yaml. Which records feed it, and
the order of the pages: catalogue.py. The rows tested for the `*`: the experiment's `proposed:`
(significance.py).

Rules every page follows:
- Tables are markdown in the page, and CSV and LaTeX beside it (reports/tables/); figures are PNG
  in the page and PDF beside it (reports/figures/).
- Cells are means over seeds with the 95% confidence interval (benchmarks/statistics.py); the
  `*` marks a proposed row significantly better than the best baseline, paired over users.
- The paper's numbers (benchmarks/paper_reference.yaml) sit beside ours, labelled as the
  paper's, with the difference, only where the dataset and the evaluation protocol match the
  paper's; a row whose backbone differs from the paper's says so instead of a difference, and
  the paper's times (measured on its own unnamed GPU) are never set against ours.
- A cell with no record says "not run" (or "skipped: <reason>" / "failed: <error>" from a skip
  or failure record); nothing is filled in from elsewhere.
- The tables hold main records (a run as its experiment file states it); variant records (a
  config that differs: -o, a set's budget, other data) are listed under their table
  (variants.py), and stand in for their runs' main records only where `build_reports` is given
  their tags (`--with-variants`).

Modules, in the order a build uses them: records (load once, old formats brought up to date),
catalogue (pages, feeding, order), tables, variants, significance, paper, charts (the data of each figure;
benchmarks/figures.py draws), pages (one page per declared page), verdict (the declared page of
`kind: verdict`: the paper's claim tested per dataset, from main records, corrected for multiple
comparisons), tuning (a page per experiment that declares `tuning:`, from the study summaries
under results/tuning/), views (accuracy-latency, protocol controls, datasets), index, writer
(files and stale-file removal), text (the jinja2 templates under templates/), build.
"""
from .build import build_reports
from .paper import paper_reference

__all__ = ["build_reports", "paper_reference"]
