"""The shared runner: for each planned run (benchmarks/planning.py) the same phases for every
model: prepare (seed, device, data, split), train (the model's fit on the training split),
measure (test and validation metrics, protocol controls, latency, input length) and record (one
JSON record and its per-user ranks, written atomically)."""
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
from .errors import ConfigError
from .evaluate import EvalResult, control_variant, evaluate, evaluation_settings, sample_candidates, user_subset
from .latency import device_description, measure_latency
from .models import SkipRun, build_model
from .planning import Plan
from .records import code_hash, git_commit, library_versions, now, read_record, record_path, write_record
from .split import hold_out_items, leave_one_out
from .training import Trainer


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
    def __init__(self, results_dir: str | Path = "results", force: bool = False, progress: bool = True, *,
                 checkpoint_minutes: float | None = None, checkpoint_dir: str | Path = ".cache/checkpoints"):
        self.results_dir = Path(results_dir)
        self.force = force
        self.progress = progress
        self.checkpoint_minutes = checkpoint_minutes  # None: no training checkpoints (Trainer)
        self.checkpoint_dir = Path(checkpoint_dir)
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
        if identity_hash(with_new_defaults(record["config"])) != identity_hash(spec.config):
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

    def done_record(self, spec: RunSpec) -> dict | None:
        """The finished record of this run, read once, or None (forced, absent, another run's,
        or a skip)."""
        if self.force:
            return None
        record = read_record(self.path(spec))
        return record if self.same_run(record, spec) and record.get("status") == "ok" else None

    def run(self, spec: RunSpec) -> dict:
        """Run one spec, or return its existing record when it is already done (unless forced).
        The phases: prepare (seed, device, data, split), train, measure, record."""
        done = self.done_record(spec)
        if done is not None:
            return done
        ctx = self.prepare(spec)
        try:
            ctx.model = build_model(ctx.cfg["model"], ctx.dataset, ctx.device)
            ctx.training = self.train(ctx)
        except SkipRun as reason:
            return self.record_skip(ctx, str(reason))
        return self.record(ctx, self.measure(ctx))

    def prepare(self, spec: RunSpec) -> "RunContext":
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
            "experiment": spec.experiment, "run": spec.run, "dataset": spec.dataset, "seed": spec.seed,
            "model": cfg["model"]["name"], "paper_table": spec.paper_table,
            "config": cfg, "config_hash": config_hash(cfg),
            "data": {"name": dataset.name, "source": dataset.source, "paper_name": cfg["data"]["paper_name"],
                     "stats": dataset.stats, "source_hash": dataset.source_hash,
                     "content_hash": dataset.content_hash, "settings": dataset.settings},
            "environment": {**device_description(device), "libraries": library_versions(), "git": git_commit()},
            "started": now(),
        }
        return RunContext(spec, cfg, device, dataset, split, base)

    def checkpoint_path(self, spec: RunSpec) -> Path:
        """Where a run's training checkpoints go: named by the run, its config and the code, so a
        checkpoint is only ever resumed by the same run of the same code."""
        name = f"{spec.experiment}__{spec.dataset}__{spec.run}__seed{spec.seed}"
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        return self.checkpoint_dir / f"{safe}__{config_hash(spec.config)}__{code_hash()}.pt"

    def train(self, ctx: "RunContext") -> dict:
        """The model's fit on the training split (no test part) with the shared trainer."""
        trainer = Trainer(ctx.cfg["train"], ctx.cfg["eval"], seed=ctx.cfg["seed"], progress=self.progress,
                          checkpoint=self.checkpoint_path(ctx.spec), checkpoint_minutes=self.checkpoint_minutes)
        t0 = time.perf_counter()
        training = ctx.model.fit(ctx.split.for_training(), trainer) or {}
        training.setdefault("seconds", time.perf_counter() - t0)
        return training

    def measure(self, ctx: "RunContext") -> dict:
        """Test metrics (and the per-user ranks), validation metrics, protocol controls, latency
        and input length of the trained model, with the evaluation settings read once."""
        model, split, cfg = ctx.model, ctx.split, ctx.cfg
        eval_kwargs = evaluation_settings(cfg["eval"])
        users = user_subset(split.n_users, eval_kwargs.pop("max_users"), eval_kwargs.pop("user_subset_seed"))
        eval_kwargs["progress"] = self.progress
        test_histories = [split.test_histories[u] for u in users]
        t0 = time.perf_counter()
        test = evaluate(model, test_histories, split.test_targets[users], **eval_kwargs)
        eval_seconds = time.perf_counter() - t0
        cold_start = None
        if len(split.held_out_items):
            cold_start, test, users = cold_start_result(split, users, test)
        valid = evaluate(model, [split.valid_histories[u] for u in users], split.valid_targets[users], **eval_kwargs)
        protocol_variants = measure_protocol_controls(
            model, [split.test_histories[u] for u in users], split.test_targets[users],
            cfg["eval"]["protocol_controls"], eval_kwargs)
        latency = None
        if cfg["latency"]["enabled"]:
            lat = cfg["latency"]
            latency = measure_latency(model, test_histories, batch_size=lat["batch_size"], top_k=lat["top_k"],
                                      warmup_batches=lat["warmup_batches"], max_batches=lat["max_batches"],
                                      mask_history=eval_kwargs["mask_history"])
        measured = {
            "evaluation": {**test.settings, "users": "all" if len(users) == split.n_users else
                           f"seeded subset of {len(users)} of {split.n_users}", "seconds": eval_seconds},
            "metrics": test.metrics,
            "valid_metrics": valid.metrics,
            "protocol_variants": protocol_variants,
            "latency": latency,
            "input_length": {"mean": float(np.mean(model.input_length(test_histories))),
                             "unit": getattr(model, "input_unit", "items")},
            "per_user": {"user_index": users, "rank": test.ranks},
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
        checkpoint = self.checkpoint_path(ctx.spec)
        for path in checkpoint.parent.glob(checkpoint.name + "*"):  # this run's stages: no longer needed
            path.unlink()
        return record

    def record_skip(self, ctx: "RunContext", reason: str) -> dict:
        """A run that cannot run here is recorded with the reason; skipped again for the same
        reason, its record stands as it was."""
        path = self.path(ctx.spec)
        previous = read_record(path)
        if self.same_run(previous, ctx.spec) and previous.get("status") == "skipped" and previous.get("skip_reason") == reason:
            return previous
        record = {**ctx.base, "status": "skipped", "skip_reason": reason, "finished": now()}
        write_record(path, record)
        return record


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
        done = runner.done_record(spec)
        tqdm.write(f"[run] {spec.key}: {'already done, skipped' if done is not None else 'running'}")
        if done is not None:
            records.append(done)
            continue
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
