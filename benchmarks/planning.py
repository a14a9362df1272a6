"""Planning: an experiment set (or a list of experiments, or one model by itself) expanded into
resolved runs, ordered by seed and by the set's priority tiers, cheapest first within a tier
where records tell the cost (a declared estimate per model family where none does), and cut
into shards of about equal expected cost for several machines. Each run also carries how
its config differs from what its experiment file alone resolves to, which decides whether it
writes the main record or a variant (benchmarks/variants.py). Nothing here trains or reads data.

One model by itself (`run_all.py --model SASRec --dataset ml-100k`) is a run of the experiment
QUICK, which has no file: one row per model, with the model's defaults and nothing else."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from . import config as cfgmod
from .config import RunSpec
from .data.loaders import get_loader
from .errors import ConfigError
from .models import model_section
from .variants import WHERE_IT_RAN_KEYS, differences

QUICK = "quick"  # the experiment of `--model`: results/quick/<dataset>/<model>__seed<N>.json


@dataclass
class Plan:
    runs: list[RunSpec]
    experiments: dict[str, dict] = field(default_factory=dict)
    # run key -> (seed rank, priority tier): the groups within which cheaper runs may go first
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)

    def cheapest_first(self, expected_seconds) -> "Plan":
        """The same runs with each (seed, priority tier) group ordered by expected cost, cheapest
        first and unknown costs last (stable): a short window then finishes as many runs of the
        most valuable tier as it can before starting the next."""
        def key(item):
            index, spec = item
            cost = expected_seconds(spec)
            return (*self.groups.get(spec.key, (0, 0)), cost is None, cost or 0.0, index)

        ordered = [spec for _, spec in sorted(enumerate(self.runs), key=key)]
        return Plan(runs=ordered, experiments=self.experiments, groups=self.groups)


def priority_tier(spec: RunSpec, patterns: list[str]) -> int:
    """The index of the first `experiment/dataset/run` pattern the run matches (len(patterns) if none)."""
    key = f"{spec.experiment}/{spec.dataset}/{spec.run}"
    return next((i for i, pattern in enumerate(patterns) if fnmatch.fnmatchcase(key, pattern)), len(patterns))


def plan_runs(
    *,
    set_name: str | None = "default",
    experiments: list[str] | None = None,
    datasets: list[str] | None = None,
    seeds: list[int] | None = None,
    overrides: list[str] | None = None,
    data_path: str | None = None,
    data_root: str | None = None,
    runs: list[str] | None = None,
    models: list[str] | None = None,
    tag: str | None = None,
    studies=None,
) -> Plan:
    """Expand an experiment set (or an explicit list of experiments, or `models` each by itself:
    the QUICK experiment) into resolved runs, seed by seed: every run of the first seed comes
    before any of the second, so a campaign cut short (a time limit, a lost machine) leaves whole
    tables of one seed rather than one table of three. Within a seed, the set's `priority`
    patterns put the most valuable runs first. `tag` makes every run a variant of that name.
    `studies` (tuning.studies.StudyLookup): where a tuned row's finished study gives it its
    best settings; without it the tuned rows run with their experiment's settings."""
    if models and (experiments or set_name):
        raise ConfigError("--model runs one model by itself: give it without --experiments or --set")
    set_entry = cfgmod.load_set(set_name) if set_name else {}
    restrictions = {name: {} for name in experiments} if experiments else set_entry.get("experiments") or {}
    if models:
        restrictions = {QUICK: {}}
    if not restrictions:
        raise ConfigError("nothing to run: give --experiments or a set with experiments")
    datasets = datasets or set_entry.get("datasets")
    seeds = seeds or set_entry.get("seeds")
    runs = runs or set_entry.get("runs")
    if data_path is not None and data_root is not None:
        raise ConfigError("give --data-path (one dataset) or --data-root (a folder per dataset), not both")
    if data_path is not None and datasets is not None and len(datasets) != 1:
        raise ConfigError("--data-path needs exactly one --dataset")
    cli = [cfgmod.parse_override(o) for o in overrides or []]
    priority = [str(p) for p in set_entry.get("priority") or []]
    loaded = [(QUICK, quick_experiment(models))] if models else [cfgmod.load_experiment(name) for name in restrictions]
    if runs:
        known = {r for _, exp in loaded for r in exp["runs"]}
        unknown = sorted(set(runs) - known)
        if unknown:
            raise ConfigError(f"unknown run(s) {unknown}; the experiments have {sorted(known)}")
    plan, ordered = Plan(runs=[]), []
    for (exp_name, exp), (given, restriction) in zip(loaded, restrictions.items()):
        plan.experiments[exp_name] = exp
        selected = [r for r in exp["runs"] if not runs or r in runs]
        only = restriction.get("datasets")
        for dataset in [d for d in datasets or exp["datasets"] if only is None or d in only]:
            set_config = cfgmod.set_layer(set_entry, dataset)
            for seed_rank, seed in enumerate(seeds or exp["seeds"]):
                for run in selected:
                    spec = resolve_tuned(
                        exp_name, exp, run, dataset, seed, studies,
                        set_config=set_config,
                        cli_overrides=cli,
                        data_path=data_path if data_path is not None else dataset_folder(data_root, dataset),
                    )
                    compare_with_experiment(spec, exp, set_config, set_name, studies)
                    spec.tag = tag
                    spec.experiment_file = given if Path(given).suffix else None
                    ordered.append((seed_rank, priority_tier(spec, priority), len(ordered), spec))
    ordered.sort(key=lambda item: item[:3])
    plan.runs = [spec for *_, spec in ordered]
    plan.groups = {spec.key: (seed_rank, tier) for seed_rank, tier, _, spec in ordered}
    return plan


def resolve_tuned(experiment: str, exp: dict, run: str, dataset: str, seed: int, studies=None, **layers) -> RunSpec:
    """resolve_run, and for a row the experiment tunes (`tuning.runs`) its study (the study of the
    row as the experiment file states it): where the study is finished, the run is resolved again
    with the study's best settings as its `tuned` layer and carries the record's `tuning` block."""
    spec = cfgmod.resolve_run(experiment, exp, run, dataset, seed, **layers)
    settings = exp.get("tuning")
    if settings is None or run not in settings.runs:
        return spec
    from .tuning.studies import StudyState, study_ref

    # the study is the experiment's own row's (the set and the command line sit above its best
    # settings, as above the row's other settings); its trials train with this run's config
    own = cfgmod.resolve_run(experiment, exp, run, dataset, seed, data_path=layers.get("data_path")) \
        if any(layers.get(k) for k in ("set_config", "cli_overrides")) else spec
    ref = study_ref(own, settings, trial_base=spec.config)
    state = studies.state(ref) if studies is not None else StudyState(ref)
    if state.layer is not None:
        spec = cfgmod.resolve_run(experiment, exp, run, dataset, seed, tuned=state.layer, **layers)
        spec.tuning = state.record_block()
    spec.study = state
    return spec


def compare_with_experiment(spec: RunSpec, exp: dict, set_config: dict | None, set_name: str | None,
                            studies=None) -> None:
    """Fill in how the run's config differs from what its experiment file alone resolves to
    (defaults < preset < experiment < per_dataset < run < the best settings of the experiment's
    finished study for the row, where there is one: tuned settings are part of the experiment's
    design): the differences, the settings the set's config changes (where it ran included: a
    set that moves its runs to a GPU makes them its variants) and the experiment's own data
    section (to compare source files with)."""
    reference_spec = resolve_tuned(spec.experiment, exp, spec.run, spec.dataset, spec.seed, studies)
    reference = reference_spec.config
    tuned = reference_spec.study.layer if reference_spec.study is not None else None
    spec.differs = differences(reference, spec.config)
    spec.reference_data = reference["data"]
    if set_config:
        with_set = cfgmod.resolve_run(spec.experiment, exp, spec.run, spec.dataset, spec.seed, set_config=set_config,
                                      tuned=tuned)
        by_set = differences(reference, with_set.config, where_it_ran=True)
        for key in WHERE_IT_RAN_KEYS:  # top-level keys, as this run resolved them
            if key in by_set and spec.config[key] != reference[key]:
                spec.differs[key] = [reference[key], spec.config[key]]
        spec.set_keys = tuple(by_set)
        spec.set_name = set_name if by_set else None
        spec.differs = dict(sorted(spec.differs.items()))


def quick_experiment(models: list[str]) -> dict:
    """The QUICK experiment: one row per model (a registered name, a RecBole model's own name or a
    class by its path) with its defaults; the row is named as the user typed it (a class path
    by its class name)."""
    runs = {}
    for name in models:
        row = name.rpartition(":")[2] if ":" in name else name
        runs[row] = {"model": model_section(name)}
    return {"description": "one model at a time with its defaults (`python run_all.py --model NAME --dataset NAME`)",
            "paper_table": None, "datasets": ["ml-100k"], "seeds": [0], "config": {}, "per_dataset": {},
            "runs": runs, "report": ()}


def dataset_folder(data_root: str | None, dataset: str) -> str | None:
    """`data_root/<preset>` for a preset whose files are not embedded (every one but ml-100k);
    None leaves the preset's own path."""
    if data_root is None:
        return None
    preset = cfgmod.dataset_section(dataset)
    if preset.get("path") is None and get_loader(preset["source"]).embedded:
        return None
    return str(Path(data_root) / dataset)


def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4): the second of four shards. Shards count from 1, as a Slurm job array
    started with --array=1-N does (`--shard $SLURM_ARRAY_TASK_ID/N`)."""
    index, sep, count = str(text).partition("/")
    try:
        index, count = int(index), int(count)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise ConfigError(f"--shard must be I/N with 1 <= I <= N (shards count from 1), got {text!r}")
    return index, count


# What a run without a record of its own (nor a main record) is expected to cost, in seconds, by
# model family (`model.name`): a stand-in for a training to convergence on one GPU plus its
# evaluation, to balance shards and set Slurm time limits until a record tells. Declared, not
# measured; a model of one's own (named by its path) counts as DECLARED_DEFAULT_SECONDS.
DECLARED_SECONDS = {
    "most_popular": 60,
    "recbole": 1800,          # GRU4Rec, SASRec, BERT4Rec, NARM, STAMP, S3Rec, FDSA
    "lite_llm4rec": 3600,
    "p5_encoder_only": 3600,
    "p5": 7200, "pod": 7200, "lightlm": 7200,
    "e4srec": 7200,           # a SASRec stage, then the LLM stage
    "hllm": 7200,
}
DECLARED_DEFAULT_SECONDS = 3600


def declared_seconds(spec: RunSpec) -> float:
    return float(DECLARED_SECONDS.get(spec.config["model"]["name"], DECLARED_DEFAULT_SECONDS))


def expected_cost(spec: RunSpec, expected_seconds) -> float:
    """The run's expected seconds: from its records (`expected_seconds`, Runner.expected_seconds),
    else the declared estimate of its model family."""
    seconds = expected_seconds(spec)
    return float(seconds) if seconds is not None else declared_seconds(spec)


def shard_assignment(plan: Plan, count: int, cost) -> list[int]:
    """The shard (1..count) of each run of the plan, in plan order: greedy longest processing
    time, i.e. the most expensive run first, each to the shard with the least expected seconds so
    far (ties: the lowest shard; equal costs: plan order). Deterministic for the same plan and
    costs: every shard computes the same assignment and keeps its own part. Done runs are
    assigned too (each shard skips them in its part), so what was already recorded never moves a
    run from one shard to another."""
    costs = [float(cost(spec)) for spec in plan.runs]
    loads = [0.0] * count
    assignment = [0] * len(costs)
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        shard = min(range(count), key=lambda s: (loads[s], s))
        assignment[index] = shard + 1
        loads[shard] += costs[index]
    return assignment


def shard_plan(plan: Plan, index: int, count: int, assignment: list[int] | None = None) -> Plan:
    """Shard `index` of `count` (1-based): the runs `assignment` (shard_assignment) gives it, in
    plan order; without an assignment, every count-th run from run `index` (round robin). Runs
    are independent and each writes its own record, so the shards together run the plan exactly
    once, and their results/ folders merge by copying into one."""
    if assignment is None:
        runs = plan.runs[index - 1::count]
    else:
        runs = [spec for spec, shard in zip(plan.runs, assignment) if shard == index]
    return Plan(runs=runs, experiments=plan.experiments, groups=plan.groups)
