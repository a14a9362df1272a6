"""One page per declared paper table or figure (and per page of ours): for each experiment and
dataset feeding it, the dataset and protocol it ran under, the table (CSV and LaTeX beside it),
the page's figure and the validation curves, the significance of the proposed rows, the
ablations against their reference row, the paper's numbers where comparable, the variant
records apart (reports/variants.py), and where the records lie. The prose is
templates/artefact.md.j2."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .backbones import backbone_comparison
from .catalogue import Group, Page
from .charts import CURVES_CAPTION, FIGURE_CAPTIONS, learning_curves, table_figure
from .paper import PaperComparison, paper_comparison, rows_wanted
from .records import Record, as_record, current_by_run
from .inference import inference_table
from .significance import against_reference, proposed_label, proposed_runs, significance
from .tables import group_table, has_training_throughput, one_ranking_lines, short_list_lines, stale_lines
from .text import render
from .variants import variant_table
from .writer import FigureFiles, TableFiles, Writer, slug


def stats_line(rec: Record) -> str:
    if not rec.has_data:
        return "Data not read: every record of this table failed before loading it."
    s = rec.stats
    counts = ", ".join(f"{s[key]:,} {key}" for key in ("users", "items", "interactions"))
    return (f"{counts}, density {s['density']:.4f} (the paper's Table 8 'sparsity'), {s['k_core']}-core, "
            f"{s['items_without_text']} items without text; source {rec.source}, data hash `{rec.content_hash[:12]}`")


def protocol_line(ev: dict) -> str:
    if ev.get("candidates") == "sampled":
        ranking = (f"sampled ranking (1 target + {ev.get('num_negatives')} sampled negatives, "
                   f"seed {ev.get('negative_seed')})")
    else:
        ranking = f"full ranking over all items, history masking {'on' if ev.get('mask_history') else 'off'}"
    return f"Protocol: leave-one-out; {ranking}; users: {ev.get('users')}."


def latency_line(records: list[Record | dict]) -> str | None:
    """Where and how the rows were timed (records: Record objects or record dicts)."""
    lats = [lat for lat in (as_record(r).latency for r in records) if lat]
    if not lats:
        return None
    retimed = sorted({as_record(r).run for r in records if as_record(r).raw.get("retimed")})
    lat = lats[0]
    devices = sorted({f"{x['device_name']} ({x['device']}, {x['torch_threads']} threads)" for x in lats})
    mixed = ("" if len({x["device_name"] for x in lats}) == 1 else
             " The rows were timed on different devices: compare times only between rows of one device "
             "(the `device` column); a speed-up across devices is not a measurement.")
    counts = sorted({int(x.get("n_batches", 0)) for x in lats})
    timed = (f"{counts[0]} timed batches" if len(counts) == 1 else
             f"{counts[-1]} timed batches (a row timed on fewer says so in its cell)")
    again = (f" Timed again after training, from the kept trained model (`--retime`; the record keeps "
             f"the times it replaced): {', '.join(retimed)}." if retimed else "")
    return (f"Latency: batches of {lat['batch_size']} users, top-{lat['top_k']}, median over "
            f"{timed} after {lat['warmup_batches']} warm-up, on {'; '.join(devices)}.{mixed}{again}")


@dataclass
class Section:
    """One table of a page: one experiment on one dataset (templates/artefact.md.j2)."""

    heading: str
    stats: str
    protocol: str | None
    latency: str | None
    table: TableFiles
    figures: list[FigureFiles] = field(default_factory=list)
    significance: TableFiles | None = None
    versus: TableFiles | None = None
    paper: PaperComparison | None = None
    variants: TableFiles | None = None         # the variant records, apart from the table
    inference: TableFiles | None = None        # rows timed as published and at their best
    backbones: TableFiles | None = None        # runs that differ only in their backbone, on validation
    backbone_sentences: list[str] = field(default_factory=list)
    standing_in: str = ""                      # the tags of variants standing in for rows' own
    stale: list[str] = field(default_factory=list)  # the stale rows, each with what differs
    one_ranking: list[str] = field(default_factory=list)  # trained rows that rank every user alike
    short_lists: list[str] = field(default_factory=list)  # generative rows whose lists came out short
    records: str = ""
    commits: str = ""


def _section(page: Page, group: Group, several: bool, paper: dict, writer: Writer, results_dir: Path) -> Section:
    spec, records = page.spec, group.records
    ok = [r for r in records if r.ok]
    ref = next((r for r in [*ok, *records, *group.variants] if r.has_data), group.any_record)
    wanted = rows_wanted(spec, paper)
    first = group_table(spec, group.exp, records, rows_wanted=wanted)
    sig, stars = significance(first, group.exp)
    table = group_table(spec, group.exp, records, stars, rows_wanted=wanted) if stars else first
    stem = f"{spec.page}__{slug(group.experiment)}__{slug(group.dataset)}"
    lat = latency_line(ok)
    section = Section(
        heading=f"{group.dataset} ({group.experiment})" if several else group.dataset, stats=stats_line(ref),
        protocol=protocol_line(ref.evaluation) if ref.evaluation else None,
        latency=lat if lat and any(c in spec.columns for c in ("latency", "sections")) else None,
        table=writer.table(stem, table.frame), stale=stale_lines(table),
        one_ranking=one_ranking_lines(table),
        short_lists=short_list_lines(table) if "metrics" in spec.columns else [])  # what they qualify
    if spec.figure and table.ok:
        title = f"{spec.title.split(':')[0]}: {group.dataset} ({group.experiment})"
        if paths := table_figure(spec, table, title, writer.figure_stem(stem)):
            section.figures.append(writer.figure(paths, title, FIGURE_CAPTIONS.get(spec.figure, "")))
    if "metrics" in spec.columns and table.ok:
        title = f"Validation curves: {group.dataset} ({group.experiment})"
        if paths := learning_curves(table, title, writer.figure_stem(f"{stem}__learning_curves")):
            section.figures.append(writer.figure(paths, title, CURVES_CAPTION))
    if sig is not None:
        section.significance = writer.table(stem + "__significance", sig)
    if spec.reference_run and (versus := against_reference(table, spec.reference_run)) is not None:
        section.versus = writer.table(stem + "__against_" + slug(spec.reference_run), versus)
    if any(c in spec.columns for c in ("latency", "sections")) and \
            (frame := inference_table(table.ok, proposed_runs(group.exp, table.ok))) is not None:
        section.inference = writer.table(stem + "__inference_settings", frame)
    if "metrics" in spec.columns:  # every current run of the group, the page's own rows or not
        if (found := backbone_comparison(current_by_run(records))) is not None:
            section.backbones = writer.table(stem + "__backbones", found[0])
            section.backbone_sentences = found[1]
    section.paper = paper_comparison(spec, table, records, paper, writer, stem) if records else None
    if group.variants:
        section.variants = writer.table(stem + "__variants", variant_table(spec, group.exp, group.variants))
    section.standing_in = ", ".join(sorted({r.variant for r in records if r.stands_in}))
    section.records = f"{results_dir}/{group.experiment}/{group.dataset}/"
    section.commits = ", ".join(c[:10] for c in sorted({r.commit for r in [*records, *group.variants]}))
    return section


def artefact_page(page: Page, groups: list[Group], paper: dict, writer: Writer, results_dir: Path,
                  not_run: str) -> tuple[Path, int]:
    """Write one page; return it and its number of finished records. `not_run`: what the page
    says when no records feed it."""
    experiments = []
    for name in sorted({g.experiment for g in groups}):
        exp = next(g.exp for g in groups if g.experiment == name)
        experiments.append((name, exp.get("description") or ""))
    several = len(experiments) > 1
    sections = [_section(page, group, several, paper, writer, results_dir) for group in groups]
    text = render("artefact.md.j2", page=page.spec, sections=sections, not_run=not_run, experiments=experiments,
                  metrics="metrics" in page.spec.columns, proposed=proposed_label(groups),
                  training="training" in page.spec.columns
                  and has_training_throughput(r for g in groups for r in g.records))
    n_ok = sum(1 for g in groups for r in g.records if r.ok)
    return writer.text(f"{page.spec.page}.md", text), n_ok
