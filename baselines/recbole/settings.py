"""What the suite tells RecBole: the supported models, their parameters, the RecBole settings
the suite sets for a run, and the check of the extra RecBole keys a config may add."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.errors import ConfigError
from benchmarks.models import ModelParams

from .compat import import_recbole
from .trainer import metric_name

SUPPORTED_MODELS = ("GRU4Rec", "SASRec", "BERT4Rec", "NARM", "STAMP", "S3Rec", "FDSA")
NEEDS_ATTRIBUTES = {"FDSA": "selected_features", "S3Rec": "item_attribute"}
ATTRIBUTE_FIELD = "attributes"  # the .item column written by data.write_atomic_files
ATOMIC_NAME = "suite_data"  # not a RecBole preset name: no dataset yaml of RecBole's applies
LOSS_TYPES = ("CE", "BPR")  # every supported model accepts both (see their RecBole yaml files)
MIN_INTERACTIONS = 4  # RecBole's leave-one-out gives a user with 3 interactions no validation row

# RecBole keys the suite sets itself: model.recbole_config may not change them.
_SUITE_KEYS = {
    "MAX_ITEM_LIST_LENGTH": "model.max_seq_length",
    "loss_type": "model.loss_type",
    "train_neg_sample_args": "model.loss_type",
    "pretrain_epochs": "model.pretrain_epochs",
    "epochs": "train.epochs",
    "stopping_step": "train.patience",
    "train_batch_size": "train.batch_size",
    "eval_step": "train.eval_every",
    "valid_metric": "train.valid_metric",
    "topk": "eval.ks",
    "seed": "seed",
    "device": "device",
    "use_gpu": "device",
    "gpu_id": "device",
}
_PROTOCOL_KEYS = {
    # our data and split
    "data_path", "dataset", "USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD", "RATING_FIELD",
    "load_col", "unload_col", "unused_col", "additional_feat_suffix", "user_inter_num_interval",
    "item_inter_num_interval", "val_interval", "rm_dup_inter", "filter_inter_by_user_or_item",
    "benchmark_filename", "field_separator", "seq_separator", "eval_args", "repeatable",
    "ITEM_LIST_LENGTH_FIELD", "LIST_SUFFIX", "alias_of_item_id", "alias_of_user_id",
    "metrics", "valid_metric_bigger", "reproducibility",
    # the two stages of S3Rec and the feature fields, which the suite wires up
    "train_stage", "pre_model_path", "save_step", "item_attribute", "selected_features",
    # where RecBole writes
    "checkpoint_dir", "save_dataset", "dataset_save_path", "save_dataloaders",
    "dataloaders_save_path", "show_progress", "log_wandb", "state",
    # derived by RecBole's Config itself
    "model", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "single_spec", "local_rank",
    "world_size", "nproc", "offset", "ip", "port", "valid_neg_sample_args",
    "test_neg_sample_args", "eval_neg_sample_args",
}


@dataclass
class RecBoleParams(ModelParams):
    recbole_model: str | None = None         # one of SUPPORTED_MODELS
    max_seq_length: int = 20                 # MAX_ITEM_LIST_LENGTH: the last N items of a history are read
    loss_type: str = "CE"                    # every supported model takes CE (RecBole's default for all seven)
    recbole_config: dict = field(default_factory=dict)  # extra RecBole settings (hidden sizes, learning_rate...)
    pretrain_epochs: int | None = None       # S3Rec only: pre-training epochs (null: RecBole's default, 500)
    run_dir: str = ".cache/recbole_runs"     # where each run's RecBole outputs go

    def validate(self) -> None:
        if self.recbole_model not in SUPPORTED_MODELS:
            raise ConfigError(f"model.recbole_model {self.recbole_model!r} is not supported; supported RecBole "
                              f"models: {', '.join(SUPPORTED_MODELS)}")
        self.positive_int("max_seq_length")
        if self.recbole_model == "BERT4Rec" and self.max_seq_length < 2:
            raise ConfigError("model.max_seq_length must be >= 2 for BERT4Rec (one position holds [MASK])")
        self.choice("loss_type", LOSS_TYPES)
        if self.pretrain_epochs is not None and self.recbole_model != "S3Rec":
            raise ConfigError(f"model.pretrain_epochs is for S3Rec only; {self.recbole_model} has no pre-training stage")
        self.positive_int("pretrain_epochs", allow_none=True)
        if self.recbole_config is None:
            self.recbole_config = {}
        if not isinstance(self.recbole_config, dict):
            raise ConfigError(f"model.recbole_config must be a mapping, got {type(self.recbole_config).__name__}")


def check_extra_keys(name: str, extra: dict, build_config) -> None:
    """model.recbole_config may set RecBole keys the suite does not set, and only keys RecBole
    knows for this model (`build_config(extra)`: a Config with those extra settings)."""
    fixed = sorted(k for k in extra if k in _SUITE_KEYS or k in _PROTOCOL_KEYS)
    if fixed:
        hints = [f"{k} (set {_SUITE_KEYS[k]})" if k in _SUITE_KEYS else k for k in fixed]
        raise ConfigError(
            f"model.recbole_config may not set {', '.join(hints)}: the suite sets these so that "
            "RecBole uses our data, split, budget and evaluation"
        )
    base = build_config({})
    unknown = sorted(set(extra) - set(base.final_config_dict))
    if unknown:
        raise ConfigError(
            f"model.recbole_config has key(s) RecBole does not know for {name}: "
            f"{', '.join(unknown)}; {name}'s own keys: {', '.join(sorted(model_yaml_keys(name)))} "
            "(and RecBole's training keys such as learning_rate, learner, weight_decay)"
        )


def model_yaml_keys(name: str) -> list[str]:
    """The keys of RecBole's own defaults file for a model."""
    import yaml

    recbole = import_recbole()
    path = Path(recbole.__file__).parent / "properties" / "model" / f"{name}.yaml"
    return list((yaml.safe_load(path.read_text()) or {}).keys())


def recbole_settings(p: RecBoleParams, device, folder: Path, train: dict | None, ks, seed: int,
                     stage: str | None = None, pre_model_path: Path | None = None) -> dict:
    """The RecBole settings the suite sets for a run (see the mapping in model.py's docstring)."""
    settings = {
        "MAX_ITEM_LIST_LENGTH": p.max_seq_length,
        "loss_type": p.loss_type,
        "train_neg_sample_args": None if p.loss_type == "CE" else {
            "distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False,
            "candidate_num": 0},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                      "mode": "full"},
        "repeatable": True,
        "metrics": ["Recall", "NDCG"],
        "topk": sorted({int(k) for k in ks}) if ks else [10],
        "valid_metric": "Recall@10",
        "valid_metric_bigger": True,
        "seed": int(seed),
        "reproducibility": True,
        "use_gpu": device.type == "cuda",
        "checkpoint_dir": str(folder / "checkpoints"),
        "show_progress": False,
        "log_wandb": False,
    }
    if p.recbole_model == "FDSA":
        settings["selected_features"] = [ATTRIBUTE_FIELD]
    if p.recbole_model == "S3Rec":
        settings["item_attribute"] = ATTRIBUTE_FIELD
        settings["train_stage"] = stage or "finetune"
        if p.pretrain_epochs is not None:
            settings["pretrain_epochs"] = int(p.pretrain_epochs)
        if pre_model_path is not None:
            settings["pre_model_path"] = str(pre_model_path)
    if train is not None:
        settings.update({
            "epochs": int(train["epochs"]),
            # RecBole stops after more than stopping_step validations without a gain; the suite
            # after `patience` of them (see trainer.suite_validated)
            "stopping_step": int(train["patience"]) - 1,
            "train_batch_size": int(train["batch_size"]),
            "eval_step": int(train["eval_every"]),
            "valid_metric": metric_name(train["valid_metric"]),
        })
    return settings


# ----------------------------------------------------------------------------- default search spaces

# `run_all.py --tune` searches these where a run gives no `space:` (benchmarks/tuning). Small on
# purpose: a budget of 8 trials spreads over few settings. Every row searches RecBole's learning
# rate around its default 0.001, its width and its dropout, each at RecBole's own keys (the
# model's yaml under recbole/properties/model/). The window (max_seq_length) is not searched: the
# rows of a table all read the same 20 items. Widths stay even (n_heads 2) and inner_size stays.
_LEARNING_RATE = {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}
_DROPOUT = {"type": "float", "low": 0.0, "high": 0.5}
_TRANSFORMER = {"hidden_size": {"type": "categorical", "choices": [32, 64, 128]},      # default 64
                "hidden_dropout_prob": _DROPOUT, "attn_dropout_prob": _DROPOUT}
_SPACES = {
    # recurrent: the GRU's state width (default 128) and RecBole's single dropout (default 0.3)
    "GRU4Rec": {"hidden_size": {"type": "categorical", "choices": [64, 128, 256]}, "dropout_prob": _DROPOUT},
    # NARM's dropout is a list (embedding, then the concatenated context): both items, default [0.25, 0.5]
    "NARM": {"hidden_size": {"type": "categorical", "choices": [64, 128, 256]},
             "dropout_probs.0": _DROPOUT, "dropout_probs.1": _DROPOUT},
    # STAMP has one width (embedding_size, default 64) and no dropout
    "STAMP": {"embedding_size": {"type": "categorical", "choices": [32, 64, 128]}},
    "SASRec": _TRANSFORMER, "BERT4Rec": _TRANSFORMER, "S3Rec": _TRANSFORMER, "FDSA": _TRANSFORMER,
}


def default_search_space(recbole_model: str) -> dict:
    """The search space of a RecBole row: learning_rate and the model's width and dropout keys,
    under model.recbole_config."""
    keys = {"learning_rate": _LEARNING_RATE, **_SPACES[recbole_model]}
    return {f"model.recbole_config.{key}": dict(spec) for key, spec in keys.items()}
