"""The first stage's result, kept on disk so that runs which share it train it once.

Table 3's two-stage row and its `_stage1` row, and any second-stage setting tried on validation
(`stage2_lr`, `stage2_epochs`), begin with the same first stage: about an hour on one CPU core for
ml-100k. A finished first stage is saved under <item_cache_dir>/../lite_stage1/<key>: its best
weights (safetensors), the torch random state it left (so a second stage after a cached first
stage draws exactly what it would have drawn after training it) and its training record (JSON).

The key digests everything the first stage's numbers depend on: the model settings except the
second stage's, the training and validation settings and seed, the data (source, content,
training sequences, validation targets), the item vectors, the device, torch's version and the
suite's Python files (records.program_hash: any code change trains again; the experiment files
enter only through the resolved settings above). A process of a
multi-process run never uses it (the shared loop's own checkpoints resume those).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from benchmarks.records import program_hash
from benchmarks.tensors import sequences_sha256

# the second stage's own settings: read only where a second stage runs
SECOND_STAGE = ("stage2_epochs", "stage2_lr")
# settings that act only after the first stage, or only on where files lie
NOT_STAGE1 = ("finetune_item_vectors", *SECOND_STAGE, "item_cache_dir", "item_batch_size")


def stage1_key(model, split, trainer) -> str:
    params = {k: v for k, v in model.params.as_dict().items() if k not in NOT_STAGE1}
    dataset = model.dataset
    what = {"params": params, "train": trainer.cfg, "eval": trainer.eval_cfg, "seed": trainer.seed,
            "data": [dataset.source_hash, dataset.content_hash, sequences_sha256(split.train),
                     sequences_sha256([split.valid_targets])],
            "item_vectors": {k: v for k, v in model.item_vector_info.items() if k != "cache"},  # not hit/miss
            "device": str(model.device),
            "torch": torch.__version__, "code": program_hash()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage1_path(model, key: str) -> Path:
    return Path(model.params.item_cache_dir).parent / "lite_stage1" / key


def load_stage1(model, path: Path) -> dict | None:
    """The cached first stage into `model` (weights and torch's random state); its record, or None."""
    if not (path / "done").is_file():
        return None
    model.module.load_state_dict(load_file(str(path / "weights.safetensors"), device=str(model.device)))
    states = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and model.device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], model.device)
    model.module.eval()
    return {**json.loads((path / "stage1.json").read_text()), "from_cache": path.name}


def save_stage1(model, path: Path, stage1: dict) -> None:
    """Written into a temporary folder and renamed when complete (`done` marks it)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.module.state_dict().items()}
    save_file(weights, str(tmp / "weights.safetensors"))
    states = {"cpu": torch.get_rng_state()}
    if model.device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(model.device)
    save_file(states, str(tmp / "rng.safetensors"))
    (tmp / "stage1.json").write_text(json.dumps(stage1, default=_plain))
    (tmp / "done").write_text("")
    if path.exists():  # another run finished the same stage meanwhile: keep theirs
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
        return
    tmp.rename(path)


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)
