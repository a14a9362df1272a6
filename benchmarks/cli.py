"""The command line (`python run_all.py ...` and the `llm4rec-bench` console script): every value
checked before any work, a bad one answered with one line on stderr and exit code 2, never a
traceback.

    python run_all.py                                  # the default set on the embedded ml-100k
    python run_all.py --model SASRec --dataset ml-100k # one model by itself, its defaults
    python run_all.py --model mypkg.models:MyRec       # a model of your own, by its class's path
    python run_all.py --list                           # what would run, and what is already done
    python run_all.py --list-models                    # (also --list-experiments, --list-datasets)
    python run_all.py --dataset amazon-beauty --data-path /data/beauty
    python run_all.py --experiments table3_overall -o train.epochs=5   # a variant record, beside
    python run_all.py --report-only                    # rebuild reports/ from results/ only
    python run_all.py --report-only --with-variants gpu   # the gpu set's records in the tables
    python run_all.py --set gpu --device cuda --shard 2/4   # the second of four shards of equal expected cost
    python run_all.py --set gpu --device cuda --launcher slurm --slurm-partition gpu   # a Slurm job array
    accelerate launch --multi_gpu --num_processes 4 run_all.py --set gpu --device cuda   # data parallel
    python run_all.py --tune --experiments table3_overall --runs SASRec   # search its settings (Optuna)

Exit codes: 0 done; 1 some runs failed (--keep-going: each has a failure record, the others ran
and the reports were built); 2 a bad value, config or data (nothing ran past it).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import ConfigError

EXAMPLE_MODEL = "python run_all.py --model SASRec --dataset ml-100k"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_all.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", default="default", help="experiment set from benchmarks/experiments/sets.yaml")
    p.add_argument("--experiments", help="comma-separated experiment names or files (replaces the set's list)")
    p.add_argument("--model", help="run these models (comma-separated) by themselves with their defaults: a "
                                   "registered name, a RecBole model's name (SASRec) or a class's path "
                                   "(package.module:Class); records under results/quick/")
    p.add_argument("--dataset", help="comma-separated dataset presets (benchmarks/datasets.yaml)")
    p.add_argument("--data-path", help="folder of the dataset's source files (one dataset only)")
    p.add_argument("--data-root", help="folder with one sub-folder per dataset preset (e.g. data_local/ml-1m-partial); "
                                       "every preset but the embedded ml-100k is read from there")
    p.add_argument("--runs", help="comma-separated run names (table rows) to keep")
    p.add_argument("--seeds", help="comma-separated seeds (replaces the experiments' seeds)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (sets the config key device)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. train.epochs=5 (repeatable; YAML values); the records are "
                        "variants beside the experiment's own")
    p.add_argument("--tag", help="record these runs as the variant TAG (beside the main records, never over them)")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (I counts from 1): the shards split the plan "
                                                  "by expected cost; start them against the same results folder; "
                                                  "reports are then left to a final --report-only")
    p.add_argument("--list", action="store_true", help="list the runs that would run and exit")
    p.add_argument("--list-models", action="store_true", help="list the models --model accepts")
    p.add_argument("--list-experiments", action="store_true", help="list the experiments and sets")
    p.add_argument("--list-datasets", action="store_true", help="list the dataset presets")
    p.add_argument("--force", action="store_true", help="re-run runs whose records exist")
    p.add_argument("--keep-going", action="store_true", help="record a failed run and go on with the others")
    p.add_argument("--report-only", action="store_true", help="only rebuild reports from results/")
    p.add_argument("--with-variants", metavar="TAG[,TAG]",
                   help="in the reports, let the variant records of these tags stand in for their runs' main records")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--reports-dir", default="reports")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--tune", action="store_true",
                   help="run the searches of the selected rows that their experiments tune (`tuning:`), each to "
                        "its budget of trials; an interrupted search resumes, a finished one is not repeated. A "
                        "normal run then trains with the best settings found")
    p.add_argument("--tuning-storage", metavar="URL",
                   help="the Optuna storage of the studies: any database URL Optuna accepts (several machines on "
                        "one study); default sqlite:///<results-dir>/tuning/studies.db")
    p.add_argument("--checkpoint-minutes", type=float, metavar="M",
                   help="save a training checkpoint every M minutes (at an epoch's end) under "
                        ".cache/checkpoints; a later call resumes an unfinished run (or --tune trial) from it")
    p.add_argument("--keep-models", action="store_true",
                   help="keep each trained model under .cache/trained, so that --retime can time it again later")
    p.add_argument("--retime", action="store_true",
                   help="time the selected runs again from their kept models (--keep-models) in this sitting, on "
                        "this device, and rewrite their records' latency; nothing is trained")
    launcher_options(p)
    return p


def launcher_options(p: argparse.ArgumentParser) -> None:
    """Scaling out (benchmarks/launch.py): the plan's runs as submitit jobs."""
    group = p.add_argument_group("scaling out (submitit)")
    group.add_argument("--launcher", choices=("local", "slurm"),
                       help="submit the runs not yet recorded as jobs (slurm: a job array, one task per run or group "
                            "of cheap runs, then a report job after all; local: processes here), into one results "
                            "folder; with --list, show the tasks without submitting")
    group.add_argument("--slurm-partition", help="the Slurm partition of the jobs")
    group.add_argument("--slurm-gpus-per-run", type=int, default=1, metavar="G",
                       help="GPUs for each task (default 1); G > 1 starts G processes that train data parallel")
    group.add_argument("--slurm-time-per-run", type=float, metavar="MINUTES",
                       help="every task's time limit; runs expected to take much less share a task up to it "
                            "(default: each run its own task, its limit from its expected cost)")
    group.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                       help="another sbatch option for every job (account=proj, qos=high; repeatable)")
    group.add_argument("--max-parallel", type=int, metavar="N",
                       help="at most N tasks at once (Slurm: the array's %%N; local: processes, default 1)")
    group.add_argument("--launcher-folder", default=".cache/submitit",
                       help="where submitit keeps the jobs' pickles and logs (a folder the jobs see)")


def names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def seeds(text: str | None) -> list[int] | None:
    values = names(text)
    if text is not None and not values:
        raise ConfigError(f"--seeds must be comma-separated whole numbers (0,1,2), got {text!r}")
    if values is None:
        return None
    if not all(v.isdigit() for v in values):
        raise ConfigError(f"--seeds must be comma-separated whole numbers (0,1,2), got {text!r}")
    return [int(v) for v in values]


def check_args(args) -> None:
    """Every value that can be checked before planning (the rest: config.py, planning.py)."""
    from .config import parse_override
    from .variants import check_tag

    for option, value in (("--data-path", args.data_path), ("--data-root", args.data_root)):
        if value is not None and not Path(value).expanduser().exists():
            raise ConfigError(f"{option} {value!r} does not exist")
    if args.data_root is not None and not Path(args.data_root).expanduser().is_dir():
        raise ConfigError(f"--data-root {args.data_root!r} is not a folder")
    for option, value in (("--results-dir", args.results_dir), ("--reports-dir", args.reports_dir)):
        if Path(value).exists() and not Path(value).is_dir():
            raise ConfigError(f"{option} {value!r} is a file, not a folder")
    if args.tag is not None:
        check_tag(args.tag)
    for tag in names(args.with_variants) or []:
        check_tag(tag, "--with-variants")
    if args.with_variants is not None and not names(args.with_variants):
        raise ConfigError("--with-variants needs at least one tag")
    if args.model and (args.experiments or args.runs):
        raise ConfigError("--model runs one model by itself: give it without --experiments or --runs")
    for text in args.override:
        parse_override(text)
    seeds(args.seeds)
    if args.tune and (args.model or args.report_only or args.force or args.tag):
        raise ConfigError("--tune searches the rows of experiments with a `tuning:` section: give it without "
                          "--model, --report-only, --tag or --force (a finished study is kept; delete it to "
                          "search again)")
    if args.retime and (args.tune or args.model or args.report_only or args.force or args.keep_models or args.launcher
                        or args.shard or args.list):
        raise ConfigError("--retime times the selected runs' kept models again: give it without --tune, --model, "
                          "--report-only, --force, --keep-models, --launcher, --shard or --list")
    if args.tuning_storage is not None and "://" not in args.tuning_storage:
        raise ConfigError(f"--tuning-storage must be a database URL (sqlite:///path/studies.db, "
                          f"postgresql://user@host/db), got {args.tuning_storage!r}")
    if args.tune:
        from .data_parallel import world_size_from_environment

        # a pruned trial stops in the main process (which alone validates) while the others wait
        # for its next step: tuning trials train in one process each (several machines: a database)
        if world_size_from_environment() > 1:
            raise ConfigError("--tune trains each trial in one process: start it without accelerate launch "
                              "(several machines share a study through --tuning-storage)")
        if args.launcher:
            raise ConfigError("--launcher submits the normal runs: give it without --tune (several machines "
                              "search one study when each runs --tune with the same --tuning-storage)")
    if args.checkpoint_minutes is not None and not args.checkpoint_minutes >= 0:
        raise ConfigError(f"--checkpoint-minutes must be a number of minutes >= 0, got {args.checkpoint_minutes!r}")
    if args.launcher is not None:
        from .launch import check_launcher_args
        check_launcher_args(args)


def check_records_folder(results_dir: str) -> None:
    """--report-only needs records to report: a folder that is not there, or holds none, is a
    mistake (a typo would otherwise rebuild reports/ from nothing)."""
    from .records import iter_records

    folder = Path(results_dir)
    if not folder.is_dir():
        raise ConfigError(f"--results-dir {results_dir!r} does not exist: nothing to report")
    if next(iter_records(folder), None) is None:
        raise ConfigError(f"--results-dir {results_dir!r} holds no records: nothing to report")


def main(argv=None) -> int:
    from .data.dataset import DataError

    args = parser().parse_args(argv)
    if os.getcwd() not in sys.path:  # a model given by its path is imported from the current folder
        sys.path.insert(0, os.getcwd())
    try:
        check_args(args)
        if args.list_models or args.list_experiments or args.list_datasets:
            from . import listing
            listing.catalogue(models=args.list_models, experiments=args.list_experiments, datasets=args.list_datasets)
            return 0
        if args.report_only:
            check_records_folder(args.results_dir)
            report(args)
            return 0
        return run(args)
    except (ConfigError, DataError) as err:  # bad input, named in the message
        print(f"error: {err}", file=sys.stderr)
        return 2


def plan_for(args, studies=None):
    """The plan the command line asks for (every process and job of one call plans the same);
    `studies`: where the tuned rows' best settings are read (--tune goes on with the same lookup)."""
    from .planning import plan_runs

    overrides = list(args.override)
    if args.device:
        overrides.append(f"device={args.device}")
    return plan_runs(
        set_name=None if args.experiments or args.model else args.set,
        experiments=names(args.experiments), models=names(args.model),
        datasets=names(args.dataset) or (["ml-100k"] if args.model else None),
        seeds=seeds(args.seeds), overrides=overrides, data_path=args.data_path, data_root=args.data_root,
        runs=names(args.runs), tag=args.tag, studies=studies if studies is not None else studies_for(args),
    )


def studies_for(args):
    """Where the tuned rows' studies are read (their best settings enter the plan)."""
    from .tuning.studies import StudyLookup

    return StudyLookup(args.results_dir, args.tuning_storage)


def runner_for(args):
    from .runner import Runner

    from .kept_models import DEFAULT_FOLDER

    return Runner(args.results_dir, force=args.force, progress=not args.quiet,
                  checkpoint_minutes=args.checkpoint_minutes, keep_models=DEFAULT_FOLDER if args.keep_models else None)


def run(args) -> int:
    from . import listing
    from .runs import run_plan

    studies = studies_for(args)
    plan = plan_for(args, studies)
    runner = runner_for(args)
    if args.launcher:  # the runs as submitit jobs (benchmarks/launch.py)
        from .launch import launch
        return launch(args, plan, runner)
    if args.shard:  # the same assignment in every shard, whatever each finds recorded (launch.py)
        from .launch import shard_of
        plan = shard_of(plan, runner, args.shard, write=not args.list).cheapest_first(runner.expected_seconds)
    else:
        plan = plan.cheapest_first(runner.expected_seconds)
    if args.tune:
        return tune(args, plan, studies)
    if args.retime:
        return retime(args, plan, runner)
    if args.list:
        listing.plan_listing(plan, runner, force=args.force)
        return 0
    to_train = [spec for spec in plan.runs if runner.done_record(spec) is None]
    _, failures = run_plan(plan, runner, keep_going=args.keep_going)
    if not runner.is_main:  # data parallel training: the main process reports
        return 1 if failures else 0
    if args.shard:  # other shards may still be writing records: one report at the end, over all
        print(f"[shard {args.shard}] done; once every shard has finished and its results/ is merged, "
              "run: python run_all.py --report-only")
        return 1 if failures else 0
    if args.model:
        listing.quick_table(plan, runner)
        folders = "".join(f" --{name.replace('_', '-')} {value}" for name, value in
                          (("results_dir", args.results_dir), ("reports_dir", args.reports_dir))
                          if value != parser().get_default(name))
        print(f"Its page, {args.reports_dir}/quick.md, beside the others: python run_all.py --report-only{folders}")
    else:
        report(args)
        if not to_train:
            print(f"Nothing trained: all {len(plan.runs)} run(s) already have records under {args.results_dir}/ "
                  f"(`--list` shows them); the reports above were rebuilt from them. To train again: --force "
                  f"(redoes these runs), or one model by itself: {EXAMPLE_MODEL}")
    if failures:
        print(f"{len(failures)} run(s) failed:", file=sys.stderr)
        for failure in failures:
            where = f"failure record {failure.record}" if failure.record else "its finished record was kept"
            print(f"  {failure.key}: {failure.error} ({where})", file=sys.stderr)
        return 1
    return 0


def tune(args, plan, studies) -> int:
    """--tune: each selected tuned row's study run to its budget (benchmarks/tuning/search.py);
    with --list, each study's state only. Reports are rebuilt after (the tuning pages)."""
    from .runner import Runner
    from .tuning.search import tune_plan

    states = {spec.study.ref.name: spec.study for spec in plan.runs if spec.study is not None}
    for spec in plan.runs:
        if spec.study is not None and spec.differs:
            from .variants import describe

            raise ConfigError(f"--tune searches the rows as their experiment files state them; {spec.key} differs "
                              f"({describe(spec.differs)}): give --tune without -o or a set whose config changes "
                              "the rows (--device may differ)")
    if not states:
        tuned = [f"{name} tunes {', '.join(exp['tuning'].runs)}" for name, exp in plan.experiments.items()
                 if exp.get("tuning")]
        raise ConfigError("nothing to tune: none of the selected rows is in its experiment's `tuning: runs:` ("
                          + ("; ".join(tuned) or "the selected experiments declare no `tuning:`") + ")")
    if args.list:
        for state in states.values():
            print(f"{state.ref.name}: {state.note}")
        return 0
    # trials write no records; with --checkpoint-minutes an interrupted trial resumes (tuning/search.py)
    runner = Runner(args.results_dir, progress=not args.quiet, checkpoint_minutes=args.checkpoint_minutes)
    outcomes = tune_plan(plan, runner, studies, keep_going=args.keep_going)
    failed = [o for o in outcomes if o.skipped]
    for outcome in outcomes:
        if outcome.skipped:
            print(f"[tune] {outcome.ref.name}: not finished ({outcome.skipped})")
        else:
            best = outcome.best or {}
            print(f"[tune] {outcome.ref.name}: finished, {outcome.finished} trials ({outcome.ran} run now); best "
                  f"validation {outcome.ref.metric} {best.get('value', float('nan')):.4f} with {best.get('params')}")
    if args.shard:
        return 1 if failed else 0
    report(args)
    print("The normal run (the same command without --tune) trains the tables' seeds with the best settings found.")
    return 1 if failed else 0


def retime(args, plan, runner) -> int:
    """--retime: the selected runs timed again from their kept models (benchmarks/kept_models.py),
    then the reports rebuilt; 1 where some could not be."""
    from .kept_models import DEFAULT_FOLDER, retime_plan

    missing = retime_plan(plan, runner, DEFAULT_FOLDER)
    report(args)
    if missing:
        print(f"{len(missing)} run(s) not timed again (their records keep the times they had):", file=sys.stderr)
        for key, why in missing:
            print(f"  {key}: {why}", file=sys.stderr)
    return 1 if missing else 0


def report(args) -> None:
    from .reports import build_reports

    written = build_reports(args.results_dir, args.reports_dir, with_variants=names(args.with_variants) or ())
    pages = [path for path in written if path.suffix == ".md"]
    for path in pages:
        print(f"[report] {path}")
    print(f"[report] and {len(written) - len(pages)} tables and figures under {args.reports_dir}/tables and "
          f"{args.reports_dir}/figures")
