"""A plan's runs one after another (run_plan): the line each prints, and what --keep-going does
with a run that raises (its failure record, the other runs go on). One run's phases are
benchmarks/runner.py's; under data parallel training every process goes through the same list,
and the main process alone speaks."""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

from .planning import Plan
from .runner import Runner


@dataclass
class Failure:
    """A run that raised under --keep-going: its key, its error, and its failure record (None
    where a finished record was there and kept)."""

    key: str
    error: str
    record: Path | None


def run_plan(plan: Plan, runner: Runner, *, keep_going: bool = False) -> tuple[list[dict], list[Failure]]:
    """Run every planned run; (the records, the failures). Without keep_going the first failure
    propagates; with it each failure is recorded and the other runs go on."""
    from tqdm.auto import tqdm

    records, failures = [], []
    for spec in tqdm(plan.runs, desc="runs", disable=not runner.progress):
        done = runner.finished(spec)
        tag = runner.placement(spec)[0]
        label = spec.key + (f" (variant {tag})" if tag else "")
        if runner.is_main:
            tqdm.write(f"[run] {label}: {'already done, skipped' if done is not None else 'running'}"
                       + (f" ({spec.study.note})" if spec.study is not None else ""))
        if done is not None:
            records.append(done)
            continue
        try:
            records.append(runner.run(spec))
        except Exception as error:
            if not keep_going:
                raise
            tqdm.write(traceback.format_exc())
            failures.append(Failure(label, f"{type(error).__name__}: {error}", runner.record_failure(spec, error)))
    return records, failures
