"""The classic sequential baselines of Table 3 (GRU4Rec, SASRec, BERT4Rec, NARM, STAMP, S3Rec, FDSA),
trained by RecBole's own model and trainer code and measured by the suite's evaluator and timer.

What comes from RecBole and what from the suite:

- Data and split are ours. Our processed dataset is written as RecBole atomic files
  (`baselines/recbole/data.py`: our item ids, the position in the user's sequence as timestamp),
  and RecBole is configured so that its split is our leave-one-out: `eval_args` split
  `{'LS': 'valid_and_test'}`, order `TO`, group_by user, mode full, no filtering. `fit` checks,
  user by user, that RecBole's validation and test targets and histories are exactly ours before
  it trains (users with fewer than 4 interactions are refused: RecBole's leave-one-out gives them
  no validation item, so its split would differ from ours).
- Models, losses and training are RecBole's: `get_model(name)`, `get_trainer(MODEL_TYPE, name)`,
  RecBole's optimiser defaults (Adam, learning rate 0.001) unless `model.recbole_config` sets
  them. Validation and early stopping are the suite's: every validation RecBole's trainer asks
  for is the suite's evaluator on our validation split (full ranking, history masked, full
  precision: `Trainer.validate`), decided by the suite's stopping rule, and RecBole's best
  checkpoint follows that decision (`trainer.suite_validated`). RecBole's own validation would rank
  history items too (see `recbole_evaluate`) and round to 4 decimals.
- Test metrics and latency are ours: `score` returns `full_sort_predict` scores with the columns
  put in our item-id order, so the shared evaluator (history masking, ties against the target)
  and the shared latency timer measure these models exactly as every other row of a table.

The suite's config maps onto RecBole's as follows (everything else is RecBole's default, or
`model.recbole_config`, whose keys must be RecBole keys and not one of those the suite sets):

    model.recbole_model    -> the RecBole model class
    model.max_seq_length   -> MAX_ITEM_LIST_LENGTH
    model.loss_type        -> loss_type (CE: train_neg_sample_args None; BPR: one uniform negative)
    model.pretrain_epochs  -> S3Rec's pretrain_epochs (null: RecBole's default)
    train.epochs           -> epochs
    train.patience         -> stopping_step (patience - 1: RecBole counts one more, see trainer.suite_validated)
    train.batch_size       -> train_batch_size
    train.eval_every       -> eval_step
    train.valid_metric     -> valid_metric (recall@10 -> Recall@10)
    train.max_minutes      -> stops after the validation that crosses the budget
    eval.ks                -> topk (metrics Recall, NDCG)
    seed                   -> seed (init_seed(seed, reproducibility=True))
    device                 -> config["device"]
    train.lr, adam_eps, weight_decay, warmup_ratio, lr_schedule, max_grad_norm: not used (they
    belong to the suite's own training loop); set RecBole's learning_rate, weight_decay,
    clip_grad_norm through model.recbole_config.

Everything RecBole writes (atomic files, checkpoints, TensorBoard events, its log) goes to
`<model.run_dir>/<dataset>-<model>-<hash of the run's settings>/`, never the working directory.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.errors import ConfigError
from benchmarks.models import Recommender
from benchmarks.split import pad_histories

from .compat import import_recbole, load_checkpoint, outputs_under
from .data import ItemIndex, recbole_config, write_atomic_files
from .settings import (ATOMIC_NAME, MIN_INTERACTIONS, NEEDS_ATTRIBUTES, SUPPORTED_MODELS, RecBoleParams,
                       check_extra_keys, default_search_space, model_yaml_keys, recbole_settings)
from .trainer import TimeBudgetSpent, suite_validated

def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


class RecBoleModel(Recommender):
    Params = RecBoleParams
    members = SUPPORTED_MODELS  # `--model SASRec` is {name: recbole, recbole_model: SASRec}
    input_unit = "items"

    @classmethod
    def search_space(cls, params) -> dict:
        return default_search_space(params.recbole_model)  # settings.py says what and why

    def build(self) -> None:
        params, dataset = self.params, self.dataset
        self.name = params.recbole_model
        self.max_seq_length = params.max_seq_length
        self.loss_type = params.loss_type
        self.pretrain_epochs = params.pretrain_epochs
        self.extra = params.recbole_config
        if self.name in NEEDS_ATTRIBUTES:
            attrs = dataset.item_attributes
            if attrs is None or not any(len(a) for a in attrs[1:]):
                raise ConfigError(
                    f"{self.name} needs item features ({NEEDS_ATTRIBUTES[self.name]} = item attributes), "
                    f"but dataset {dataset.name!r} has no item attributes; use a dataset with attributes "
                    "(e.g. MovieLens genres, Amazon categories) or another model"
                )
        short = sum(1 for s in dataset.sequences if len(s) < MIN_INTERACTIONS)
        if short:
            raise ConfigError(
                f"{short} user(s) of dataset {dataset.name!r} have fewer than {MIN_INTERACTIONS} "
                "interactions: RecBole's leave-one-out gives them no validation item, so its split "
                "would not equal ours (raise data.k_core to 4 or more)"
            )
        self.run_root = Path(params.run_dir)
        check_extra_keys(self.name, self.extra, lambda extra: self._build_config(self.run_root / "_check", None, 0, extra=extra))
        self.module = None
        self.config = None
        self.run_folder: Path | None = None

    # ------------------------------------------------------------------ configuration

    def _build_config(self, folder: Path, train: dict | None, seed: int, *, ks=(10, 20),
                      extra: dict | None = None, stage: str | None = None,
                      pre_model_path: Path | None = None):
        settings = recbole_settings(self.params, self.device, folder, train, ks, seed, stage, pre_model_path)
        settings.update(self.extra if extra is None else extra)
        try:
            config = recbole_config(self.name, folder / "data", ATOMIC_NAME, settings)
        except (ValueError, NotImplementedError, RuntimeError, TypeError, KeyError) as err:
            raise ConfigError(f"RecBole rejected the configuration of {self.name}: {err}") from err
        config["device"] = self.device
        return config

    def _run_folder(self, trainer) -> Path:
        key = {
            "data": self.dataset.content_hash,
            "model": {k: v for k, v in self.params.as_dict().items() if k != "run_dir"},
            "train": trainer.cfg,
            "ks": list(trainer.eval_cfg.get("ks", [10, 20])),
            "seed": trainer.seed,
            "device": str(self.device),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(self.dataset.name)) or "data"
        return self.run_root / f"{safe}-{self.name}-{digest}"

    # ------------------------------------------------------------------ data

    def recbole_data(self, config):
        """RecBole's dataset and its train/valid/test dataloaders for `config`."""
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import init_seed

        init_seed(config["seed"], config["reproducibility"])
        rb_dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, rb_dataset)
        return rb_dataset, train_data, valid_data, test_data

    def _check_split(self, split, valid_data, test_data) -> None:
        """RecBole's validation and test rows are ours, user by user (targets and histories)."""
        L = self.max_seq_length
        n_users = len(self.dataset.sequences)
        for name, loader, targets, histories in (
            ("validation", valid_data, split.valid_targets, split.valid_histories),
            ("test", test_data, split.test_targets, split.test_histories),
        ):
            rows = self.index.rows(loader)
            users = rows["users"]
            if len(users) != n_users or not np.array_equal(np.sort(users), np.arange(n_users)):
                raise RuntimeError(f"RecBole's {name} split does not have exactly one row per user")
            if not np.array_equal(rows["targets"], np.asarray(targets)[users]):
                raise RuntimeError(f"RecBole's {name} targets differ from our leave-one-out split")
            ours = pad_histories([histories[u] for u in users], L)
            theirs = pad_histories(rows["histories"], L)
            width = max(ours.shape[1], theirs.shape[1])
            if not np.array_equal(np.pad(ours, ((0, 0), (0, width - ours.shape[1]))),
                                  np.pad(theirs, ((0, 0), (0, width - theirs.shape[1])))):
                raise RuntimeError(f"RecBole's {name} histories differ from ours (last {L} items)")

    # ------------------------------------------------------------------ training

    def fit(self, split, trainer) -> dict:
        """RecBole's model, loss, optimiser and training epochs; the suite's validation and
        stopping rule. Each validation RecBole's trainer asks for is the suite's evaluator on our
        validation split (`Trainer.validate`: full ranking, history masked, full precision), fed
        to the suite's `EarlyStopping`; RecBole's own early stopping and best checkpoint then
        follow that decision (see `trainer.suite_validated`)."""
        import_recbole()
        from recbole.utils import get_model, get_trainer, init_seed

        from benchmarks.split import leave_one_out
        from benchmarks.training import EarlyStopping, training_throughput

        start = time.perf_counter()
        train_cfg, seed = trainer.cfg, int(trainer.seed)
        if train_cfg.get("precision", "fp32") != "fp32":
            raise ValueError(f"{self.name}: RecBole's trainer trains in fp32 only; "
                             f"train.precision={train_cfg['precision']!r} is for the suite's own loop")
        ks = trainer.eval_cfg.get("ks", [10, 20])
        folder = self._run_folder(trainer)
        if folder.exists():  # an earlier run of the same settings: start clean
            shutil.rmtree(folder)
        write_atomic_files(self.dataset, folder / "data", ATOMIC_NAME)
        self.run_folder = folder
        progress = getattr(trainer, "progress", False)

        pretrain = None
        with outputs_under(folder):
            if self.name == "S3Rec":
                config = self._build_config(folder, train_cfg, seed, ks=ks, stage="pretrain")
            else:
                config = self._build_config(folder, train_cfg, seed, ks=ks)
            rb_dataset, train_data, valid_data, test_data = self.recbole_data(config)
            self.index = ItemIndex(rb_dataset, self.n_items)
            self._columns = torch.from_numpy(self.index.to_recbole).to(self.device)
            # RecBole splits the whole data itself: its rows must be our leave-one-out, test rows
            # included (checked against the dataset, not the training split, which has no test part)
            self._check_split(leave_one_out(self.dataset), valid_data, test_data)
            del test_data

            if self.name == "S3Rec":
                pretrain = self._pretrain(config, train_data, folder, progress)
                config = self._build_config(folder, train_cfg, seed, ks=ks, stage="finetune",
                                            pre_model_path=Path(pretrain["weights"]))

            init_seed(config["seed"], config["reproducibility"])
            model = get_model(self.name)(config, train_data._dataset).to(self.device)
            self.module = model  # prepare/score read it: validation scores the model being trained
            metric = str(train_cfg["valid_metric"])
            stopping = EarlyStopping(train_cfg["patience"])
            history: list[dict] = []
            rb_trainer = suite_validated(get_trainer(config["MODEL_TYPE"], self.name))(config, model)

            def validate() -> tuple[float, dict]:
                epoch = len(rb_trainer.train_loss_dict)  # epochs trained so far (RecBole counts from 0)
                valid = trainer.validate(self, split)
                # the trainer's hook hears it (a tuning trial's pruning)
                trainer.validated(valid, epoch, time.perf_counter() - start)
                improved = stopping.update(valid[metric], epoch)
                loss = rb_trainer.train_loss_dict[epoch - 1]  # RecBole sums the batches' losses
                history.append({"epoch": epoch, "loss": float(loss) / max(1, len(train_data)),
                                "valid": valid, "seconds": time.perf_counter() - start})
                if progress:
                    from tqdm.auto import tqdm

                    tqdm.write(f"  [{self.name}] epoch {epoch}: loss {history[-1]['loss']:.4f} "
                               f"valid {metric} {valid[metric]:.4f}{' (best)' if improved else ''}")
                return (valid[metric] if improved else -math.inf), valid

            rb_trainer.suite_validate = validate
            budget = train_cfg.get("max_minutes")

            def after_validation(epoch_idx, valid_score):
                if budget and time.perf_counter() - start > 60 * float(budget):
                    raise TimeBudgetSpent

            stopped = "epochs"
            try:
                rb_trainer.fit(train_data, valid_data, verbose=True, saved=True,
                               show_progress=False, callback_fn=after_validation)
            except TimeBudgetSpent:
                stopped = "time_budget"
            finally:
                rb_trainer.tensorboard.close()
            epochs_run = len(rb_trainer.train_loss_dict)
            if stopped == "epochs" and stopping.should_stop:
                stopped = "early_stopping"

        # the best validated weights, from the checkpoint RecBole's trainer saved in our folder
        checkpoint = load_checkpoint(rb_trainer.saved_model_file, folder, map_location=self.device)
        model.load_state_dict(checkpoint["state_dict"])
        model.eval()
        if hasattr(model, "feature_embed_layer"):
            # FDSA's feature layer keeps a reference to RecBole's whole training dataset, which only
            # its constructor reads; drop it so the trained model does not hold the data in memory.
            model.feature_embed_layer.dataset = None
        self.config = config
        info = {
            "epochs": epochs_run,
            "best_epoch": stopping.best_epoch,
            "best_valid": {metric: stopping.best if math.isfinite(stopping.best) else None},
            "valid_evaluator": "the suite's evaluator (full ranking, history masked as eval.mask_history)",
            "stopped_by": stopped,
            "seconds": time.perf_counter() - start,
            "history": history,
            "run_folder": str(folder),
        }
        if rb_trainer.steps:  # as the suite's loop records it; S3Rec's pre-training is not in it
            info["throughput"] = training_throughput(rb_trainer.step_flops, rb_trainer.steps, rb_trainer.rows,
                                                     time.perf_counter() - rb_trainer.training_started,
                                                     "fp32", self.device)
        if pretrain is not None:
            info["pretrain"] = {k: v for k, v in pretrain.items() if k != "weights"}
        return info

    def _pretrain(self, config, train_data, folder: Path, progress: bool) -> dict:
        """S3Rec's self-supervised pre-training on item attributes, by RecBole's S3RecTrainer;
        its weights then initialise the fine-tuning model (RecBole's pre_model_path)."""
        from recbole.utils import get_model, get_trainer, init_seed

        start = time.perf_counter()
        epochs = int(config["pretrain_epochs"])
        # RecBole saves every save_step epochs; the suite saves the final weights itself below.
        config["save_step"] = epochs + 1
        init_seed(config["seed"], config["reproducibility"])
        model = get_model(self.name)(config, train_data._dataset).to(self.device)
        rb_trainer = get_trainer(config["MODEL_TYPE"], self.name)(config, model)
        try:
            rb_trainer.fit(train_data, verbose=True, show_progress=False)  # train_stage: pretrain
        finally:
            rb_trainer.tensorboard.close()
        losses = [float(sum(v) if isinstance(v, tuple) else v) / max(1, len(train_data))
                  for _, v in sorted(rb_trainer.train_loss_dict.items())]  # mean per batch
        # weights only (no pickled Config), so RecBole's own torch.load in S3Rec's fine-tuning
        # constructor loads it under torch >= 2.6's weights_only default
        path = Path(config["checkpoint_dir"]) / f"S3Rec-pretrained-{epochs}.pth"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)
        if progress:
            from tqdm.auto import tqdm

            tqdm.write(f"  [S3Rec] pre-trained {epochs} epochs, last loss {losses[-1]:.4f}")
        return {"epochs": epochs, "seconds": time.perf_counter() - start,
                "final_loss": losses[-1] if losses else None, "weights": str(path)}

    # ------------------------------------------------------------------ scoring

    def prepare(self, histories):
        """RecBole's sequential input on the model's device: the last max_seq_length items, in
        RecBole's ids, left-aligned and padded to max_seq_length (as its dataloaders build them)."""
        if self.module is None:
            raise RuntimeError("RecBoleModel.prepare before fit")
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        if len(lengths) and lengths.min() < 1:
            raise ValueError("RecBole's sequential models need at least one history item per user")
        padded = pad_histories(histories, self.max_seq_length)
        items = np.zeros((len(histories), self.max_seq_length), dtype=np.int64)
        items[:, : padded.shape[1]] = self.index.to_recbole[padded]
        from recbole.data.interaction import Interaction

        return Interaction({
            self.module.ITEM_SEQ: torch.from_numpy(items),
            self.module.ITEM_SEQ_LEN: torch.from_numpy(np.minimum(lengths, self.max_seq_length)),
        }).to(self.device)

    def score(self, batch) -> torch.Tensor:
        # no_grad, not inference_mode: the evaluator and the timer already serve in inference mode,
        # and a second inference_mode inside a torch.compile'd score fails to compile (torch 2.13)
        with torch.no_grad():
            scores = self.module.full_sort_predict(batch)  # (B, RecBole item_num), column 0 [PAD]
            out = scores.index_select(1, self._columns)  # column j = our item j
            out[:, 0] = float("-inf")
        return out

    def input_length(self, histories) -> np.ndarray:
        lengths = np.array([len(h) for h in histories], dtype=np.float64)
        if self.name == "BERT4Rec":
            # RecBole's BERT4Rec appends [MASK] inside max_seq_length positions: a full history
            # gives up its oldest item to it. Counted: the items read plus the [MASK].
            return np.minimum(lengths, self.max_seq_length - 1) + 1
        return np.minimum(lengths, self.max_seq_length)

    def describe(self) -> dict:
        info = {"recbole_model": self.name, "max_seq_length": self.max_seq_length,
                "loss_type": self.loss_type, "run_folder": str(self.run_folder) if self.run_folder else None}
        if self.module is not None:
            info["parameters"] = sum(p.numel() for p in self.module.parameters())
            info["trainable_parameters"] = sum(p.numel() for p in self.module.parameters() if p.requires_grad)
        if self.config is not None:
            keys = model_yaml_keys(self.name) + [
                "learner", "learning_rate", "weight_decay", "clip_grad_norm", "train_batch_size",
                "epochs", "stopping_step", "eval_step", "valid_metric", "MAX_ITEM_LIST_LENGTH",
                "eval_args", "seed"]
            info["recbole_settings"] = _json_safe({k: self.config[k] for k in dict.fromkeys(keys)
                                                   if k in self.config and k != "pre_model_path"})
        if self.name == "BERT4Rec":
            info["input_length_note"] = "counts the [MASK] token RecBole's BERT4Rec appends"
        return info

