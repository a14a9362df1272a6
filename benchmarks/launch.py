"""Scaling out: a plan's runs as jobs on a Slurm cluster (or as processes here) through submitit,
and the shards of `--shard I/N` for job scripts written by hand.

    python run_all.py --set gpu --device cuda --launcher slurm --slurm-partition gpu
    python run_all.py --launcher local --experiments table3_overall --runs MostPopular,GRU4Rec -o train.epochs=1

`--launcher` plans as every call does, keeps the runs without a finished record (a cancelled
array submitted again submits only what is missing) and cuts them into tasks: one run each, or,
under `--slurm-time-per-run`, runs expected to take much less sharing a task up to that limit.
Each task is given its runs' keys and runs them with the normal runner into the one results
folder. Slurm: one job array per time limit (a task's limit comes from its runs' expected cost:
recorded seconds, else the model family's declared estimate), then a report job that waits for
every task to end (`afterany`) and rebuilds the reports once. Local: the same tasks as processes
here, at most `--max-parallel` at once; the submitting process waits for them and then builds the
reports once. A task with `--slurm-gpus-per-run G` above 1 starts G processes that train data
parallel (benchmarks/data_parallel.py).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import RunSpec, config_hash
from .errors import ConfigError
from .planning import Plan, expected_cost, parse_shard, shard_assignment, shard_plan

# A task's time limit: its runs' expected seconds with a margin (estimates are guides, and a
# task also loads its data and imports its libraries), rounded up to a few tiers so that tasks
# of similar cost share one job array (an array has one time limit).
SAFETY_FACTOR = 1.5
STARTUP_SECONDS = 600
TIME_TIERS_MINUTES = (30, 60, 120, 240, 480, 720, 1440, 2880, 4320)
REPORT_JOB_MINUTES = 60


def check_launcher_args(args) -> None:
    from .data_parallel import world_size_from_environment

    if args.shard:
        raise ConfigError("--launcher submits the plan's runs itself: give it without --shard")
    if args.report_only:
        raise ConfigError("--report-only builds the reports here: give it without --launcher")
    if args.slurm_gpus_per_run < 0:
        raise ConfigError(f"--slurm-gpus-per-run must be >= 0, got {args.slurm_gpus_per_run}")
    if args.slurm_time_per_run is not None and not args.slurm_time_per_run > 0:
        raise ConfigError(f"--slurm-time-per-run must be a number of minutes > 0, got {args.slurm_time_per_run}")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise ConfigError(f"--max-parallel must be >= 1, got {args.max_parallel}")
    slurm_options(args)
    if args.launcher == "slurm" and not args.list and shutil.which("sbatch") is None:
        raise ConfigError("--launcher slurm: no sbatch here; submit from a machine of the Slurm cluster "
                          "(--launcher local runs the same jobs on this machine)")
    if world_size_from_environment() > 1:
        raise ConfigError("--launcher submits jobs: start it as one process, not under accelerate launch")
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError("--launcher needs submitit: pip install submitit") from None


def slurm_options(args) -> dict[str, str]:
    options = {}
    for text in args.slurm_option:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--slurm-option must be KEY=VALUE (an sbatch option: account=proj), got {text!r}")
        options[key.strip()] = value.strip()
    return options


@dataclass
class Task:
    """One job (one array task): runs that go together, their expected seconds, its time limit."""

    specs: list[RunSpec]
    seconds: float
    minutes: int

    @property
    def keys(self) -> list[str]:
        return [spec.key for spec in self.specs]

    def describe(self) -> str:
        return f"{len(self.specs)} run(s), expected ~{self.seconds / 60:,.0f} min, limit {self.minutes} min: " + \
            ", ".join(self.keys)


def padded_minutes(seconds: float) -> float:
    return (SAFETY_FACTOR * seconds + STARTUP_SECONDS) / 60


def time_limit(seconds: float) -> int:
    """The time tier (minutes) that holds a task expected to take `seconds`, with its margin."""
    needed = padded_minutes(seconds)
    return next((tier for tier in TIME_TIERS_MINUTES if tier >= needed), TIME_TIERS_MINUTES[-1])


def plan_tasks(specs: list[RunSpec], cost, time_per_run: float | None = None) -> list[Task]:
    """The tasks of the runs to submit, in plan order. Without `time_per_run`: one task per run,
    its limit from its cost. With it (minutes): every task has that limit, and each run joins the
    first task (in plan order) whose runs with it still fit under the limit with the margin; a run
    that alone does not fit gets a task of its own (and may be cut: --checkpoint-minutes lets a
    later submission resume it)."""
    costs = [float(cost(spec)) for spec in specs]
    if time_per_run is None:
        return [Task([spec], seconds, time_limit(seconds)) for spec, seconds in zip(specs, costs)]
    limit = int(math.ceil(time_per_run))
    tasks: list[Task] = []
    for spec, seconds in zip(specs, costs):
        task = next((t for t in tasks if padded_minutes(t.seconds + seconds) <= limit), None)
        if task is None:
            tasks.append(Task([spec], seconds, limit))
        else:
            task.specs.append(spec)
            task.seconds += seconds
    return tasks


def launch(args, plan: Plan, runner) -> int:
    """Submit the runs of `plan` without a finished record (see the module's docstring)."""
    plan = plan.cheapest_first(runner.expected_seconds)
    pending = [spec for spec in plan.runs if runner.done_record(spec) is None]
    tasks = plan_tasks(pending, lambda spec: expected_cost(spec, runner.expected_seconds), args.slurm_time_per_run)
    where = "Slurm" if args.launcher == "slurm" else "local processes"
    if args.list:
        print(f"[launch] {len(tasks)} task(s) for {where} ({len(plan.runs) - len(pending)} of {len(plan.runs)} "
              "run(s) recorded, not submitted):")
        for task in tasks:
            print(f"  {task.describe()}")
        return 0
    if not tasks:
        from .cli import report

        print(f"[launch] nothing to submit: all {len(plan.runs)} run(s) have records under {args.results_dir}/")
        report(args)
        return 0
    print(f"[launch] submitting {len(pending)} of {len(plan.runs)} run(s) as {len(tasks)} task(s) to {where} "
          f"(the other {len(plan.runs) - len(pending)} have records); logs under {args.launcher_folder}/")
    return submit_slurm(args, tasks) if args.launcher == "slurm" else run_local(args, tasks)


def job_parameters(args, task: Task) -> dict:
    """The resources of one task: its time limit, and G GPUs with one process each (G > 1 trains
    data parallel)."""
    params = {"timeout_min": task.minutes, "tasks_per_node": max(1, args.slurm_gpus_per_run),
              "name": "llm4rec-runs"}
    if args.slurm_gpus_per_run:
        params["gpus_per_node"] = args.slurm_gpus_per_run
    return params


def submit_slurm(args, tasks: list[Task]) -> int:
    import submitit

    folder = Path(args.launcher_folder)
    extra = slurm_options(args)
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    cluster = {"slurm_array_parallelism": args.max_parallel or 256, "slurm_additional_parameters": extra}
    if args.slurm_partition:
        cluster["slurm_partition"] = args.slurm_partition
    submitted = []
    for minutes in dict.fromkeys(task.minutes for task in tasks):  # one array per time limit
        group = [task for task in tasks if task.minutes == minutes]
        executor.update_parameters(**job_parameters(args, group[0]), **cluster)
        with executor.batch():
            jobs = [executor.submit(run_task, args, task.keys, os.getcwd()) for task in group]
        submitted += zip(jobs, group)
    for job, task in submitted:
        print(f"[launch] job {job.job_id}: {task.describe()}")
    arrays = list(dict.fromkeys(job.job_id.split("_")[0] for job, _ in submitted))
    reporter = submitit.AutoExecutor(folder=folder, cluster="slurm")
    reporter.update_parameters(name="llm4rec-reports", timeout_min=REPORT_JOB_MINUTES, tasks_per_node=1,
                               slurm_additional_parameters={**extra, "dependency": "afterany:" + ":".join(arrays)},
                               **({"slurm_partition": args.slurm_partition} if args.slurm_partition else {}))
    report_job = reporter.submit(report_task, args, os.getcwd())
    print(f"[launch] report job {report_job.job_id} starts once every task has ended (afterany:{':'.join(arrays)}) "
          f"and rebuilds {args.reports_dir}/ from {args.results_dir}/; a task cut or cancelled leaves its run "
          "without a record: the same command again submits only the runs still missing")
    return 0


def run_local(args, tasks: list[Task]) -> int:
    """The tasks as processes here (submitit's local executor), at most --max-parallel at once;
    wait for them, then build the reports once."""
    import submitit
    import torch

    from .cli import report

    executor = submitit.LocalExecutor(folder=Path(args.launcher_folder))
    parallel = args.max_parallel or 1
    gpus_here, wanted = torch.cuda.device_count(), max(1, args.slurm_gpus_per_run)
    if gpus_here and wanted > gpus_here:
        raise ConfigError(f"--slurm-gpus-per-run {wanted}: this machine has {gpus_here} GPU(s)")
    free_slots, running, ended = list(range(parallel)), [], []
    for task in tasks:
        while len(running) >= parallel:  # wait for a slot
            finished = [item for item in running if item[0].done()]
            for item in finished:
                running.remove(item)
                ended.append(item)
                free_slots.append(item[2])
            if not finished:
                time.sleep(0.2)
        slot = free_slots.pop(0)
        params = job_parameters(args, task)
        if gpus_here:  # each slot its own GPUs while there are enough (then slots share them)
            first = slot * wanted if (slot + 1) * wanted <= gpus_here else 0
            params["visible_gpus"] = list(range(first, first + wanted))
        else:  # no GPU here: the processes train on the CPU
            params.pop("gpus_per_node", None)
        executor.update_parameters(**params)
        job = executor.submit(run_task, args, task.keys, os.getcwd())
        print(f"[launch] job {job.job_id}: {task.describe()}", flush=True)
        running.append((job, task, slot))
    failed = 0
    for job, task, _ in ended + running:
        try:
            outcome = job.results()[0]  # the main process's (task 0's) result
        except Exception as error:  # the job raised, was killed or timed out: its runs have no record
            failed += 1
            print(f"[launch] job {job.job_id} failed: {str(error).strip().splitlines()[-1] if str(error).strip() else error!r}"
                  f" (log: {job.paths.stderr})", file=sys.stderr)
            continue
        failed += bool(outcome["failures"])
        states = ", ".join(f"{key} {state}" for key, state in outcome["runs"].items())
        print(f"[launch] job {job.job_id} ran in process {outcome['pid']} on {outcome['host']}: {states}")
    report(args)
    return 1 if failed else 0


def export_distributed_environment() -> None:
    """In a job of several processes (a task with G > 1 GPUs): the variables torch.distributed
    and accelerate read (rank, world size, the main node), each process keeping every GPU
    visible (accelerate picks cuda:<local rank>)."""
    import submitit
    from submitit.helpers import TorchDistributedEnvironment

    if submitit.JobEnvironment().num_tasks > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def run_task(args, keys: list[str], cwd: str) -> dict:
    """A job's work: plan as the submitting call did, run the runs named by `keys` with the normal
    runner (done ones are skipped), and say what became of each."""
    from .cli import plan_for, runner_for
    from .records import read_record
    from .runs import run_plan

    os.chdir(cwd)  # relative folders, and models named by their path, as where it was submitted
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    export_distributed_environment()
    plan = plan_for(args)
    by_key = {spec.key: spec for spec in plan.runs}
    missing = [key for key in keys if key not in by_key]
    if missing:
        raise ConfigError(f"the plan no longer has the run(s) {missing}: did the experiment files change since "
                          "the submission?")
    runner = runner_for(args)
    mine = Plan(runs=[by_key[key] for key in keys], experiments=plan.experiments, groups=plan.groups)
    _, failures = run_plan(mine, runner, keep_going=args.keep_going)
    states = {spec.key: (read_record(runner.path(spec)) or {}).get("status", "no record") for spec in mine.runs}
    return {"pid": os.getpid(), "host": socket.gethostname(), "runs": states,
            "failures": [(failure.key, failure.error) for failure in failures]}


def report_task(args, cwd: str) -> list[str]:
    """The report job: the reports rebuilt once from every record in the results folder."""
    from .cli import report

    os.chdir(cwd)
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    report(args)
    return sorted(str(path) for path in Path(args.reports_dir).glob("*.md"))


def shard_of(plan: Plan, runner, text: str, *, write: bool = True) -> Plan:
    """Shard I of N (`--shard I/N`): its part of the plan's assignment (frozen_assignment)."""
    index, count = parse_shard(text)
    return shard_plan(plan, index, count, frozen_assignment(plan, runner, count, write=write))


def frozen_assignment(plan: Plan, runner, count: int, *, write: bool = True) -> list[int]:
    """The shard of each run: balanced by expected cost (planning.shard_assignment), computed
    by the first shard to start and kept in the results folder (.shards/), so that a shard that
    starts after others have written records (which changes the costs) still takes the same part.
    Shards of one plan must therefore start against the same results folder (or identical copies
    of it). Named by the plan (its runs, their configs, the count)."""
    identity = [count] + [[spec.key, runner.placement(spec)[0], config_hash(spec.config)] for spec in plan.runs]
    digest = hashlib.sha256(json.dumps(identity, default=str).encode()).hexdigest()[:16]
    path = Path(runner.results_dir) / ".shards" / f"{digest}.assignment"
    kept = _read_assignment(path, len(plan.runs))
    if kept is not None:
        return kept
    assignment = shard_assignment(plan, count, lambda spec: expected_cost(spec, runner.expected_seconds))
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"shards": count, "runs": [[spec.key, shard] for spec, shard in
                                                             zip(plan.runs, assignment)]}, indent=1))
        try:
            os.link(tmp, path)  # the first shard's assignment stands; a later one reads it
        except FileExistsError:
            pass
        except OSError:  # no hard links here: same inputs, same assignment
            os.replace(tmp, path)
        tmp.unlink(missing_ok=True)
        return _read_assignment(path, len(plan.runs)) or assignment
    return assignment


def _read_assignment(path: Path, runs: int) -> list[int] | None:
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    shards = [shard for _, shard in kept.get("runs", [])]
    return shards if len(shards) == runs else None
