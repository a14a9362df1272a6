"""Data parallel training for the shared loop (benchmarks/training.py), for the processes that
`accelerate launch --multi_gpu --num_processes N run_all.py ...` (or a Slurm task of the launcher
with several GPUs, benchmarks/launch.py) starts: one process per device, every process running
the same plan.

Why not torch's DistributedDataParallel wrapper: the models' `loss` methods call methods of their
`module` other than forward (`embed_items`, `prefix_logits`, ...), which a DDP wrapper does not
synchronise. The equivalent done here, once per step: every process draws the same global batch
(the same seed), computes the loss on its share of the rows, and the gradients are summed across
processes (all_reduce) before the optimiser step, each share's loss weighted by its share of the
rows. For a loss that is a mean over the batch's rows this is exactly the single-process
gradient of the same global batch, whether the rows split evenly or not; for a loss averaged over
something else (the targets of padded windows, HLLM's positions) or using the rest of the batch
(in-batch negatives), each share is weighted by its rows, as DDP does. Dropout draws other masks
than one process would: the same distribution, not the same numbers.

Accelerate starts the processes and holds their state (rank, world size, the gloo or nccl process
group); only the main process validates, decides early stopping, measures, times and writes
records: the others follow its decisions (broadcast), so their weights stay the same. FSDP and
DeepSpeed are refused (`accelerate launch --use_fsdp`): the loop keeps whole copies of the
weights (best-validation snapshots, checkpoints), which a sharded model does not have.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch

from .errors import ConfigError

# Long enough for the main process to validate, measure and record a run while the others wait at
# the next collective (a full-ranking evaluation of a large model takes minutes, not hours)
WAIT_FOR_MAIN = timedelta(hours=3)
BUCKET_ELEMENTS = 1 << 24  # gradients summed in flat buckets of up to 16M values (64 MiB in fp32)

_group: "DataParallel | None" = None


def world_size_from_environment() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def data_parallel() -> "DataParallel | None":
    """This process's data parallel group, or None where it trains alone (one process: the
    plain loop, nothing changes). Set up once per process, from what the launcher exported."""
    global _group
    if _group is not None or world_size_from_environment() <= 1:
        return _group
    for flag, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(flag, "false").lower() == "true":
            raise ConfigError(f"{name} is not supported by the suite's training loop (it keeps whole copies of the "
                              "weights); launch data parallel training: accelerate launch --multi_gpu ...")
    from accelerate import PartialState

    cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() == "true" or not torch.cuda.is_available()
    _group = DataParallel(PartialState(cpu=cpu, timeout=WAIT_FOR_MAIN))
    return _group


def batch_rows(batch) -> int:
    """The rows of a training batch: a tuple (or list) of entries holds them in its first entry
    (inputs, targets, ...); a tensor or array holds one row per element of its first dimension."""
    return len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)


def rows_share(batch, index: int, count: int):
    """Process `index` of `count`'s share of a batch: rows [rows*index//count, rows*(index+1)//count)
    of every entry whose first dimension is the batch's rows; entries of another length (shared by
    all rows, e.g. sampled negatives) are kept whole."""
    rows = batch_rows(batch)
    start, stop = rows * index // count, rows * (index + 1) // count
    if not isinstance(batch, (tuple, list)):
        return batch[start:stop]

    def cut(entry):
        try:
            return entry[start:stop] if len(entry) == rows else entry
        except TypeError:  # no length (a number, a 0-d tensor): shared
            return entry

    return tuple(cut(entry) for entry in batch)


class DataParallel:
    """One process of a data parallel group (see the module's docstring)."""

    def __init__(self, state):
        self.state = state
        self.rank = int(state.process_index)
        self.world_size = int(state.num_processes)
        self.local_rank = int(state.local_process_index)
        self.device = torch.device(state.device)  # cuda:<local rank> with nccl, cpu with gloo
        self.is_main = bool(state.is_main_process)

    def __repr__(self) -> str:
        return f"DataParallel(rank {self.rank} of {self.world_size}, {self.state.backend} on {self.device})"

    def share(self, model, batch) -> tuple[object, float]:
        """(this process's share of a global batch, its share of the rows): the model's
        `shard_batch` hook decides what a share is (rows_share by default)."""
        share = model.shard_batch(batch, self.rank, self.world_size)
        total = batch_rows(batch)
        return share, (batch_rows(share) / total if total else 0.0)

    def from_main(self, *values: float) -> list[float]:
        """The main process's values, in every process (a stop flag, a gain, a decision)."""
        import torch.distributed as dist

        flags = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.broadcast(flags, src=0)
        return flags.tolist()

    def agree(self, flag: bool) -> bool:
        return bool(self.from_main(flag)[0])

    def sum_loss(self, weighted_loss: torch.Tensor | None) -> torch.Tensor:
        """The global batch's loss: the shares' weighted losses summed (a share without rows adds 0)."""
        import torch.distributed as dist

        total = torch.zeros((), dtype=torch.float32, device=self.device) if weighted_loss is None \
            else weighted_loss.detach().float().to(self.device).clone()
        dist.all_reduce(total)
        return total

    def sum_gradients(self, params) -> None:
        """Sum every parameter's gradient over the processes (a parameter this share did not use
        counts zeros), in flat buckets: afterwards every process holds the global batch's
        gradient, so the same optimiser step keeps the weights the same."""
        import torch.distributed as dist

        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        buckets: dict[tuple, list[list[torch.Tensor]]] = {}
        for grad in grads:
            per_kind = buckets.setdefault((grad.dtype, grad.device), [[]])
            if per_kind[-1] and sum(g.numel() for g in per_kind[-1]) + grad.numel() > BUCKET_ELEMENTS:
                per_kind.append([])
            per_kind[-1].append(grad)
        for per_kind in buckets.values():
            for bucket in per_kind:
                flat = torch.cat([g.reshape(-1) for g in bucket])
                if flat.device != self.device and self.device.type == "cuda":
                    flat = flat.to(self.device)
                dist.all_reduce(flat)
                offset = 0
                for grad in bucket:
                    grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
                    offset += grad.numel()

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """The main process's weights and buffers in every process (a training starts from the
        same weights even where building a model draws differently in each process)."""
        import torch.distributed as dist

        for tensor in module.state_dict().values():
            if tensor.device == self.device or self.device.type == "cpu":
                dist.broadcast(tensor, src=0)
            else:  # a tensor kept off the group's device: through a copy
                copy = tensor.to(self.device)
                dist.broadcast(copy, src=0)
                tensor.copy_(copy)
