"""Trained models kept on disk, and timed again in one sitting (`--keep-models`, `--retime`).

A latency table compares times, so its rows must be timed on one device, by one timer, on a quiet
machine. A campaign that trains for days on CPU (Tables 1, 2, 4 and 5 on ml-100k) spans sittings,
and the machine under a sitting may change or be busy. With `--keep-models` every run that trains
keeps its trained model (the whole Recommender, with whatever its fit built, by `torch.save`)
under `.cache/trained/`, keyed by the run and its config's identity, with the time its record was
finished, so that a model from another training of the run (a later --force without
--keep-models) is never timed in place of the record's. `--retime` then goes through the
planned runs that have a finished record: it loads each kept model, times it again exactly as the
run did after training (`measurements.measure_timing`: as published, then each inference setting,
whose metrics come again with it), and rewrites the record's `latency` and `inference_settings`;
what they replaced, and when and where the new times were taken, stay in the record's `retimed`.
Nothing else of the record changes (its metrics, training and per-user ranks are the training
sitting's). A kept model is pickled Python: loading it runs the suite's own code, so load only
files this checkout wrote; it is loaded by the code of the checkout that retimes it.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .config import RunSpec, identity_hash
from .evaluate import evaluation_settings, user_subset
from .latency import device_description
from .measurements import measure_timing
from .records import atomic_write, git_commit, now, read_per_user, read_record, write_record

DEFAULT_FOLDER = Path(".cache") / "trained"


def kept_model_path(folder: Path, spec: RunSpec) -> Path:
    """Where a run's trained model is kept: named by the run and its config's identity (as its
    record is found: where the data lie, the device and the threads are not part of it, so a
    retime may give other threads, which its record then names)."""
    name = f"{spec.experiment}__{spec.dataset}__{spec.run}__seed{spec.seed}"
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return Path(folder) / f"{safe}__{identity_hash(spec.config)}.pt"


def keep_model(folder: Path, spec: RunSpec, model, record: dict) -> Path | None:
    """Save the trained model for a later `--retime`, with the time its record was finished; a
    model that cannot be pickled is warned about and not kept (its run is recorded all the same)."""
    path = kept_model_path(folder, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda tmp: torch.save({"record_finished": record.get("finished"), "model": model}, tmp))
    except Exception as err:  # noqa: BLE001 - keeping is optional: the record is what counts
        warnings.warn(f"{spec.key}: the trained model could not be kept for --retime "
                      f"({type(err).__name__}: {err})", RuntimeWarning, stacklevel=2)
        return None
    return path


def retime(runner, spec: RunSpec, folder: Path) -> dict:
    """Time one run's kept model again and rewrite its record's latency; the new record. Raises
    LookupError where the run has no finished record or no kept model."""
    record = runner.done_record(spec)
    if record is None:
        raise LookupError("no finished record of this run: train it first (without --retime)")
    path = kept_model_path(folder, spec)
    if not path.is_file():
        raise LookupError(f"no kept model at {path}: train the run with --keep-models (and --force where its "
                          "record exists) to time it again later")
    ctx = runner.prepare(spec)  # seeds, threads, device, data and split, as the run had them
    kept = torch.load(path, map_location=ctx.device, weights_only=False)  # the suite's own file
    if kept.get("record_finished") != record.get("finished"):
        raise LookupError(f"the model kept at {path} is from another training of this run (its record finished "
                          f"{kept.get('record_finished')}, the record here {record.get('finished')})")
    model = kept["model"]
    eval_kwargs = evaluation_settings(ctx.cfg["eval"])
    timed_users = user_subset(ctx.split.n_users, eval_kwargs.pop("max_users"), eval_kwargs.pop("user_subset_seed"))
    eval_kwargs["progress"] = runner.progress
    try:
        users = read_per_user(runner.path(spec))["user_index"]  # the record's users (cold start: the held-out ones)
    except OSError as err:
        raise LookupError(f"the record's per-user file cannot be read ({err}): its users are not known") from None
    latency, settings = measure_timing(model, ctx.split, ctx.cfg, eval_kwargs, users, timed_users)
    replaced = {key: record.get(key) for key in ("latency", "inference_settings")}
    record = {k: v for k, v in record.items() if k not in ("inference_settings", "retimed")}
    record.update({"latency": latency, **({"inference_settings": settings} if settings else {}),
                   "retimed": {"at": now(), "environment": {**device_description(ctx.device), "git": git_commit()},
                               "replaced": replaced}})
    write_record(runner.path(spec), record)  # the per-user ranks stay as trained and measured
    return read_record(runner.path(spec))


def retime_plan(plan, runner, folder: Path, say=print) -> list[tuple[str, str]]:
    """Every planned run timed again from its kept model, one after the other; (run, why) for
    each that could not be."""
    missing = []
    for spec in plan.runs:
        try:
            record = retime(runner, spec, folder)
        except LookupError as why:
            say(f"[retime] {spec.key}: not timed again: {why}")
            missing.append((spec.key, str(why)))
            continue
        latency = record.get("latency") or {}
        shown = f"{latency['ms_per_batch_median']:.2f} ms a batch" if latency else "nothing to time"
        say(f"[retime] {spec.key}: {shown} on {latency.get('device_name', 'n/a')}")
    return missing
