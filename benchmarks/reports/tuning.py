"""The tuning pages: one per experiment that declares `tuning:` (reports/tuning_<experiment>.md),
built from the experiment file (the budget every tuned row gets, the rows searched and those
that keep the file's settings, each row's search space) and the study summaries under
results/tuning/ (benchmarks/tuning/studies.py: each study's trials and best settings), never
from the storage itself. Each finished or running study gets Optuna's own plots of its trials
(benchmarks/figures.py, tuning_curves). The prose is templates/tuning.md.j2."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import config as cfgmod
from ..errors import ConfigError
from ..figures import tuning_curves
from ..records import REPO_ROOT
from ..tuning.studies import read_summaries, study_ref
from ..variants import flatten
from .tables import short
from .text import render
from .writer import FigureFiles, TableFiles, Writer, slug


def _value_at(config: dict, key: str):
    """The config's value at a dotted key (list items by index), or None where it sets none."""
    flat = flatten(config)
    parts = key.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in flat:
            value = flat[head]
            for index in parts[cut:]:
                if not (isinstance(value, list) and index.isdigit() and int(index) < len(value)):
                    return None
                value = value[int(index)]
            return value
    return None


def _options(options: dict) -> str:
    extra = ", ".join(f"{k} {v}" for k, v in options.items() if k != "name")
    return options["name"] + (f" ({extra})" if extra else "")


@dataclass
class StudySection:
    """One study on the page (templates/tuning.md.j2)."""

    heading: str
    name: str
    storage: str
    state: str
    current: str = ""                     # why the study is not today's (an earlier config of the row)
    best: TableFiles | None = None
    best_applied: bool = False   # a finished study's best is what a normal run applies
    figures: list[FigureFiles] = field(default_factory=list)


def in_memory_study(summary: dict):
    """An Optuna study holding a summary's counted trials (the budget), for Optuna's plots."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    def distribution(spec: dict):
        if spec["type"] == "categorical":
            return CategoricalDistribution(spec["choices"])
        kind = FloatDistribution if spec["type"] == "float" else IntDistribution
        return kind(spec["low"], spec["high"], log=spec.get("log", False))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", study_name=summary["study"])
    by_number = {trial["number"]: trial for trial in summary["trials"]}
    for trial in (by_number[number] for number in summary["counted"]):  # in the order they finished
        params = {k: v for k, v in trial["params"].items() if k in summary["space"]}
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState[trial["state"]], value=trial["value"], params=params,
            distributions={k: distribution(summary["space"][k]) for k in params},
            intermediate_values={int(step): value for step, value in trial["validations"].items()}))
    return study


def _trial_seconds(trials: list[dict]) -> str:
    """What the study's trials cost: the training seconds of every trial that recorded them
    (counted or not; an interrupted trial records none, nor did a pruned one before). A summary written before trials kept `sitting_seconds` holds each trial's wall clock
    in its last sitting, which leaves out the earlier sittings of an interrupted trial."""
    timed = [t["training"] for t in trials if (t.get("training") or {}).get("seconds") is not None]
    if not timed:
        return ""
    total = sum(float(t["seconds"]) for t in timed)
    old = any("sitting_seconds" not in t for t in timed)
    return (f" Time recorded for {len(timed)} of its {len(trials)} trials: {total / 3600:.1f} hours ({total:,.0f} s) of "
            + ("wall clock, each trial's last sitting only (a summary from before sittings were added up)."
               if old else "training, over every sitting."))


def _study_section(summary: dict, current: str, writer: Writer) -> StudySection:
    trials = summary["trials"]
    counts = {state: sum(t["state"] == state for t in trials) for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    budget = summary["budget"]["trials"]
    state = (f"{len(summary['counted'])} of {budget} trials finished ({counts['COMPLETE']} complete, "
             f"{counts['PRUNED']} pruned)" + ("" if summary["finished"] else ": not finished, `--tune` resumes it")
             + (f"; {counts['FAIL']} failed or interrupted (not counted)" if counts["FAIL"] else "")
             + (f"; {counts['RUNNING']} running or left by a killed process" if counts["RUNNING"] else "") + ".")
    section = StudySection(f"{summary['dataset']}: {summary['run']}", summary["study"], summary["storage"],
                           state + _trial_seconds(trials), current)
    stem = f"tuning__{slug(summary['experiment'])}__{slug(summary['dataset'])}__{slug(summary['run'])}__{summary['digest']}"
    best = summary.get("best")
    if best:
        rows = [{"setting": key, "best value": f"{value:.4g}" if isinstance(value, float) else str(value)}
                for key, value in best["params"].items()]
        rows.append({"setting": f"validation {short(summary['metric'])} (objective)", "best value": f"{best['value']:.4f}"})
        rows.append({"setting": "trial", "best value": str(best["trial"])})
        section.best = writer.table(stem + "__best", pd.DataFrame(rows))
        section.best_applied = bool(summary["finished"])
    study = in_memory_study(summary)
    if any(t.state.name == "COMPLETE" for t in study.trials):
        title = f"{summary['dataset']} {summary['run']}"
        for paths, caption in zip(tuning_curves(study, short(summary["metric"]), title, writer.figure_stem(stem)),
                                  ("Each counted trial's objective and the best so far, trials in the order "
                                   "they finished (Optuna's plot_optimization_history; the study's own trial numbers "
                                   "are in the summary).", "Each counted trial's validation curve; a "
                                   "pruned trial's ends where the pruner cut it (plot_intermediate_values).")):
            section.figures.append(writer.figure(paths, f"{title}: tuning", caption))
    return section


def _spaces(name: str, exp: dict) -> tuple[pd.DataFrame, dict[tuple[str, str], str]]:
    """The search space of each tuned row (on the experiment's first dataset) with the file's own
    value of each setting; and today's study name of each (dataset, run)."""
    settings, rows, current = exp["tuning"], [], {}
    for run in settings.runs:
        for number, dataset in enumerate(exp["datasets"]):
            try:
                spec = cfgmod.resolve_run(name, exp, run, dataset, exp["seeds"][0])
                ref = study_ref(spec, settings)
            except ConfigError as err:
                if number == 0:
                    rows.append({"row": run, "setting": "(cannot resolve)", "distribution": str(err), "the file's value": ""})
                continue
            current[(dataset, run)] = ref.name
            if number:
                continue
            origin = "the run's `space:`" if run in settings.spaces else "the model's default space"
            for param in ref.space:
                value = _value_at(spec.config, param.key)
                rows.append({"row": run, "setting": param.key, "distribution": param.describe(),
                             "the file's value": "its default" if value is None else str(value), "space": origin})
    return pd.DataFrame(rows).fillna(""), current


def tuning_page(name: str, exp: dict | None, summaries: list[dict], writer: Writer) -> Path:
    settings = exp.get("tuning") if exp else None
    spaces, current = (_spaces(name, exp) if settings else (None, {}))
    sections = []
    for summary in summaries:
        today = current.get((summary["dataset"], summary["run"]))
        why = "" if today in (None, summary["study"]) else (
            f"made for an earlier config of the row; today's experiment file makes study `{today}`, which a normal "
            "run looks up instead")
        sections.append(_study_section(summary, why, writer))
    found = {(s["dataset"], s["run"]) for s in summaries if s["study"] == current.get((s["dataset"], s["run"]))}
    waiting = [(dataset, run) for (dataset, run) in current if (dataset, run) not in found]
    untuned = [run for run in (exp or {}).get("runs", {}) if settings and run not in settings.runs]
    budget = settings.budget() if settings else summaries[0]["budget"]
    declared_in = Path(settings.declared_in) if settings else None
    if declared_in is not None and declared_in.resolve().is_relative_to(REPO_ROOT):
        declared_in = declared_in.resolve().relative_to(REPO_ROOT)  # the same page on every clone
    text = render("tuning.md.j2", name=name, settings=settings, budget=budget, declared_in=declared_in,
                  sampler=_options(budget["sampler"]), pruner=_options(budget["pruner"]),
                  spaces=writer.table(f"tuning__{slug(name)}__spaces", spaces) if spaces is not None and len(spaces) else None,
                  untuned=untuned, sections=sections, waiting=waiting,
                  storages=sorted({s["storage"] for s in summaries}))
    return writer.text(f"tuning_{name}.md", text)


def tuning_pages(results_dir, experiments: dict[str, dict], writer: Writer) -> list[tuple[str, Path, str]]:
    """A page per experiment that declares `tuning:` or has study summaries under results_dir;
    (title, page, what) for the index."""
    summaries: dict[str, list[dict]] = {}
    for summary in read_summaries(results_dir):
        summaries.setdefault(summary["experiment"], []).append(summary)
    names = sorted({n for n, exp in experiments.items() if exp.get("tuning")} | set(summaries))
    listed = []
    for name in names:
        mine = summaries.get(name, [])
        path = tuning_page(name, experiments.get(name), mine, writer)
        finished = sum(1 for s in mine if s["finished"])
        listed.append((f"Tuning: {name}", path, f"the search budget of `{name}`'s tuned rows, their search spaces, "
                       f"the best settings and the trials ({finished} finished stud{'y' if finished == 1 else 'ies'})"))
    return listed
