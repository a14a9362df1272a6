"""Planning: an experiment set (or a list of experiments) expanded into resolved runs, ordered by
seed and by the set's priority tiers, cheapest first within a tier where records tell the cost,
and cut into shards for several machines. Nothing here trains or reads data."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from . import config as cfgmod
from .config import RunSpec
from .data.loaders import get_loader
from .errors import ConfigError


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
) -> Plan:
    """Expand an experiment set (or an explicit list of experiments) into resolved runs, seed by
    seed: every run of the first seed comes before any of the second, so a campaign cut short
    (a time limit, a lost machine) leaves whole tables of one seed rather than one table of
    three. Within a seed, the set's `priority` patterns put the most valuable runs first."""
    set_entry = cfgmod.load_set(set_name) if set_name else {}
    restrictions = {name: {} for name in experiments} if experiments else set_entry.get("experiments") or {}
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
    loaded = [cfgmod.load_experiment(name) for name in restrictions]
    if runs:
        known = {r for _, exp in loaded for r in exp["runs"]}
        unknown = sorted(set(runs) - known)
        if unknown:
            raise ConfigError(f"unknown run(s) {unknown}; the experiments have {sorted(known)}")
    plan, ordered = Plan(runs=[]), []
    for (exp_name, exp), restriction in zip(loaded, restrictions.values()):
        plan.experiments[exp_name] = exp
        selected = [r for r in exp["runs"] if not runs or r in runs]
        only = restriction.get("datasets")
        for dataset in [d for d in datasets or exp["datasets"] if only is None or d in only]:
            for seed_rank, seed in enumerate(seeds or exp["seeds"]):
                for run in selected:
                    spec = cfgmod.resolve_run(
                        exp_name, exp, run, dataset, seed,
                        set_config=set_entry.get("config"),
                        cli_overrides=cli,
                        data_path=data_path if data_path is not None else dataset_folder(data_root, dataset),
                    )
                    ordered.append((seed_rank, priority_tier(spec, priority), len(ordered), spec))
    ordered.sort(key=lambda item: item[:3])
    plan.runs = [spec for *_, spec in ordered]
    plan.groups = {spec.key: (seed_rank, tier) for seed_rank, tier, _, spec in ordered}
    return plan


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


def shard_plan(plan: Plan, index: int, count: int) -> Plan:
    """Shard `index` of `count`: every count-th run of the plan, starting at run `index` (1-based).
    Runs are independent and each writes its own record, so the shards together run the plan
    exactly once, and their results/ folders merge by copying into one."""
    return Plan(runs=plan.runs[index - 1::count], experiments=plan.experiments, groups=plan.groups)
