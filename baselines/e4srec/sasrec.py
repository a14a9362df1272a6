"""E4SRec's item ID embeddings: those of the suite's own SASRec on the same data and split.

`sasrec_source` decides where they come from:
- `auto`: the checkpoint of a RecBole SASRec run of this same dataset under `run_dir` (the
  table3 SASRec row leaves one; the same seed preferred), else one trained here;
- `train`: SASRec trained here through the RecBole row (RecBole's model and trainer, the suite's
  split checked user by user, the suite's stopping rule);
- a path: that RecBole checkpoint, `<run folder>/checkpoints/SASRec-*.pth`.
A reused checkpoint's run folder must hold atomic data files identical to this dataset's (else it
is refused), and RecBole's internal item ids are mapped back to ours through the RecBole dataset
built from those files. The returned facts say which source was used and the SASRec settings.
"""
from __future__ import annotations

import filecmp
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from baselines.recbole import ATOMIC_NAME, RecBoleModel, RecBoleParams
from baselines.recbole.compat import import_recbole, load_checkpoint, outputs_under
from baselines.recbole.data import ItemIndex, recbole_config, recbole_dataset, write_atomic_files
from benchmarks.errors import ConfigError
from benchmarks.training import Trainer

ATOMIC_FILES = (f"{ATOMIC_NAME}.inter", f"{ATOMIC_NAME}.item")


def sasrec_item_embeddings(params, dataset, device, split, trainer) -> tuple[torch.Tensor, dict]:
    """(n_items + 1, d) SASRec item embeddings in our item order, and facts for the record."""
    run_root = Path(params.run_dir)
    source = params.sasrec_source
    if source == "train":
        return train_sasrec(params, dataset, device, split, trainer)
    if source == "auto":
        found = find_sasrec_checkpoints(dataset, run_root, seed=getattr(trainer, "seed", None))
        if found:
            return load_sasrec(found[0], "reused (auto)", dataset, device)
        return train_sasrec(params, dataset, device, split, trainer)
    return load_sasrec(Path(source), "checkpoint given", dataset, device)


def train_sasrec(params, dataset, device, split, trainer) -> tuple[torch.Tensor, dict]:
    sasrec_params = RecBoleParams(recbole_model="SASRec", max_seq_length=params.sasrec_max_seq_length,
                                  loss_type="CE", recbole_config=dict(params.sasrec_config or {}),
                                  pretrain_epochs=None, run_dir=params.run_dir)
    sasrec = RecBoleModel(sasrec_params, dataset, device)
    # RecBole trains in fp32 with the classic rows' batch (the LLM stage's batch and precision
    # differ); patience, validation metric and time budget are the run's own
    cfg = dict(trainer.cfg, precision="fp32", epochs=params.sasrec_epochs, batch_size=params.sasrec_batch_size,
               eval_every=1, warmup_steps=None)
    info = sasrec.fit(split, Trainer(cfg, trainer.eval_cfg, seed=trainer.seed, progress=getattr(trainer, "progress", False)))
    weights = sasrec.module.item_embedding.weight.detach().cpu()
    embeddings = weights[torch.from_numpy(sasrec.index.to_recbole)]  # row i = our item i
    checkpoints = sorted(Path(info["run_folder"]).glob("checkpoints/SASRec-*.pth"), key=lambda p: p.stat().st_mtime)
    return embeddings, {
        "source": "trained", "checkpoint": str(checkpoints[-1]) if checkpoints else None,
        "epochs": info["epochs"], "best_epoch": info["best_epoch"], "best_valid": info["best_valid"],
        "stopped_by": info["stopped_by"], "seconds": info["seconds"],
        "recbole_settings": sasrec.describe().get("recbole_settings"),
    }


def load_sasrec(path: Path, how: str, dataset, device) -> tuple[torch.Tensor, dict]:
    start = time.perf_counter()
    path = Path(path)
    folder = path.resolve().parent.parent  # <run folder>/checkpoints/SASRec-*.pth
    if not path.is_file() or path.parent.name != "checkpoints":
        raise ConfigError(f"model.sasrec_source {str(path)!r} is not a RecBole checkpoint inside a run "
                          "folder (<run folder>/checkpoints/SASRec-*.pth); use 'auto' or 'train'")
    with tempfile.TemporaryDirectory() as tmp:
        ours = write_atomic_files(dataset, tmp, ATOMIC_NAME)
        if not _same_atomic_data(ours, folder / "data" / ATOMIC_NAME):
            raise ConfigError(f"the SASRec checkpoint {path} was trained on other data than dataset "
                              f"{dataset.name!r} (its run folder's atomic files differ)")
        to_recbole = recbole_item_index(dataset, Path(tmp), device)
    import_recbole()  # the checkpoint pickles RecBole's Config
    checkpoint = load_checkpoint(path, folder, map_location="cpu")
    config = checkpoint["config"]
    if config["model"] != "SASRec":
        raise ConfigError(f"{path} is a {config['model']} checkpoint, not SASRec")
    weights = checkpoint["state_dict"]["item_embedding.weight"]
    if weights.shape[0] != dataset.n_items + 1:
        raise ConfigError(f"{path} has {weights.shape[0] - 1} items, dataset {dataset.name!r} has {dataset.n_items}")
    keys = ("hidden_size", "n_layers", "n_heads", "inner_size", "MAX_ITEM_LIST_LENGTH", "epochs",
            "learning_rate", "train_batch_size", "seed")
    return weights[torch.from_numpy(to_recbole)].float(), {
        "source": how, "checkpoint": str(path), "checkpoint_epoch": int(checkpoint["epoch"]) + 1,
        "best_valid_score": float(checkpoint["best_valid_score"]),
        "recbole_settings": {k: config[k] for k in keys if k in config}, "seconds": time.perf_counter() - start,
    }


def _same_atomic_data(ours: Path, theirs: Path) -> bool:
    return all((theirs / name).is_file() and filecmp.cmp(ours / name, theirs / name, shallow=False)
               for name in ATOMIC_FILES)


def recbole_item_index(dataset, atomic_folder: Path, device: torch.device) -> np.ndarray:
    """to_recbole[i] = RecBole's internal id of our item i (0 -> 0), from the RecBole dataset
    built from the atomic files in `atomic_folder`, by the RecBole rows' own mapping."""
    with outputs_under(atomic_folder / "_log"):
        rb_dataset = recbole_dataset(recbole_config("SASRec", atomic_folder, ATOMIC_NAME))
    return ItemIndex(rb_dataset, dataset.n_items).to_recbole


def find_sasrec_checkpoints(dataset, run_root: Path, seed: int | None = None) -> list[Path]:
    """SASRec checkpoints under `run_root` whose run folder holds exactly this dataset's atomic
    files: those trained with `seed` first (a multi-seed campaign pairs seed with seed), then the
    newest first."""
    candidates = sorted(Path(run_root).glob("*-SASRec-*/checkpoints/SASRec-*.pth"),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    if not candidates:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        ours = write_atomic_files(dataset, tmp, ATOMIC_NAME)
        found = [c for c in candidates if _same_atomic_data(ours, c.parent.parent / "data" / ATOMIC_NAME)]
    if seed is None or len(found) < 2:
        return found
    import_recbole()  # the checkpoints pickle RecBole's Config, which holds the seed
    same_seed = [c for c in found if load_checkpoint(c, c.parent.parent)["config"]["seed"] == int(seed)]
    return same_seed + [c for c in found if c not in same_seed]
