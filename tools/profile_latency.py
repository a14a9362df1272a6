"""Where one row's served batch spends its time: the latency timer's numbers (ms per batch, GFLOP,
share of the measured matmul peak) beside torch.profiler's operator table for the same batches.

    python -m tools.profile_latency --experiment table3_overall --run Lite-LLM4Rec_sampling \
        --dataset ml-100k [--setting precision=bf16,attention=sdpa,threads=2] [--batches 10] \
        [-o KEY=VALUE ...] [--data-path DIR] [--out reports/profiles/NAME.md]

Serving costs the same work whatever the weights hold (a scoring model's shapes do not depend on
training), so the row's model is built as its experiment declares it and profiled untrained: this
answers "how close to the hardware's limit is this model's time, and what holds it back", not
"how accurate is it". Generative rows do depend on their weights (beam paths), so their profile
is of the untrained model's decoding and says so. The page goes to --out (default: stdout).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.evaluate import user_arguments
from benchmarks.latency import _batches, _serve, measure_latency
from benchmarks.measurements import check_inference_settings, inference_setting, setting_label
from benchmarks.models import build_model
from benchmarks.planning import plan_runs
from benchmarks.runner import Runner


def parse_setting(text: str | None) -> dict:
    """"precision=bf16,compile=true,attention=sdpa,threads=2" as one latency.settings entry."""
    entry = {}
    for part in (text or "").split(","):
        if part.strip():
            key, _, value = part.partition("=")
            value = value.strip()
            entry[key.strip()] = (value == "true" if value in ("true", "false")
                                  else int(value) if value.isdigit() else value)
    return check_inference_settings([entry])[0]


def profile_row(experiment: str, run: str, dataset: str, overrides: list[str], setting: dict,
                n_batches: int, data_path: str | None = None) -> str:
    spec = plan_runs(set_name=None, experiments=[experiment], datasets=[dataset], runs=[run],
                     overrides=overrides, data_path=data_path).runs[0]
    ctx = Runner(progress=False).prepare(spec)
    model = build_model(ctx.cfg["model"], ctx.dataset, ctx.device)
    if isinstance(getattr(model, "module", None), torch.nn.Module):
        model.module.eval()  # served as after training: no dropout
    lat = ctx.cfg["latency"]
    users = np.arange(ctx.split.n_users)
    histories = [ctx.split.test_histories[u] for u in users]
    mask = bool(ctx.cfg["eval"]["mask_history"])
    with inference_setting(model, setting) as applied:
        timed = measure_latency(model, histories, batch_size=lat["batch_size"], top_k=lat["top_k"],
                                warmup_batches=lat["warmup_batches"], max_batches=n_batches, mask_history=mask,
                                users=users)
        batches = list(zip(_batches(histories, lat["batch_size"])[:n_batches], _batches(users, lat["batch_size"])))
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            for batch_hist, batch_users in batches:
                batch = model.prepare(batch_hist, **user_arguments(model, batch_users, len(batch_hist)))
                _serve(model, batch, batch_hist, top_k=lat["top_k"], mask_history=mask)
    peak = timed["peak"]
    lines = [
        f"# Latency profile: {experiment} / {dataset} / {run}, {setting_label(applied)}",
        "",
        f"Command: `python -m tools.profile_latency {' '.join(sys.argv[1:])}`",
        "",
        f"- model: {type(model).__name__} (untrained: serving work does not depend on the weights"
        f"{'; a generative model decodes other paths once trained' if getattr(model, 'output', '') == 'topk' else ''})",
        f"- device: {timed['device_name']} ({timed['device']}), {timed['torch_threads']} threads",
        f"- batch of {timed['batch_size']} users, {timed['n_batches']} timed batches after "
        f"{timed['warmup_batches']} warm-up: median {timed['ms_per_batch_median']:.1f} ms (p90 {timed['ms_per_batch_p90']:.1f})",
        f"- work: {timed['gflop_per_batch']:.3g} GFLOP per batch (FlopCounterMode) at {timed['compute_dtype']}, "
        f"{timed['achieved_tflops'] * 1e3:.1f} GFLOP/s achieved",
        f"- measured peak: {peak['tflops'] * 1e3:.1f} GFLOP/s ({peak['dtype']} {'x'.join(map(str, peak['shape']))} "
        f"matmul, {peak['threads']} threads): share of peak {timed['share_of_peak']:.1%}",
        f"- at the peak this batch would take {timed['gflop_per_batch'] / (peak['tflops'] * 1e3) * 1e3:.1f} ms",
        "",
        f"## Operators over {len(batches)} batches (torch.profiler, self CPU time)",
        "",
        "```",
        prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=40),
        "```",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data-path", help="folder of the dataset's source files (as run_all.py's)")
    p.add_argument("--setting", help="one inference setting: precision=fp32|bf16,compile=true|false,"
                                     "attention=eager|sdpa,threads=N (default: as published)")
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="write the page here (default: stdout)")
    args = p.parse_args(argv)
    page = profile_row(args.experiment, args.run, args.dataset, args.override, parse_setting(args.setting),
                       args.batches, args.data_path)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(page)
    else:
        print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
