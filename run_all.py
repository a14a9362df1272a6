"""The one entry point: run an experiment set, write records to results/, rebuild reports/.

    python run_all.py                                  # the default set on the embedded ml-100k
    python run_all.py --list                           # what would run, and what is already done
    python run_all.py --dataset ml-1m-partial          # same experiments on another dataset preset
    python run_all.py --dataset amazon-beauty --data-path /data/beauty
    python run_all.py --experiments table3_overall -o train.epochs=5 -o eval.mask_history=false
    python run_all.py --report-only                    # rebuild reports/ from results/ only
    python run_all.py --set gpu --device cuda --shard 2/4   # the second quarter of the GPU set
    python run_all.py --set gpu --data-root data_local --list   # datasets from data_local/<preset>
"""
from __future__ import annotations

import argparse
import sys

from benchmarks.config import ConfigError
from benchmarks.data import DataError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="default", help="experiment set from benchmarks/experiments/sets.yaml")
    parser.add_argument("--experiments", help="comma-separated experiment names (replaces the set's list)")
    parser.add_argument("--dataset", help="comma-separated dataset presets (benchmarks/datasets.yaml)")
    parser.add_argument("--data-path", help="folder of the dataset's source files (one dataset only)")
    parser.add_argument("--data-root", help="folder with one sub-folder per dataset preset (e.g. "
                                            "data_local/ml-1m-partial); every preset but the embedded "
                                            "ml-100k is read from there")
    parser.add_argument("--runs", help="comma-separated run names (table rows) to keep")
    parser.add_argument("--seeds", help="comma-separated seeds (replaces the experiments' seeds)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto (sets the config key device)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. train.epochs=5 (repeatable; YAML values)")
    parser.add_argument("--shard", metavar="I/N",
                        help="run only shard I of N (every N-th run, from run I; I counts from 1); "
                             "reports are then left to a final --report-only over the merged results/")
    parser.add_argument("--list", action="store_true", help="list the runs that would run and exit")
    parser.add_argument("--force", action="store_true", help="re-run runs whose records exist")
    parser.add_argument("--keep-going", action="store_true", help="continue after a failed run")
    parser.add_argument("--report-only", action="store_true", help="only rebuild reports from results/")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--reports-dir", default="reports")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--checkpoint-minutes", type=float, metavar="M",
                        help="save a training checkpoint every M minutes (at an epoch's end) under "
                             ".cache/checkpoints; a later call resumes an unfinished run from it")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from benchmarks.reports import build_reports

    if args.report_only:
        for path in build_reports(args.results_dir, args.reports_dir):
            print(f"[report] {path}")
        return 0
    from benchmarks.planning import parse_shard, plan_runs, shard_plan
    from benchmarks.runner import Runner, run_plan

    overrides = list(args.override)
    if args.device:
        overrides.append(f"device={args.device}")
    split = lambda text: [t.strip() for t in text.split(",") if t.strip()] if text else None  # noqa: E731
    try:
        plan = plan_runs(
            set_name=None if args.experiments else args.set,
            experiments=split(args.experiments),
            datasets=split(args.dataset),
            seeds=[int(s) for s in split(args.seeds)] if args.seeds else None,
            overrides=overrides,
            data_path=args.data_path,
            data_root=args.data_root,
            runs=split(args.runs),
        )
        runner = Runner(args.results_dir, force=args.force, progress=not args.quiet,
                        checkpoint_minutes=args.checkpoint_minutes)
        if args.shard:  # shards must agree on one order, whatever records each finds: no costs
            plan = shard_plan(plan, *parse_shard(args.shard))
        else:
            plan = plan.cheapest_first(runner.expected_seconds)
        if args.list:
            total = 0.0
            for spec in plan.runs:
                state = "done" if runner.is_done(spec) and not args.force else runner.skip_note(spec) or "to run"
                cost = runner.expected_seconds(spec)
                if state != "done":
                    total += cost or 0.0
                shown = "cost ?" if cost is None else f"cost ~{cost:,.0f} s"
                print(f"{spec.key:60s} model={spec.config['model']['name']:20s} {shown:16s} {state}")
            print(f"expected: ~{total:,.0f} s for the runs to run with a record to estimate from "
                  "(recorded training and evaluation seconds; 'cost ?' where none)")
            return 0
        run_plan(plan, runner, keep_going=args.keep_going)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.shard:  # other shards may still be writing records: one report at the end, over all
        print(f"[shard {args.shard}] done; once every shard has finished and its results/ is merged, "
              "run: python run_all.py --report-only")
        return 0
    for path in build_reports(args.results_dir, args.reports_dir):
        print(f"[report] {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
