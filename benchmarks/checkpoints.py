"""What a resumable training saves besides its weights and optimiser: the random generators'
states, and a one-file state of tensors and JSON written atomically as safetensors. The shared
loop (training.py) and LLM2Rec's LLM stages (baselines/llm2rec/checkpoint.py) both save through
these, so a resumed training draws exactly what an uninterrupted one would have drawn."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .records import atomic_write


def random_states(rng: np.random.Generator | None, device) -> dict:
    """The generators a training draws from, now: numpy's (batches, masking), torch's CPU one
    (dropout and sampling on CPU) and, on a GPU, its own (dropout there draws from it, not from
    the CPU's). Python's `random` is left out: no training here draws from it."""
    states = {"torch": torch.get_rng_state()}
    if rng is not None:
        states["numpy"] = rng.bit_generator.state
    if torch.device(device).type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_random_states(states: dict, rng: np.random.Generator | None, device) -> None:
    """Put back what `random_states` saved (a checkpoint from before the GPU generator was saved
    has none: the GPU's is then left as it is)."""
    torch.set_rng_state(states["torch"])
    if rng is not None and "numpy" in states:
        rng.bit_generator.state = states["numpy"]
    if "cuda" in states and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


def distinct_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with each shared tensor once: safetensors refuses tensors sharing memory (a
    Llama's tied embeddings and LM head), and loading the one restores the other."""
    seen, out = set(), {}
    for name, tensor in state.items():
        same = (tensor.device, tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() and same in seen:
            continue
        seen.add(same)
        out[name] = tensor
    return out


def save_state(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Tensors (host copies, so later steps cannot change what is written) and JSON-able facts in
    one safetensors file, written to a temporary name and renamed: a call killed while writing
    leaves the previous checkpoint whole."""
    host = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(host, tmp, metadata={"state": json.dumps(meta)}))


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, facts) as `save_state` wrote them, on the CPU."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["state"])
    return load_file(str(path)), meta
