"""The training precision: bf16 autocast for the forward, and whether this CPU runs bf16 natively
(oneDNN's check), said aloud where it does not. The shared loop (training.py) and LLM2Rec's LLM
stages train through these."""
from __future__ import annotations

import contextlib
import warnings

import torch


def autocast(precision: str, device: torch.device):
    """The training forward's precision. bf16 autocasts matmuls to bfloat16 (on CPUs with AMX or
    AVX512-BF16 and on recent GPUs about twice as fast as fp32); weights, optimiser state and the
    loss stay fp32. Evaluation and the latency timer always run in the model's own dtype."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    raise ValueError(f"train.precision must be 'fp32' or 'bf16', got {precision!r}")


# the instructions that run bf16 natively (torch.cpu.get_capabilities names; x86, then ARM)
BF16_INSTRUCTIONS = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


def cpu_has_native_bf16(capabilities: dict | None = None) -> bool:
    """Whether this CPU has bf16 instructions (x86: AVX512-BF16 or AMX-BF16; ARM: BF16) and oneDNN
    kernels that use them. oneDNN also takes bf16 on a plain AVX-512 CPU, converting to fp32 for
    the arithmetic: there an Intel Xeon ran a Lite-LLM4Rec step at half fp32's speed (6.0 s against
    2.9 s); AVX2 alone emulates it, about 7.5x fp32's time. `capabilities`: torch.cpu's map (tests)."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False
    caps = dict(torch.cpu.get_capabilities()) if capabilities is None else capabilities
    return any(caps.get(name) for name in BF16_INSTRUCTIONS)


def warn_if_bf16_is_emulated(precision: str, device) -> None:
    """bf16 is a speed setting; a CPU without bf16 instructions runs it slower than fp32 (AVX2 only:
    a 5120x384x1536 matmul 0.83 s against 0.11 s on one core; AVX-512 alone: twice fp32's step).
    Said, not silent."""
    if precision == "bf16" and torch.device(device).type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            "train.precision is bf16 but this CPU has no bf16 instructions (AVX512-BF16 or AMX): "
            "oneDNN converts or emulates its matrix multiplies, 2-8 times slower than fp32; "
            "-o train.precision=fp32 trains faster here (a variant record)", RuntimeWarning, stacklevel=2)
