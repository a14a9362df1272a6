"""Mid-stage checkpoints of LLM2Rec's LLM stages. The official CSFT budget (10,000 steps of 128
histories) outlasts a GPU machine's 10-minute call many times over, and a stage is cached only
when it ends, so with the run's `--checkpoint-minutes M` each stage saves its state every M
minutes at a step boundary and the next call of the same run goes on from there.

One safetensors file per stage, <cache_dir>/<dataset>-<stage>-<key>.checkpoint.safetensors, next
to the folder the finished stage is cached in and named by the same key (the key digests the
code version, backbone, data and every setting up to this stage: a checkpoint of another setting
or code is never resumed). It holds the trained module's weights, AdamW's state, the random
generators, the sampler's epoch order and the loss log as tensors; the step, the scheduler, the
optimiser's groups, the sampler's position, the seconds and sittings so far as JSON. Written
atomically (benchmarks/checkpoints.py), removed once the stage is cached.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.checkpoints import distinct_tensors, load_state, random_states, restore_random_states, save_state

from .stages import EpochBatches


def checkpoint_file(stage_folder: Path) -> Path:
    return stage_folder.with_name(stage_folder.name + ".checkpoint.safetensors")


class StageCheckpoint:
    """Saves and resumes one stage's training state (stages.run_steps calls it)."""

    def __init__(self, path: Path, key: str, minutes: float, sampler: EpochBatches, device):
        self.path, self.key, self.minutes = Path(path), key, float(minutes)
        self.sampler, self.device = sampler, device
        self.last_save = time.perf_counter()

    def due(self) -> bool:
        return time.perf_counter() - self.last_save >= 60 * self.minutes

    def save(self, module: torch.nn.Module, optimizer, scheduler, *, step: int, losses: list[float],
             seconds: float, sittings: int) -> None:
        """The state after `step` steps."""
        randoms = random_states(self.sampler.rng, self.device)
        optimiser = optimizer.state_dict()
        tensors = {f"weights.{name}": t for name, t in distinct_tensors(module.state_dict()).items()}
        tensors.update({f"optimizer.{index}.{name}": value for index, state in optimiser["state"].items()
                        for name, value in state.items()})  # AdamW's state: tensors only
        tensors.update({f"random.{name}": value for name, value in randoms.items() if isinstance(value, torch.Tensor)})
        tensors["sampler.order"] = torch.from_numpy(np.asarray(self.sampler.order, dtype=np.int64))
        tensors["losses"] = torch.tensor(losses, dtype=torch.float64)  # loss.item() values, exactly
        save_state(self.path, tensors, {
            "key": self.key, "step": step, "seconds": seconds, "sittings": sittings, "sampler_at": self.sampler.at,
            "numpy_random": randoms.get("numpy"), "optimizer_groups": optimiser["param_groups"],
            "scheduler": scheduler.state_dict()})
        self.last_save = time.perf_counter()

    def resume(self, module: torch.nn.Module, optimizer, scheduler) -> dict | None:
        """Restore a saved state into the module, optimiser, scheduler, sampler and generators;
        returns its step, losses, seconds and sittings (None: nothing of this stage's key saved)."""
        if not self.path.is_file():
            return None
        tensors, meta = load_state(self.path)
        if meta.get("key") != self.key:
            return None
        weights = {name[len("weights."):]: t for name, t in tensors.items() if name.startswith("weights.")}
        missing, unexpected = module.load_state_dict(weights, strict=False)
        shared = set(module.state_dict()) - set(distinct_tensors(module.state_dict()))
        if unexpected or set(missing) - shared:
            raise RuntimeError(f"{self.path}: weights do not fit the stage's module "
                               f"(missing {sorted(set(missing) - shared)[:3]}, unexpected {unexpected[:3]})")
        state: dict[int, dict] = {}
        for name, value in tensors.items():
            if name.startswith("optimizer."):
                _, index, entry = name.split(".", 2)
                state.setdefault(int(index), {})[entry] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_groups"]})
        scheduler.load_state_dict(meta["scheduler"])
        randoms = {name[len("random."):]: t for name, t in tensors.items() if name.startswith("random.")}
        if meta.get("numpy_random") is not None:
            randoms["numpy"] = meta["numpy_random"]
        restore_random_states(randoms, self.sampler.rng, self.device)
        self.sampler.order, self.sampler.at = tensors["sampler.order"].numpy(), int(meta["sampler_at"])
        self.last_save = time.perf_counter()
        return {"step": int(meta["step"]), "losses": tensors["losses"].tolist(), "seconds": float(meta["seconds"]),
                "sittings": int(meta["sittings"])}
