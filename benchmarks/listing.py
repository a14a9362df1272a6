"""What the command line prints besides progress: the catalogue of models, experiments and
datasets (one line each), the plan of `--list` (each run's state and expected cost, variants
named as such), and the small table of metrics after `--model`."""
from __future__ import annotations

from pathlib import Path

import torch
from tabulate import tabulate

from . import config as cfgmod
from .planning import Plan
from .reports.text import one_line
from .precision import cpu_has_native_bf16
from .variants import describe


def _first_sentence(text: str, limit: int = 90) -> str:
    text = " ".join(str(text or "").split())
    first = text.split(". ")[0].split(": ")[0].rstrip(".") if text else ""
    return first if len(first) <= limit else first[:limit - 3].rstrip() + "..."


def catalogue(*, models: bool, experiments: bool, datasets: bool) -> None:
    if models:
        _models()
    if experiments:
        _experiments()
    if datasets:
        _datasets()


def _models() -> None:
    from .models import MODEL_FAMILIES, MODEL_REGISTRY, family_members

    print("Models (--model NAME, or model.name in an experiment file):")
    for name, where in sorted(MODEL_REGISTRY.items()):
        print(f"  {name:22s} {where}")
    for family, members in family_members().items():
        for member in members:
            print(f"  {member:22s} through {family} ({MODEL_FAMILIES[family]}: {member})")
    print(f"  {'package.module:Class':22s} a class of your own, by its path (examples/byo_model/)")


def _experiments() -> None:
    print("Experiments (--experiments NAME[,NAME], or the path of a file of your own):")
    for name in cfgmod.list_experiments():
        try:
            _, exp = cfgmod.load_experiment(name)
        except cfgmod.ConfigError as err:
            print(f"  {name:26s} (does not load: {err})")
            continue
        print(f"  {name:26s} rows {', '.join(exp['runs'])}; datasets {', '.join(exp['datasets'])}; "
              f"{_first_sentence(exp['description'])}")
    print("Sets (--set NAME):")
    for name in sorted(cfgmod.load_yaml(cfgmod.SETS_FILE)):
        entry = cfgmod.load_set(name)
        print(f"  {name:26s} {', '.join(entry['experiments'])}; {_first_sentence(entry.get('description'))}")


def _datasets() -> None:
    from .data.loaders import get_loader

    print("Dataset presets (--dataset NAME; --data-path DIR points one at its files):")
    for name, preset in cfgmod.dataset_presets().items():
        loader = get_loader(preset["source"])
        path = preset.get("path")
        if path is None:
            where = "embedded in the recbole package: nothing to download" if loader.embedded else "give --data-path"
        else:
            where = f"{path}{'' if Path(path).exists() else ' (not here: give --data-path)'}"
        needs = ", ".join({**loader.required_files, **(preset.get("files") or {})}.values())
        print(f"  {name:15s} {preset['source']:14s} {where}; files: {needs}")


def plan_listing(plan: Plan, runner, *, force: bool) -> None:
    """Each run: key (and variant), model, expected cost, state; then what each variant changes."""
    total, variants, studies, any_other, bf16_on_cpu = 0.0, {}, set(), False, []
    for spec in plan.runs:
        tag, differs = runner.placement(spec)
        label = spec.key + (f" [variant {tag}]" if tag else "")
        if tag:
            variants.setdefault(tag, describe(differs))
        done = runner.is_done(spec)
        state = "done" + _timing_note(runner, spec) if done and not force else one_line(runner.skip_note(spec) or "to run")
        cost = runner.expected_seconds(spec)
        if state != "done":
            total += cost or 0.0
        other = cost is not None and not done  # read from another record than this run's own
        shown = "cost ?" if cost is None else f"cost ~{cost:,.0f} s" + ("*" if other else "")
        any_other = any_other or other
        print(f"{label:60s} model={spec.config['model']['name']:20s} {shown:16s} {state}")
        if state != "done" and _trains_bf16_on_cpu(spec.config):
            bf16_on_cpu.append(spec.key)
        if spec.study is not None and spec.study.ref.name not in studies:
            studies.add(spec.study.ref.name)
            print(f"  {spec.study.note}")
    print(f"expected: ~{total:,.0f} s for the runs to run with a record to estimate from "
          "(recorded training and evaluation seconds; 'cost ?' where none)")
    if any_other:
        print("*: from a record of other settings (stale, or the main record of a variant): what those cost, "
              "which may be far from these (another backbone, budget or device)")
    if bf16_on_cpu and not cpu_has_native_bf16():
        print(f"this CPU has no bf16 instructions: the {len(bf16_on_cpu)} run(s) to run that train in bf16 here "
              f"({', '.join(bf16_on_cpu[:3])}{', ...' if len(bf16_on_cpu) > 3 else ''}) run it slower than fp32, "
              "2-8 times the costs shown where those were recorded on a CPU with them (twice an fp32 step on an "
              "AVX-512 Intel Xeon, about 7.5x a matmul on an AVX2-only AMD EPYC); -o train.precision=fp32 is "
              "faster here (a variant record)")
    for tag, what in variants.items():
        print(f"variant {tag}: differs from the experiment file in {what}; written beside the main record "
              f"(reports show it under 'Variant records', or in the table with --with-variants {tag})")


def _timing_note(runner, spec) -> str:
    """', model kept' where --retime can time the run again; ', timed again <when>' where it did."""
    from .kept_models import DEFAULT_FOLDER, kept_model_path

    retimed = ((runner.done_record(spec) or {}).get("retimed") or {}).get("at")
    kept = kept_model_path(DEFAULT_FOLDER, spec).is_file()
    return (", model kept" if kept else "") + (f", timed again {retimed[:16]}" if retimed else "")


def _trains_bf16_on_cpu(config: dict) -> bool:
    device = str(config.get("device") or "cpu")
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return on_cpu and (config.get("train") or {}).get("precision") == "bf16"


def quick_table(plan: Plan, runner) -> None:
    """The records of the runs just made (or found), as a small table of metrics and latency."""
    from .records import read_record
    from .reports.records import Record
    from .reports.tables import stopped_by_cell

    rows = []
    for spec in plan.runs:
        path = runner.path(spec)
        record = read_record(path) or {}
        metrics, latency = record.get("metrics") or {}, record.get("latency") or {}
        tag = runner.placement(spec)[0]
        row = {"model": spec.run, "dataset": spec.dataset, "seed": spec.seed, "variant": tag or ""}
        if record.get("status") != "ok":
            row["R@10"] = f"{record.get('status', 'no record')}: {record.get('skip_reason') or record.get('error') or ''}"
        else:
            for key in sorted(metrics, key=lambda k: (not k.startswith("recall"), int(k.split("@")[1]))):
                row[key.replace("recall", "R").replace("ndcg", "N")] = f"{metrics[key]:.4f}"
            row["ms/batch"] = f"{latency['ms_per_batch_median']:.2f}" if latency else "n/a"
            row["stopped by"] = stopped_by_cell([Record(record)])
        row["record"] = str(path)
        rows.append(row)
    print(tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True))
