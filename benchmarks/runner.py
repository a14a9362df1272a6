"""The shared runner: for each planned run (benchmarks/planning.py) the same phases for every
model: prepare (seed, device, data, split), train (the model's fit on the training split),
measure (test and validation metrics, protocol controls, latency, input length) and record (one
JSON record and its per-user ranks, written atomically). Where the record goes: the run's main
record, or a variant beside it when its config differs from its experiment file's
(`placement`, benchmarks/variants.py). A run that fails under --keep-going leaves a failure
record (its error and traceback), retried on the next call like a skip. Under data parallel
training (benchmarks/data_parallel.py) every process goes through the runs; those of the shared
loop train in all, the others in the main process alone, which alone measures and records."""
from __future__ import annotations

import json
import random
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import RunSpec, config_hash, identity_hash, with_new_defaults
from .data import DataError, SequenceDataset, load_dataset, source_hash
from .data_parallel import DataParallel, data_parallel
from .errors import ConfigError
from .evaluate import evaluate, evaluation_settings, user_arguments, user_subset, validation_users
from .latency import device_description
from .measurements import cold_start_result, measure_protocol_controls, measure_timing
from .models import SkipRun, build_model, model_class, model_params
from .records import (git_commit, iter_records, library_versions, now, program_hash, read_record, record_path,
                      write_record)
from .split import hold_out_items, leave_one_out
from .training import NeuralRecommender, Trainer
from .variants import SOURCE_HASH, parse_record_name, variant_tag


def resolve_device(name: str, parallel: DataParallel | None = None) -> torch.device:
    """The device a run asks for; under data parallel training, `cuda` is this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    if parallel is not None and device.type == "cuda":
        return parallel.device
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class Runner:
    def __init__(self, results_dir: str | Path = "results", force: bool = False, progress: bool = True, *,
                 checkpoint_minutes: float | None = None, checkpoint_dir: str | Path = ".cache/checkpoints",
                 keep_models: str | Path | None = None):
        self.results_dir = Path(results_dir)
        self.force = force
        self.progress = progress
        self.checkpoint_minutes = checkpoint_minutes  # None: no training checkpoints (Trainer)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.keep_models = None if keep_models is None else Path(keep_models)  # where trained models are kept
        self._datasets: dict[str, SequenceDataset] = {}
        self._source_hashes: dict[str, str | None] = {}
        self._recorded_hashes: dict[str, set[str]] | None = None
        self._placements: dict[int, tuple[RunSpec, str | None, dict]] = {}
        self.current: RunContext | None = None  # the run in progress (its failure record reads it)
        self.parallel = data_parallel()  # None: this process runs alone
        self.is_main = self.parallel is None or self.parallel.is_main  # measures, records, shows progress
        self.progress = progress and self.is_main

    def dataset(self, data_cfg: dict) -> SequenceDataset:
        key = json.dumps(data_cfg, sort_keys=True)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(data_cfg, verbose=self.progress)
        return self._datasets[key]

    def path(self, spec: RunSpec) -> Path:
        return record_path(self.results_dir, spec.experiment, spec.dataset, spec.run, spec.seed, self.placement(spec)[0])

    def placement(self, spec: RunSpec) -> tuple[str | None, dict]:
        """(variant tag or None for the main record, the differences from the experiment file):
        the planned differences, and the data's where the run reads another folder whose files
        hash otherwise than the experiment's own."""
        known = self._placements.get(id(spec))
        if known is None or known[0] is not spec:  # held with its spec: an id is not reused meanwhile
            differs = dict(spec.differs)
            data = self.data_difference(spec)
            if data is not None:
                differs[SOURCE_HASH] = data
            tag = variant_tag(differs, tag=spec.tag, set_name=spec.set_name, set_keys=spec.set_keys)
            self._placements[id(spec)] = known = (spec, tag, differs)
        return known[1], known[2]

    def data_difference(self, spec: RunSpec) -> list | None:
        """[the experiment's source hash, this run's] where the run's data folder is not the
        experiment's own and its files hash otherwise than the preset's folder (or, where that
        folder is not here, than every main record of the dataset says); None where they are the
        same, or nothing here says what the dataset's files are."""
        reference, data = spec.reference_data, spec.config["data"]
        if reference is None or reference.get("path") == data.get("path"):
            return None
        mine = self.source_hash_of(data)
        if mine is None:  # no files there: the run stops at loading them
            return None
        preset = self.source_hash_of(reference)
        known = {preset} if preset else self.recorded_source_hashes().get(spec.dataset, set())
        if not known or mine in known:
            return None
        return [" or ".join(sorted(h[:16] for h in known)), mine[:16]]

    def source_hash_of(self, data: dict) -> str | None:
        key = json.dumps(data, sort_keys=True)
        if key not in self._source_hashes:
            try:
                self._source_hashes[key] = source_hash(data)
            except (DataError, OSError):  # no files here to compare: not known to be the same
                self._source_hashes[key] = None
        return self._source_hashes[key]

    def recorded_source_hashes(self) -> dict[str, set[str]]:
        """dataset -> the source hashes of its main records in results_dir (read once)."""
        if self._recorded_hashes is None:
            self._recorded_hashes = {}
            for path, record in iter_records(self.results_dir):
                parsed = parse_record_name(path.name)
                found = (record.get("data") or {}).get("source_hash")
                if parsed and parsed[2] is None and found and record.get("dataset"):
                    self._recorded_hashes.setdefault(record["dataset"], set()).add(found)
        return self._recorded_hashes

    def same_run(self, record: dict | None, spec: RunSpec) -> bool:
        """Whether a record is of this run: the same resolved config, or the same config but for
        the run-neutral keys (where the cache lies), or with the data read from another folder
        holding the same source files (records made on a GPU machine from a copied data folder,
        merged here)."""
        if record is None or "config" not in record:
            return False
        if record.get("config_hash") == config_hash(spec.config):
            return True
        if identity_hash(with_new_defaults(record["config"])) != identity_hash(spec.config):
            return False
        data = spec.config["data"]
        if record["config"]["data"].get("path") == data.get("path"):
            return True
        mine = self.source_hash_of(data)
        return mine is not None and mine == (record.get("data") or {}).get("source_hash")

    def is_done(self, spec: RunSpec) -> bool:
        """A finished record of this run. A skip is not done: what was missing (a backbone's
        weights) may be here now, and finding out again costs no training."""
        record = read_record(self.path(spec))
        return self.same_run(record, spec) and record.get("status") == "ok"

    def expected_seconds(self, spec: RunSpec) -> float | None:
        """What this run is expected to cost: the training and evaluation seconds of the record at
        its path, or else at its main record's (from any config or device: a guide to order runs
        by, not a promise), or None where no finished record is there."""
        record = read_record(self.path(spec))
        if not record or record.get("status") != "ok":
            record = read_record(record_path(self.results_dir, spec.experiment, spec.dataset, spec.run, spec.seed))
        if not record or record.get("status") != "ok":
            return None
        latency = record.get("latency") or {}
        timed = (latency.get("n_batches", 0) + latency.get("warmup_batches", 0)) * latency.get("ms_per_batch_median", 0.0) / 1e3
        return float((record.get("training") or {}).get("seconds") or 0.0) + \
            float((record.get("evaluation") or {}).get("seconds") or 0.0) + timed

    def skip_note(self, spec: RunSpec) -> str | None:
        """'to retry (skipped: why)' or 'to retry (failed: error)' where this run's last attempt
        was skipped or failed."""
        record = read_record(self.path(spec))
        if self.same_run(record, spec) and record.get("status") == "skipped":
            return f"to retry (skipped: {record.get('skip_reason')})"
        if self.same_run(record, spec) and record.get("status") == "failed":
            return f"to retry (failed: {record.get('error')})"
        return None

    def done_record(self, spec: RunSpec) -> dict | None:
        """The finished record of this run, read once, or None (forced, absent, another run's,
        or a skip)."""
        if self.force:
            return None
        record = read_record(self.path(spec))
        return record if self.same_run(record, spec) and record.get("status") == "ok" else None

    def finished(self, spec: RunSpec) -> dict | None:
        """done_record; under data parallel training as the main process finds it (a record
        written meanwhile by another job must not part the processes; the others get {})."""
        done = self.done_record(spec)
        if self.parallel is None:
            return done
        if not self.parallel.agree(done is not None):
            return None
        return done if done is not None else {}

    def run(self, spec: RunSpec) -> dict:
        """Run one spec, or return its existing record when it is already done (unless forced).
        The phases: prepare (seed, device, data, split), train, measure, record. A data parallel
        process other than the main one trains and returns {}: the main process measures."""
        done = self.finished(spec)
        if done is not None:
            return done
        if not self.is_main and not issubclass(model_class(spec.config["model"]["name"]), NeuralRecommender):
            return {}  # a model outside the shared loop trains in the main process alone
        self.current = None
        ctx = self.prepare(spec)
        check_item_text(ctx.cfg, ctx.dataset)
        try:
            ctx.model = build_model(ctx.cfg["model"], ctx.dataset, ctx.device)
            ctx.training = self.train(ctx)
        except SkipRun as reason:
            return self.record_skip(ctx, str(reason))
        if not self.is_main:
            return {}
        record = self.record(ctx, self.measure(ctx))
        if self.keep_models is not None:  # for a later --retime (benchmarks/kept_models.py)
            from .kept_models import keep_model
            keep_model(self.keep_models, spec, ctx.model, record)
        return record

    def identity(self, spec: RunSpec) -> dict:
        """What every record of the run starts with: which run, its config, where it goes."""
        cfg = spec.config
        base = {"experiment": spec.experiment, "run": spec.run, "dataset": spec.dataset, "seed": spec.seed,
                "model": cfg["model"]["name"], "paper_table": spec.paper_table,
                "config": cfg, "config_hash": config_hash(cfg)}
        tag, differs = self.placement(spec)
        if tag:
            base["variant"] = {"tag": tag, "differs": differs}
        if spec.experiment_file:
            base["experiment_file"] = spec.experiment_file
        if spec.tuning:  # the finished study whose best settings the config holds
            base["tuning"] = spec.tuning
        return base

    def prepare(self, spec: RunSpec) -> "RunContext":
        cfg = spec.config
        seed_everything(cfg["seed"])
        if cfg["num_threads"]:
            torch.set_num_threads(int(cfg["num_threads"]))
        device = resolve_device(cfg["device"], self.parallel)
        dataset = self.dataset(cfg["data"])
        split = leave_one_out(dataset)
        holdout = cfg.get("split", {}).get("holdout_items")
        if holdout:  # cold start: some items never seen in training (see hold_out_items)
            split = hold_out_items(split, holdout, cfg["split"]["holdout_seed"])
        base = {
            **self.identity(spec),
            "data": {"name": dataset.name, "source": dataset.source, "paper_name": cfg["data"]["paper_name"],
                     "stats": dataset.stats, "source_hash": dataset.source_hash,
                     "content_hash": dataset.content_hash, "settings": dataset.settings},
            "environment": {**device_description(device), "libraries": library_versions(), "git": git_commit()},
            "started": now(),
        }
        self.current = RunContext(spec, cfg, device, dataset, split, base)
        return self.current

    def checkpoint_path(self, spec: RunSpec) -> Path:
        """Where a run's training checkpoints go: named by the run, its config and the Python code
        (records.program_hash), so a checkpoint is only ever resumed by the same run of the same code."""
        name = f"{spec.experiment}__{spec.dataset}__{spec.run}__seed{spec.seed}"
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        return self.checkpoint_dir / f"{safe}__{config_hash(spec.config)}__{program_hash()}.pt"

    def remove_checkpoints(self, spec: RunSpec) -> None:
        """A finished run's training checkpoints (every stage's): no longer needed."""
        checkpoint = self.checkpoint_path(spec)
        for path in checkpoint.parent.glob(checkpoint.name + "*"):
            path.unlink()

    def train(self, ctx: "RunContext", on_validation=None) -> dict:
        """The model's fit on the training split (no test part) with the shared trainer;
        `on_validation(metrics, epoch, seconds)` hears every validation (a tuning trial's pruning)."""
        trainer = Trainer(ctx.cfg["train"], ctx.cfg["eval"], seed=ctx.cfg["seed"], progress=self.progress,
                          checkpoint=self.checkpoint_path(ctx.spec), checkpoint_minutes=self.checkpoint_minutes,
                          on_validation=on_validation)
        t0 = time.perf_counter()
        training = ctx.model.fit(ctx.split.for_training(), trainer) or {}
        training.setdefault("seconds", time.perf_counter() - t0)
        training.setdefault("processes", 1)  # a model outside the shared loop trains in one process
        return training

    def measure(self, ctx: "RunContext") -> dict:
        """Test metrics (and the per-user ranks), validation metrics, protocol controls, latency
        and input length of the trained model, with the evaluation settings read once."""
        model, split, cfg = ctx.model, ctx.split, ctx.cfg
        eval_kwargs = evaluation_settings(cfg["eval"])
        users = user_subset(split.n_users, eval_kwargs.pop("max_users"), eval_kwargs.pop("user_subset_seed"))
        eval_kwargs["progress"] = self.progress
        test_users = users  # every evaluated user (cold start restricts `users` below): timed and counted
        test_histories = [split.test_histories[u] for u in users]
        t0 = time.perf_counter()
        test = evaluate(model, test_histories, split.test_targets[users], **eval_kwargs, users=users)
        eval_seconds = time.perf_counter() - t0
        cold_start = None
        if len(split.held_out_items):
            cold_start, test, users = cold_start_result(split, users, test)
        own_valid_users = cfg["eval"].get("valid_max_users") is not None  # its own subset, as in training
        # the users training validated on (cold start: all of them, not the test's restricted ones)
        valid_users = validation_users(split.n_users, cfg["eval"])
        valid = evaluate(model, [split.valid_histories[u] for u in valid_users], split.valid_targets[valid_users],
                         **eval_kwargs, users=valid_users)
        protocol_variants = measure_protocol_controls(
            model, [split.test_histories[u] for u in users], split.test_targets[users],
            cfg["eval"]["protocol_controls"], eval_kwargs, users=users)
        latency, settings = measure_timing(model, split, cfg, eval_kwargs, users, test_users)
        measured = {
            "evaluation": {**test.settings, "users": "all" if len(users) == split.n_users else
                           f"seeded subset of {len(users)} of {split.n_users}", "seconds": eval_seconds,
                           **({"valid_users": f"seeded subset of {len(valid_users)} of {split.n_users}"}
                              if own_valid_users else {}),
                           # near 0: one ranking for every user (evaluate.score_spread)
                           **({"user_spread": test.user_spread} if test.user_spread is not None else {})},
            "metrics": test.metrics,
            "valid_metrics": valid.metrics,
            "protocol_variants": protocol_variants,
            "latency": latency,
            **({"inference_settings": settings} if settings else {}),
            "input_length": {"mean": float(np.mean(model.input_length(
                test_histories, **user_arguments(model, test_users, len(test_users))))),
                             "unit": getattr(model, "input_unit", "items")},
            "per_user": {"user_index": users, "rank": test.ranks, "valid_user_index": valid_users, "valid_rank": valid.ranks},
        }
        if cold_start is not None:
            measured["evaluation"]["users"] = cold_start["users"]
            measured["cold_start"] = cold_start
        return measured

    def record(self, ctx: "RunContext", measured: dict) -> dict:
        per_user, cold_start = measured.pop("per_user"), measured.pop("cold_start", None)
        record = {**ctx.base, "status": "ok", **measured, "training": ctx.training,
                  "model_info": ctx.model.describe(), "finished": now()}
        if cold_start is not None:
            record["cold_start"] = cold_start
        write_record(self.path(ctx.spec), record, per_user)
        self.remove_checkpoints(ctx.spec)
        return record

    def record_skip(self, ctx: "RunContext", reason: str) -> dict:
        """A run that cannot run here is recorded with the reason; skipped again for the same
        reason, its record stands as it was."""
        if not self.is_main:
            return {}
        path = self.path(ctx.spec)
        previous = read_record(path)
        if self.same_run(previous, ctx.spec) and previous.get("status") == "skipped" and previous.get("skip_reason") == reason:
            return previous
        record = {**ctx.base, "status": "skipped", "skip_reason": reason, "finished": now()}
        write_record(path, record)
        return record

    def record_failure(self, spec: RunSpec, error: BaseException) -> Path | None:
        """A failed run's record: its error and traceback, and as much of the run as was known
        (its data, where it got that far). It never replaces a finished record (of an older
        config, or one --force was redoing): a failure must not cost a result. Returns the path
        written, or None."""
        if not self.is_main:
            return None
        path = self.path(spec)
        previous = read_record(path)
        if previous is not None and previous.get("status") == "ok":
            return None
        ctx = self.current if self.current is not None and self.current.spec is spec else None
        base = ctx.base if ctx is not None else {
            **self.identity(spec), "environment": {"libraries": library_versions(), "git": git_commit()}}
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        write_record(path, {**base, "status": "failed", "error": f"{type(error).__name__}: {error}",
                            "traceback": trace, "finished": now()})
        return path


@dataclass
class RunContext:
    """What one run carries from phase to phase."""

    spec: RunSpec
    cfg: dict
    device: torch.device
    dataset: SequenceDataset
    split: object
    base: dict                    # the record's identity: run, config, data, environment
    model: object = None
    training: dict = field(default_factory=dict)


def check_item_text(cfg: dict, dataset: SequenceDataset) -> None:
    """A model that reads item text refuses a dataset where most items have only the fallback
    text (it would read ids dressed as text), unless data.allow_missing_text says to go on."""
    missing = int((dataset.stats or {}).get("items_without_text", 0))
    if cfg["data"].get("allow_missing_text") or missing * 2 <= dataset.n_items:
        return
    cls = model_class(cfg["model"]["name"])
    if cls.reads_item_text(model_params(cls, cfg["model"])):
        raise DataError(f"{missing:,} of the {dataset.n_items:,} items of dataset {dataset.name!r} have no text of "
                        f"their own, only the fallback {cfg['data'].get('missing_text')!r}, and model "
                        f"{cfg['model']['name']!r} reads item text; give the items' text (for ml-1m: movies.dat), "
                        "or set data.allow_missing_text=true (-o data.allow_missing_text=true) to run it anyway")
