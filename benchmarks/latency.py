"""The one latency timer every model shares.

What is timed is the same for every model: from a prepared batch (the data loader's job, not
timed) to the top-K item ids on the host. For score-based models that includes excluding history
items and the top-K selection, because a deployed recommender has to do that too; for generative
("topk") models it is their own `recommend` (e.g. beam search).

Models can break their time down by wrapping parts of their own code in `section(name)`:

    with section("beam_search"):
        ...

Outside `measure_latency` a section is a near-free no-op, so models keep these lines in their
normal code path. Sections should not overlap; a section nested inside another is reported under
its own name but is not subtracted twice when computing "other".
"""
from __future__ import annotations

import json
import platform
import time
from contextvars import ContextVar
from typing import Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .evaluate import top_k_items, user_arguments
from .precision import BF16_INSTRUCTIONS

__all__ = ["batch_flops", "device_description", "matmul_peak", "measure_latency", "section"]


class _Timer:
    """Per-batch section times for one `measure_latency` run."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self.device = torch.device(device)
        self.sections: dict[str, float] = {}
        self.covered = 0.0  # time inside outermost sections, for "other"
        self.depth = 0

    def now(self) -> float:
        # Kernels run asynchronously on CUDA; without a sync the clock reads launch time.
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def reset(self) -> None:
        self.sections = {}
        self.covered = 0.0
        self.depth = 0


_ACTIVE: ContextVar[_Timer | None] = ContextVar("benchmarks_latency_timer", default=None)


class section:
    """Context manager timing a named part of a model's inference (see module docstring)."""

    __slots__ = ("name", "timer", "start")

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.timer = timer = _ACTIVE.get()
        if timer is not None:
            timer.depth += 1
            self.start = timer.now()
        return self

    def __exit__(self, *exc):
        timer = self.timer
        if timer is not None:
            elapsed = timer.now() - self.start
            timer.sections[self.name] = timer.sections.get(self.name, 0.0) + elapsed
            timer.depth -= 1
            if timer.depth == 0:
                timer.covered += elapsed
        return False


# ----------------------------------------------------------------------------- device facts


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_description(device) -> dict:
    """The device facts a latency number is meaningless without."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {
            "device": f"cuda:{index}",
            "device_name": torch.cuda.get_device_name(index),
            "torch_threads": torch.get_num_threads(),
        }
    return {"device": str(device), "device_name": _cpu_name(), "torch_threads": torch.get_num_threads(),
            "cpu_features": cpu_features()}


# the instruction sets that decide a CPU's speed here: fp32 width (AVX2, AVX-512) and whether bf16
# runs natively (AVX512-BF16, AMX) or is converted or emulated at a fraction of fp32's speed; two
# CPUs with the same model name string have differed in them (records of 7c79586 and 3ff8aa2)
CPU_FEATURES = ("avx2", "avx512_f", "amx_tile", "neon", "sve", *BF16_INSTRUCTIONS)


def cpu_features() -> list[str]:
    """The speed-deciding instruction sets this CPU has (torch.cpu.get_capabilities), in a fixed
    order; empty where torch cannot tell."""
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):
        return []
    return [name for name in CPU_FEATURES if caps.get(name)]


def _model_dtype(model) -> str:
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "module", None)
    if isinstance(module, torch.nn.Module):
        params = module.parameters()
    elif callable(getattr(model, "parameters", None)):
        params = model.parameters()
    else:
        return "n/a"
    try:
        for p in params:
            if torch.is_tensor(p) and p.is_floating_point():
                return str(p.dtype).replace("torch.", "")
    except TypeError:
        pass
    return "n/a"


def _compute_dtype(model, device: torch.device) -> str:
    """The precision the model's matrix multiplies run at: autocast's where it is on (an inference
    setting's bf16), else the parameters'."""
    if torch.is_autocast_enabled(device.type):
        return str(torch.get_autocast_dtype(device.type)).replace("torch.", "")
    return _model_dtype(model)


# ----------------------------------------------------------------------------- work and the hardware's limit


def matmul_peak(device, dtype: torch.dtype = torch.float32, seconds: float = 0.3, windows: int = 5) -> dict:
    """The device's attainable matrix-multiply rate at a precision, measured now: square matmuls
    (1,024 on a CPU, 8,192 on a GPU) repeated for `seconds` after one warm-up, in `windows` equal
    windows; the peak is the best window's rate (a window that another process slowed says nothing
    about what the hardware attains), the others are recorded beside it. A model's share of this
    peak says how close to the hardware's limit its time is."""
    device = torch.device(device)
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    timer = _Timer(device)
    rates, count = [], 0
    # autocast off: the probe runs at the precision it names, inside an inference setting too
    with torch.inference_mode(), torch.autocast(device.type, enabled=False):
        # the warm-up; where one product alone outlasts the probe (bf16 emulated on a CPU without
        # bf16 instructions: 2.6 s at 1,024), a smaller square keeps the probe to its seconds
        begun = time.perf_counter()
        a @ b
        while device.type == "cpu" and n > 256 and time.perf_counter() - begun > seconds:
            n //= 2
            a, b = a[:n, :n].contiguous(), b[:n, :n].contiguous()
            begun = time.perf_counter()
            a @ b
        for _ in range(max(1, int(windows))):
            start, done = timer.now(), 0
            while done == 0 or timer.now() - start < seconds / max(1, int(windows)):
                a @ b
                done += 1
            rates.append(2.0 * n ** 3 * done / (timer.now() - start) / 1e12)
            count += done
    return {"tflops": max(rates), "window_tflops": rates, "shape": [n, n, n],
            "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
            "device": str(device), "repeats": count}


def batch_flops(model, batch_hist, *, top_k: int, mask_history: bool, users=None) -> float:
    """Floating-point operations of serving one batch (the timed path), counted by PyTorch's own
    FlopCounterMode (matrix multiplies, convolutions, attention; elementwise work not counted).
    `users`: the batch's user indices, for a model that reads user ids."""
    batch = model.prepare(batch_hist, **user_arguments(model, users, len(batch_hist)))
    with torch.inference_mode():
        return _served_flops(model, batch, batch_hist, top_k=top_k, mask_history=mask_history)


def _served_flops(model, batch, batch_hist, *, top_k: int, mask_history: bool) -> float:
    """Serve one prepared batch under FlopCounterMode and return its count. Eager while counting:
    a torch.compile'd score first met under FlopCounterMode never compiled afterwards (torch 2.13),
    so a compiled setting would have been timed eager."""
    with torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
        _serve(model, batch, batch_hist, top_k=top_k, mask_history=mask_history)
    return float(counter.get_total_flops())


def _serve(model, batch, batch_hist, *, top_k: int, mask_history: bool) -> torch.Tensor:
    """From a prepared batch to the top-K ids on the host: what the timer times."""
    if getattr(model, "output", "scores") == "scores":
        return top_k_items(model.score(batch), batch_hist, int(model.n_items), top_k, mask_history).cpu()
    return torch.as_tensor(model.recommend(batch, top_k)).cpu()


# ----------------------------------------------------------------------------- the timer


def _batches(histories: Sequence[np.ndarray], batch_size: int) -> list:
    n = len(histories)
    if n <= batch_size:
        return [histories[:]]  # the only batch, even if partial
    # A final partial batch would be timed at a different batch size; drop it.
    return [histories[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def measure_latency(model, histories: Sequence[np.ndarray], *, batch_size: int = 32, top_k: int = 20,
                    warmup_batches: int = 3, max_batches: int | None = None,
                    mask_history: bool = True, count_flops: bool = True, users=None) -> dict:
    """Milliseconds per batch from prepared batch to top-K ids on the host (see module docstring).

    `users`: the users' indices in the split, one per history (default 0..U-1), handed to `prepare`
    (untimed, as the rest of it) and `input_length` of a model that reads user ids
    (evaluate.user_arguments).

    `max_batches` caps the number of measured batches (default: every full batch once); batches
    are reused in order when warm-up plus measured batches exceed what `histories` provides.
    With `count_flops`, the first warm-up batch (untimed) is served under FlopCounterMode (without
    warm-up, one extra untimed batch is), and the device's matrix-multiply peak is measured: the
    result then holds the work per batch and the share of the peak the timed batches reach.
    """
    if len(histories) == 0:
        raise ValueError("no histories to time")
    if batch_size < 1 or top_k < 1 or warmup_batches < 0:
        raise ValueError("batch_size and top_k must be >= 1 and warmup_batches >= 0")
    output = getattr(model, "output", "scores")
    if output not in ("scores", "topk"):
        raise ValueError(f"model.output must be 'scores' or 'topk', got {output!r}")
    n_items = int(model.n_items)
    if output == "scores" and top_k > n_items:
        raise ValueError(f"top_k={top_k} exceeds n_items={n_items}")

    batches = _batches(histories, batch_size)
    user_batches = _batches(user_arguments(model, users, len(histories)).get("users"), batch_size) \
        if getattr(model, "reads_user_ids", False) else [None] * len(batches)
    n_measured = len(batches) if max_batches is None else int(max_batches)
    if n_measured < 1:
        raise ValueError("max_batches must be >= 1")
    device = torch.device(getattr(model, "device", "cpu"))

    totals: list[float] = []
    per_section: list[dict[str, float]] = []
    others: list[float] = []
    lengths: list[np.ndarray] = []
    timer = _Timer(device)
    flops = None
    token = _ACTIVE.set(timer)
    try:
        with torch.inference_mode():
            for i in range(warmup_batches + n_measured):
                batch_hist = batches[i % len(batches)]
                given = user_arguments(model, user_batches[i % len(batches)], len(batch_hist))
                batch = model.prepare(batch_hist, **given)
                if i == 0 and warmup_batches and count_flops:  # a warm-up batch is not timed: count its work
                    flops = _served_flops(model, batch, batch_hist, top_k=top_k, mask_history=mask_history)
                    continue
                timer.reset()
                start = timer.now()
                ids = _serve(model, batch, batch_hist, top_k=top_k, mask_history=mask_history)
                total = timer.now() - start
                del ids
                if i < warmup_batches:
                    continue
                totals.append(total)
                per_section.append(dict(timer.sections))
                others.append(total - timer.covered)
                lengths.append(np.asarray(model.input_length(batch_hist, **given), dtype=np.float64))
    finally:
        _ACTIVE.reset(token)

    ms = np.asarray(totals) * 1000.0
    names = sorted({name for s in per_section for name in s})
    sections_ms = {name: float(np.median([s.get(name, 0.0) for s in per_section]) * 1000.0)
                   for name in names}
    if names:
        sections_ms["other"] = float(np.median(others) * 1000.0)

    # the work of one batch (counted in the first warm-up batch, or here without warm-up) and the
    # rate the hardware reaches now, at the model's precision
    if count_flops and flops is None:
        flops = batch_flops(model, batches[0], top_k=top_k, mask_history=mask_history, users=user_batches[0])
    dtype = _compute_dtype(model, device)
    work = {}
    if count_flops:
        peak = matmul_peak(device, getattr(torch, dtype) if dtype in ("float32", "bfloat16", "float16") else torch.float32)
        achieved = flops / (float(np.median(ms)) / 1000.0) / 1e12
        work = {"gflop_per_batch": flops / 1e9, "achieved_tflops": achieved, "peak": peak,
                "share_of_peak": achieved / peak["tflops"] if peak["tflops"] > 0 else None}
    result = {
        "ms_per_batch_median": float(np.median(ms)),
        "ms_per_batch_p90": float(np.percentile(ms, 90)),
        "ms_per_batch_mean": float(ms.mean()),
        "n_batches": len(totals),
        "batch_size": len(batches[0]),  # smaller than asked only when it was the only batch
        "warmup_batches": int(warmup_batches),
        "top_k": int(top_k),
        "output": output,
        "sections_ms_median": sections_ms,
        **device_description(device),
        "dtype": _model_dtype(model),
        "compute_dtype": dtype,
        "input_length_mean": float(np.concatenate(lengths).mean()),
        "mask_history": bool(mask_history),
        **work,
    }
    json.dumps(result)  # fail here, not when the record is written
    return result
