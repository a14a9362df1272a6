"""The one training loop for the suite's own neural models.

A model opts in by subclassing `NeuralRecommender`: it owns a `module` (torch.nn.Module), builds
its training batches for an epoch, and computes a loss for a batch. Everything else is shared, so
every model is trained the same way: AdamW, warm-up and learning-rate schedule, gradient
clipping, validation on the validation split with the shared evaluator, early stopping with
patience on the validation metric, and the best weights restored at the end. Launched as several
processes (`accelerate launch --multi_gpu ...`), the same loop trains data parallel
(benchmarks/data_parallel.py): each process takes its share of every batch, gradients are summed
across processes, and only the main process validates and decides.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm
from transformers import get_scheduler

from .checkpoints import random_states, restore_random_states
from .data_parallel import data_parallel, rows_share
from .evaluate import evaluate, evaluation_settings, validation_users
from .models import Recommender
from .precision import autocast, warn_if_bf16_is_emulated
from .split import next_item_batches, pad_histories


class EarlyStopping:
    """The suite's one stopping rule, the paper's: a validation counts as a gain only when it beats
    the best value so far (a tie is no gain); training stops after `patience` validations in a row
    without a gain, and the weights of the best validation are the model's. The suite's own loop
    and the RecBole rows (baselines/recbole/) both decide through this object."""

    def __init__(self, patience: int, best: float = -math.inf):
        if int(patience) < 1:
            raise ValueError(f"train.patience must be >= 1, got {patience!r}")
        self.patience = int(patience)
        self.best = best
        self.best_epoch = 0
        self.since_best = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record one validation; True when it is a gain (the caller keeps these weights)."""
        if value > self.best:
            self.best, self.best_epoch, self.since_best = float(value), int(epoch), 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.since_best >= self.patience


def _snapshot(module: torch.nn.Module) -> dict:
    """A host copy of the weights, independent of later training steps."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class NeuralRecommender(Recommender):
    """A model trained by `Trainer`. Subclasses set `self.module` and implement the two hooks."""

    module: torch.nn.Module

    def training_batches(self, split, epoch: int, rng: np.random.Generator, batch_size: int) -> list:
        """The batches of one epoch (a list, so the schedule knows the number of steps)."""
        raise NotImplementedError

    def loss(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def shard_batch(self, batch, index: int, count: int):
        """Process `index` of `count`'s share of a training batch under data parallel training:
        by default the rows (benchmarks/data_parallel.py, rows_share); a model whose batch holds
        entries shared by all rows that could be taken for rows overrides this."""
        return rows_share(batch, index, count)

    def trainable_parameters(self):
        return [p for p in self.module.parameters() if p.requires_grad]

    def fit(self, split, trainer: "Trainer") -> dict:
        return trainer.fit(self, split)

    def describe(self) -> dict:
        total = sum(p.numel() for p in self.module.parameters())
        trainable = sum(p.numel() for p in self.module.parameters() if p.requires_grad)
        return {"parameters": total, "trainable_parameters": trainable}


def mask_padding_column(logits: torch.Tensor) -> torch.Tensor:
    """Scores with column 0 (padding, never an item) at -inf."""
    return logits.index_fill(-1, torch.zeros(1, dtype=torch.long, device=logits.device), float("-inf"))


class WindowedNextItemModel(NeuralRecommender):
    """A model that reads each user's last `max_seq_length` items as an id matrix (0-padded on
    the right) with its mask, and trains on next-item samples drawn by its `strategy`
    (benchmarks/split.py). Its Params have `max_seq_length` and `strategy`; a model that needs
    each sample's user sets `batch_users`, or reads user ids (`reads_user_ids`): its batches are
    then (items, targets, users)."""

    batch_users = False

    @property
    def window(self) -> int:
        return self.params.max_seq_length

    def training_batches(self, split, epoch: int, rng: np.random.Generator, batch_size: int) -> list:
        return next_item_batches(split.train, self.params.strategy, self.window, rng, batch_size,
                                 with_users=self.batch_users or self.reads_user_ids)

    def prepare(self, histories):
        items = torch.from_numpy(pad_histories(histories, self.window)).to(self.device)
        return items, items > 0

    def input_length(self, histories) -> np.ndarray:
        return np.array([min(len(h), self.window) for h in histories], dtype=np.float64)


def training_throughput(step_flops: float, steps: int, rows: int, seconds: float, precision: str, device) -> dict:
    """Where a training's time goes: batch rows and steps per second (training and validation
    together, this sitting), the first step's work (forward and backward, FlopCounterMode) and the
    share of the device's measured matrix-multiply peak at the training precision it reaches."""
    from .latency import matmul_peak

    peak = matmul_peak(device, torch.bfloat16 if precision == "bf16" else torch.float32)
    achieved = step_flops * steps / max(seconds, 1e-9) / 1e12
    return {"rows_per_second": rows / max(seconds, 1e-9), "steps_per_second": steps / max(seconds, 1e-9),
            "gflop_per_step": step_flops / 1e9, "achieved_tflops": achieved, "peak": peak,
            "share_of_peak": achieved / peak["tflops"] if peak["tflops"] > 0 else None}


class Trainer:
    """The shared loop. With `checkpoint` (a file path) and `checkpoint_minutes`, the state of a
    long training (weights, optimiser, schedule, random generators, the stopping rule's state and
    the curve so far) is saved after a step every so many minutes, and a later `fit` of the same
    run resumes from it (cut mid-epoch, it draws that epoch's batches again from the generators'
    state at the epoch's start, then skips the steps done): a run longer than one sitting (or one
    call to a GPU machine) finishes over several. A finished fit leaves a final checkpoint (its
    best weights and result), so a two-stage model resumes in its second stage; the runner removes
    the files once the run's record is written."""

    def __init__(self, train: dict, eval_cfg: dict, seed: int, progress: bool = True, *,
                 checkpoint: Path | None = None, checkpoint_minutes: float | None = None,
                 on_validation: Callable[[dict, int, float | None], None] | None = None):
        autocast(train["precision"], "cpu")  # an unknown precision fails before any work
        self.cfg = train
        self.eval_cfg = eval_cfg
        self.seed = seed
        self.progress = progress
        self.checkpoint = Path(checkpoint) if checkpoint is not None and checkpoint_minutes is not None else None
        self.checkpoint_minutes = checkpoint_minutes
        # hears every validation of the training (metrics, epoch, seconds): a tuning trial reports its
        # validation curve to Optuna through it, and may stop the training (optuna.TrialPruned)
        self.on_validation = on_validation

    def with_epochs(self, epochs: int | None, lr: float | None = None) -> "Trainer":
        """The same trainer with another epoch budget and learning rate (None keeps each), for a
        second stage."""
        cfg = dict(self.cfg)
        if epochs is not None:
            cfg["epochs"] = int(epochs)
        if lr is not None:
            cfg["lr"] = float(lr)
        stage = self.checkpoint.with_name(self.checkpoint.name + ".stage2") if self.checkpoint else None
        return Trainer(cfg, self.eval_cfg, self.seed + 1, self.progress, checkpoint=stage,
                       checkpoint_minutes=self.checkpoint_minutes, on_validation=self.on_validation)

    def _save(self, state: dict) -> None:
        from .records import atomic_write

        atomic_write(self.checkpoint, lambda tmp: torch.save(state, tmp))

    def _load(self) -> dict | None:
        if self.checkpoint is None or not self.checkpoint.is_file():
            return None
        return torch.load(self.checkpoint, map_location="cpu", weights_only=False)  # the suite's own file

    def validate(self, model: Recommender, split) -> dict:
        """The validation metrics early stopping reads, for every trained model: the suite's
        evaluator on the validation targets (never the test targets: the split handed to `fit` has
        none), full ranking over all items, history masked as in the run's eval settings, full
        precision, on all users or the run's fixed subset (eval.valid_max_users, else max_users)."""
        module = getattr(model, "module", None)
        if module is not None:
            module.eval()
        settings = evaluation_settings(self.eval_cfg)
        del settings["max_users"], settings["user_subset_seed"]
        users = validation_users(split.n_users, self.eval_cfg)
        result = evaluate(model, [split.valid_histories[u] for u in users], split.valid_targets[users],
                          **{**settings, "candidates": "full"}, users=users)
        return result.metrics

    def validated(self, metrics: dict, epoch: int, seconds: float | None = None) -> None:
        """One validation of the training, told to the `on_validation` hook with the stage's
        training seconds so far (every sitting's; None where the loop does not say): the shared
        loop calls it after each validation, and so does every loop that validates through
        `validate` (the RecBole rows'), so a tuning trial hears every row's curve."""
        if self.on_validation is not None:
            self.on_validation(metrics, int(epoch), seconds)

    def replay(self, history: list[dict]) -> None:
        """The validations of a curve trained in an earlier sitting (a checkpoint, a stage
        cache), told to the hook in order, so a resumed tuning trial's pruner hears the whole
        curve with its steps where an uninterrupted training would have put them."""
        for entry in history:
            if "valid" in entry:
                self.validated(entry["valid"], entry["epoch"], entry.get("seconds"))

    def fit(self, model: NeuralRecommender, split, *, keep_initial: bool = False) -> dict:
        """Train with early stopping; the best validated weights are restored at the end.
        keep_initial: validate the weights as they are first and keep them unless training
        beats them (a second stage must never end worse than the first)."""
        cfg = self.cfg
        warn_if_bf16_is_emulated(cfg["precision"], model.device)
        parallel = data_parallel()  # None: this process trains alone
        main = parallel is None or parallel.is_main  # validates, decides, saves checkpoints
        rng = np.random.default_rng(self.seed)
        params = model.trainable_parameters()
        if not params:
            raise ValueError(f"{type(model).__name__} has no trainable parameters")
        optimizer = torch.optim.AdamW(
            params, lr=float(cfg["lr"]), eps=float(cfg["adam_eps"]), weight_decay=float(cfg["weight_decay"])
        )
        epochs = int(cfg["epochs"])
        batch_size = int(cfg["batch_size"])
        first_random = random_states(rng, model.device)  # epoch 1's batches are drawn from here
        first_batches = model.training_batches(split, 0, rng, batch_size)
        total_steps = max(1, len(first_batches) * epochs)
        scheduler = get_scheduler(
            cfg["lr_schedule"],
            optimizer,
            num_warmup_steps=(int(cfg["warmup_steps"]) if cfg.get("warmup_steps") is not None
                              else int(math.ceil(float(cfg["warmup_ratio"]) * total_steps))),
            num_training_steps=total_steps,
        )
        metric = cfg["valid_metric"]
        stopping = EarlyStopping(cfg["patience"])
        best_state, history = None, []
        start = time.perf_counter()
        stopped = "epochs"
        first_epoch, resumes, partial = 1, 0, None
        saved = self._load()
        if saved is not None and saved.get("finished"):  # this stage ended in an earlier sitting
            model.module.load_state_dict(saved["model"])
            model.module.eval()
            if main:
                self.replay(saved["result"].get("history", []))
            return saved["result"]
        if parallel is not None:  # every process starts from the main process's weights
            parallel.broadcast_module(model.module)
        if saved is not None:  # (every process reads the same checkpoint: the main process's)
            model.module.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            restore_random_states(saved["random"], rng, model.device)
            stopping.__dict__.update(saved["stopping"])
            best_state, history = saved["best_state"], saved["history"]
            start -= saved["seconds"]
            first_epoch, resumes = saved["epoch"] + 1, saved["resumes"] + 1
            partial = saved.get("partial")  # the epoch after saved["epoch"], cut after some steps
            if main:
                self.replay(history)
            first_batches = None  # drawn with a fresh generator: the saved one goes on instead
        elif keep_initial:
            if main:
                initial = self.validate(model, split)
                self.validated(initial, 0, time.perf_counter() - start)
                stopping.update(initial[metric], epoch=0)
                history.append({"epoch": 0, "valid": initial, "seconds": time.perf_counter() - start})
            best_state = _snapshot(model.module)
        last_save = time.perf_counter()
        step_flops, steps, rows, sitting_start = None, 0, 0, time.perf_counter()
        budget_s = 60 * float(cfg["max_minutes"]) if cfg["max_minutes"] else math.inf

        def progress(done_epoch: int, **extra) -> dict:
            return {"model": _snapshot(model.module), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "random": random_states(rng, model.device),
                    "stopping": dict(stopping.__dict__), "best_state": best_state, "history": history,
                    "epoch": done_epoch, "seconds": time.perf_counter() - start, "resumes": resumes, **extra}

        for epoch in range(first_epoch, epochs + 1):
            if partial is not None:  # this epoch was cut in an earlier sitting: the same batches again
                restore_random_states(partial["epoch_random"], rng, model.device)
            epoch_random = first_random if epoch == 1 and first_batches is not None else random_states(rng, model.device)
            batches = first_batches if epoch == 1 and first_batches is not None else \
                model.training_batches(split, epoch - 1, rng, batch_size)
            losses = []
            if partial is not None:  # the generators as they were at the cut; its steps are done
                restore_random_states(saved["random"], rng, model.device)
                losses, partial = list(partial["losses"]), None
            model.module.train()
            bar = tqdm(batches[len(losses):], desc=f"epoch {epoch}", initial=len(losses), total=len(batches),
                       leave=False, disable=not self.progress)
            for batch in bar:
                over_budget = time.perf_counter() - start > budget_s
                if parallel is not None and budget_s < math.inf:  # the main process's clock decides
                    over_budget = parallel.agree(over_budget)
                if over_budget:
                    # the time budget ends training mid-epoch; the partial epoch is validated
                    # below and recorded with how many of its batches ran
                    stopped = "time_budget"
                    break
                # the first step's work is counted (forward and backward), for the throughput
                counting = FlopCounterMode(display=False) if step_flops is None else contextlib.nullcontext()
                with counting:
                    if parallel is None:
                        with autocast(cfg["precision"], model.device):
                            loss = model.loss(batch).float()
                        value = loss
                    else:  # this process's share, weighted by its rows; the global loss from all
                        share, weight = parallel.share(model, batch)
                        with autocast(cfg["precision"], model.device):
                            loss = model.loss(share).float() * weight if weight > 0 else None
                        value = parallel.sum_loss(loss)
                    if not torch.isfinite(value):
                        raise FloatingPointError(f"non-finite training loss {value.item()} at epoch {epoch}")
                    optimizer.zero_grad(set_to_none=True)
                    if loss is not None:
                        loss.backward()
                if parallel is not None:
                    parallel.sum_gradients(params)
                if step_flops is None:
                    step_flops = float(counting.get_total_flops())
                steps += 1
                rows += len(batch[0]) if hasattr(batch[0], "__len__") else 1
                if cfg["max_grad_norm"]:
                    torch.nn.utils.clip_grad_norm_(params, float(cfg["max_grad_norm"]))
                optimizer.step()
                scheduler.step()
                losses.append(value.item())
                if main and self.checkpoint is not None and len(losses) < len(batches) and \
                        time.perf_counter() - last_save >= 60 * float(self.checkpoint_minutes):
                    # mid-epoch: an epoch longer than a sitting (or a GPU call) still moves on
                    self._save(progress(epoch - 1, partial={"epoch": epoch, "losses": losses, "epoch_random": epoch_random}))
                    last_save = time.perf_counter()
            entry = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan")}
            if stopped == "time_budget":
                entry["batches"] = f"{len(losses)} of {len(batches)}"
            if epoch % int(cfg["eval_every"]) == 0 or epoch == epochs or stopped == "time_budget":
                gain = False
                if main:
                    valid = self.validate(model, split)
                    self.validated(valid, epoch, time.perf_counter() - start)
                    entry["valid"] = valid
                    gain = stopping.update(valid[metric], epoch)
                if parallel is not None:  # the main process's decisions, so that weights stay the same
                    gain, stop = (bool(v) for v in parallel.from_main(gain, stopping.should_stop))
                    if stop and not main:  # the others follow the main process's stopping rule
                        stopping.since_best = stopping.patience
                if gain:
                    best_state = _snapshot(model.module)
            entry["seconds"] = time.perf_counter() - start
            history.append(entry)
            if self.progress:
                shown = f" valid {metric} {entry['valid'][metric]:.4f}" if "valid" in entry else ""
                tqdm.write(f"  epoch {epoch}: loss {entry['loss']:.4f}{shown}")
            if stopping.should_stop:
                stopped = "early_stopping"
                break
            if stopped == "time_budget":
                break
            if main and self.checkpoint is not None and time.perf_counter() - last_save >= 60 * float(self.checkpoint_minutes):
                self._save(progress(epoch))
                last_save = time.perf_counter()
        if best_state is not None:
            model.module.load_state_dict(best_state)
        model.module.eval()
        result = {
            "epochs": sum(1 for entry in history if entry["epoch"] > 0),
            "best_epoch": stopping.best_epoch,
            "best_valid": {metric: stopping.best},
            "stopped_by": stopped,
            "seconds": time.perf_counter() - start,
            "history": history,
            "processes": 1 if parallel is None else parallel.world_size,  # data parallel: how many trained
        }
        if steps and main:
            result["throughput"] = training_throughput(step_flops, steps, rows, time.perf_counter() - sitting_start,
                                                       cfg["precision"], model.device)
        if resumes:
            result["resumed"] = resumes  # sittings after the first
        if main and self.checkpoint is not None:
            self._save({"finished": True, "model": _snapshot(model.module), "result": result})
        return result
