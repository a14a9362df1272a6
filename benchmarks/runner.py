"""The shared runner: plan the runs of an experiment set, then for each run load data, split,
build the model, train, evaluate, time, and write one record. The same path for every model."""
from __future__ import annotations

import fnmatch
import json
import random
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import config as cfgmod
from .config import ConfigError, RunSpec, config_hash, identity_hash
from .data import DataError, SequenceDataset, load_dataset, source_hash
from .data.loaders import get_loader
from .evaluate import EvalResult, control_variant, evaluate, evaluation_settings, sample_candidates, user_subset
from .latency import device_description, measure_latency
from .models import SkipRun, build_model
from .records import git_commit, library_versions, now, read_record, record_path, write_record
from .split import hold_out_items, leave_one_out
from .training import Trainer


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class Runner:
    def __init__(self, results_dir: str | Path = "results", force: bool = False, progress: bool = True):
        self.results_dir = Path(results_dir)
        self.force = force
        self.progress = progress
        self._datasets: dict[str, SequenceDataset] = {}
        self._source_hashes: dict[str, str | None] = {}

    def dataset(self, data_cfg: dict) -> SequenceDataset:
        key = json.dumps(data_cfg, sort_keys=True)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(data_cfg, verbose=self.progress)
        return self._datasets[key]

    def path(self, spec: RunSpec) -> Path:
        return record_path(self.results_dir, spec.experiment, spec.dataset, spec.run, spec.seed)

    def same_run(self, record: dict | None, spec: RunSpec) -> bool:
        """Whether a record is of this run: the same resolved config, or the same config with the
        data read from another folder holding the same source files (records made on a GPU
        machine from a copied data folder, merged here)."""
        if record is None:
            return False
        if record.get("config_hash") == config_hash(spec.config):
            return True
        if identity_hash(record["config"]) != identity_hash(spec.config):
            return False
        data = spec.config["data"]
        key = json.dumps(data, sort_keys=True)
        if key not in self._source_hashes:
            try:
                self._source_hashes[key] = source_hash(data)
            except (DataError, OSError):  # no files here to compare: not known to be the same
                self._source_hashes[key] = None
        return self._source_hashes[key] is not None and self._source_hashes[key] == (record.get("data") or {}).get("source_hash")

    def is_done(self, spec: RunSpec) -> bool:
        """A finished record of this run. A skip is not done: what was missing (a backbone's
        weights) may be here now, and finding out again costs no training."""
        record = read_record(self.path(spec))
        return self.same_run(record, spec) and record.get("status") == "ok"

    def expected_seconds(self, spec: RunSpec) -> float | None:
        """What this run is expected to cost: the training and evaluation seconds of the record at
        its path (from any config or device: a guide to order runs by, not a promise), or None
        where no finished record is there."""
        record = read_record(self.path(spec))
        if not record or record.get("status") != "ok":
            return None
        latency = record.get("latency") or {}
        timed = (latency.get("n_batches", 0) + latency.get("warmup_batches", 0)) * latency.get("ms_per_batch_median", 0.0) / 1e3
        return float((record.get("training") or {}).get("seconds") or 0.0) + \
            float((record.get("evaluation") or {}).get("seconds") or 0.0) + timed

    def skip_note(self, spec: RunSpec) -> str | None:
        """'to retry (skipped: why)' where this run's last attempt was skipped."""
        record = read_record(self.path(spec))
        if self.same_run(record, spec) and record.get("status") == "skipped":
            return f"to retry (skipped: {record.get('skip_reason')})"
        return None

    def run(self, spec: RunSpec) -> dict:
        """Run one spec, or return its existing record when it is already done (unless forced)."""
        path = self.path(spec)
        if not self.force and self.is_done(spec):
            return read_record(path)
        cfg = spec.config
        seed_everything(cfg["seed"])
        if cfg["num_threads"]:
            torch.set_num_threads(int(cfg["num_threads"]))
        device = resolve_device(cfg["device"])
        dataset = self.dataset(cfg["data"])
        split = leave_one_out(dataset)
        holdout = cfg.get("split", {}).get("holdout_items")
        if holdout:  # cold start: some items never seen in training (see hold_out_items)
            split = hold_out_items(split, holdout, cfg["split"]["holdout_seed"])
        base = {
            "experiment": spec.experiment,
            "run": spec.run,
            "dataset": spec.dataset,
            "seed": spec.seed,
            "model": cfg["model"]["name"],
            "paper_table": spec.paper_table,
            "config": cfg,
            "config_hash": config_hash(cfg),
            "data": {
                "name": dataset.name,
                "source": dataset.source,
                "paper_name": cfg["data"]["paper_name"],
                "stats": dataset.stats,
                "source_hash": dataset.source_hash,
                "content_hash": dataset.content_hash,
                "settings": dataset.settings,
            },
            "environment": {
                **device_description(device),
                "libraries": library_versions(),
                "git": git_commit(),
            },
            "started": now(),
        }
        try:
            model = build_model(cfg["model"], dataset, device)
            trainer = Trainer(cfg["train"], cfg["eval"], seed=cfg["seed"], progress=self.progress)
            t0 = time.perf_counter()
            training = model.fit(split.for_training(), trainer) or {}
            training.setdefault("seconds", time.perf_counter() - t0)
        except SkipRun as reason:
            previous = read_record(path)
            if (self.same_run(previous, spec) and previous.get("status") == "skipped"
                    and previous.get("skip_reason") == str(reason)):
                return previous  # skipped again for the same reason: the record stands as it was
            record = {**base, "status": "skipped", "skip_reason": str(reason), "finished": now()}
            write_record(path, record)
            return record
        eval_kwargs = evaluation_settings(cfg["eval"])
        users = user_subset(split.n_users, eval_kwargs.pop("max_users"), eval_kwargs.pop("user_subset_seed"))
        eval_kwargs["progress"] = self.progress
        test_histories = [split.test_histories[u] for u in users]
        test_targets = split.test_targets[users]
        t0 = time.perf_counter()
        test = evaluate(model, test_histories, test_targets, **eval_kwargs)
        eval_seconds = time.perf_counter() - t0
        cold_start = None
        if len(split.held_out_items):
            cold_start, test, users = cold_start_result(split, users, test)
        valid = evaluate(
            model, [split.valid_histories[u] for u in users], split.valid_targets[users], **eval_kwargs
        )
        protocol_variants = measure_protocol_controls(
            model, [split.test_histories[u] for u in users], split.test_targets[users],
            cfg["eval"]["protocol_controls"], eval_kwargs)
        latency = None
        if cfg["latency"]["enabled"]:
            lat = cfg["latency"]
            latency = measure_latency(
                model, test_histories, batch_size=lat["batch_size"], top_k=lat["top_k"],
                warmup_batches=lat["warmup_batches"], max_batches=lat["max_batches"],
                mask_history=eval_kwargs["mask_history"],
            )
        record = {
            **base,
            "status": "ok",
            "evaluation": {**test.settings, "users": "all" if len(users) == split.n_users else
                           f"seeded subset of {len(users)} of {split.n_users}", "seconds": eval_seconds},
            "metrics": test.metrics,
            "valid_metrics": valid.metrics,
            "protocol_variants": protocol_variants,
            "latency": latency,
            "input_length": {
                "mean": float(np.mean(model.input_length(test_histories))),
                "unit": getattr(model, "input_unit", "items"),
            },
            "training": training,
            "model_info": model.describe(),
            "finished": now(),
        }
        if cold_start is not None:
            record["evaluation"]["users"] = cold_start["users"]
            record["cold_start"] = cold_start
        write_record(path, record, {"user_index": users, "rank": test.ranks})
        return record


def measure_protocol_controls(model, histories, targets, controls, eval_kwargs: dict) -> dict:
    """The same trained model's test users evaluated once more per control (one evaluation
    choice flipped): {label: {evaluation, metrics}}, or {label: {skipped: why}} where the control
    cannot change this model's numbers."""
    variants = {}
    for control in controls or []:
        label, kwargs = control_variant(control, eval_kwargs)
        if control == "history_masking" and eval_kwargs["candidates"] == "sampled":
            variants[label] = {"skipped": "sampled candidates never include history items"}
            continue
        if control == "history_masking" and model.never_lists_history:
            variants[label] = {"skipped": f"{type(model).__name__}'s decoding never lists history items"}
            continue
        if kwargs["candidates"] == "sampled":
            try:  # a catalogue too small for the negatives: say so, do not fail the finished run
                sample_candidates(histories, targets, model.n_items, kwargs["num_negatives"], kwargs["negative_seed"])
            except ValueError as err:
                variants[label] = {"skipped": str(err)}
                continue
        result = evaluate(model, histories, targets, **{**kwargs, "progress": False})
        variants[label] = {"evaluation": result.settings, "metrics": result.metrics}
    return variants


def cold_start_result(split, users: np.ndarray, test: EvalResult) -> tuple[dict, EvalResult, np.ndarray]:
    """The cold-start measurement: the test result restricted to the evaluated users whose test
    target is a held-out item (the record's metrics), with the held-out items and the metrics of
    all evaluated users and of the other users beside it (from the same per-user values)."""
    cold = np.isin(split.test_targets[users], split.held_out_items)
    if not cold.any():
        raise ConfigError(f"no evaluated user's test target is one of the {len(split.held_out_items)} "
                          "held-out items: raise split.holdout_items or evaluate more users")
    means = lambda rows: {k: float(v[rows].mean()) for k, v in test.per_user.items()} if rows.any() else None  # noqa: E731
    info = {
        "users": f"{int(cold.sum())} of {len(users)} evaluated users: those whose test target is one of "
                 f"the {len(split.held_out_items)} items held out of training (cold start)",
        "n_users": int(cold.sum()),
        "held_out_items": split.held_out_items.tolist(),
        "metrics_all_users": test.metrics,
        "metrics_other_users": means(~cold),
    }
    restricted = EvalResult(ranks=test.ranks[cold], per_user={k: v[cold] for k, v in test.per_user.items()},
                            metrics=means(cold), settings={**test.settings, "n_users": int(cold.sum())})
    return info, restricted, users[cold]


def run_plan(plan: Plan, runner: Runner, *, keep_going: bool = False) -> list[dict]:
    from tqdm.auto import tqdm

    records, failures = [], []
    for spec in tqdm(plan.runs, desc="runs", disable=not runner.progress):
        done = not runner.force and runner.is_done(spec)
        tqdm.write(f"[run] {spec.key}: {'already done, skipped' if done else 'running'}")
        try:
            records.append(runner.run(spec))
        except Exception:
            if not keep_going:
                raise
            failures.append(spec.key)
            tqdm.write(traceback.format_exc())
    if failures:
        raise RuntimeError(f"{len(failures)} run(s) failed: {', '.join(failures)}")
    return records
