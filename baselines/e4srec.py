"""E4SRec-style ID injection into a LoRA-tuned LLM (Li et al., 2023), readable top to bottom.

    SASRec, trained by the suite on the same data and split (RecBole, baselines/recbole/)
      -> its item ID embedding table, frozen
    user's last 20 items -> their ID embeddings -> input projection (linear, into the LLM's width)
    LLM input: [instruction tokens] [projected item embeddings] [response tokens]
      (the text parts through the LLM's own word embeddings)
      -> the LLM: its own weights frozen, LoRA adapters (peft) on its attention projections
      -> the final position's hidden state (`pooling: last`; `mean`: mean over real positions)
      -> item output projection: logits over every item in one forward pass (no generation)
    loss: cross-entropy with the next item as the only positive

Trainable: the input projection, the LoRA adapters and the item output projection; the count is
written into the run's record (E4SRec's point is how few these are next to the LLM).

Padding. Histories have different lengths, and the response must directly follow each user's
last item, so the three parts are concatenated and each row's padding is then moved to its end
(a stable sort on "is padding"): every user's prompt is one contiguous sequence starting at
position 0, which is what both an encoder with absolute positions and a causal decoder expect,
and "the final position" is each row's last real token.

Backbone. The default LLM is the packaged all-MiniLM-L6-v2, an encoder (E4SRec uses
LLaMA2-13B); its "last hidden state" is that of the final response token, which attends to the
whole prompt. A decoder name (Llama, Qwen, GPT-2...) loads the same way (AutoModel) wherever its
weights exist. LoRA's target modules default to peft's choice for the architecture (BERT: query
and value; Llama: q_proj and v_proj, as E4SRec).

SASRec item embeddings (`sasrec_source`):
- `auto`: reuse the checkpoint of a RecBole SASRec run of this same dataset under
  `run_dir` (the table3 SASRec row leaves one) when one exists, else train one;
- `train`: train SASRec through RecBoleModel (RecBole's model and trainer, the suite's split
  checked user by user) for `sasrec_epochs` with `sasrec_config`;
- a path: that RecBole checkpoint, `<run folder>/checkpoints/SASRec-*.pth`.
A reused checkpoint's run folder must hold atomic data files identical to this dataset's (else
it is refused), and RecBole's internal item ids are mapped back to ours through the RecBole
dataset built from those files. The record says which source was used and the SASRec settings.
"""
from __future__ import annotations

import filecmp
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from baselines.recbole import ATOMIC_NAME, RecBoleModel, RecBoleParams
from baselines.recbole.compat import import_recbole, load_checkpoint, outputs_under
from baselines.recbole.data import ItemIndex, recbole_config, recbole_dataset, write_atomic_files
from benchmarks import backbones
from benchmarks.errors import ConfigError
from benchmarks.latency import section
from benchmarks.models import ModelParams
from benchmarks.training import Trainer, WindowedNextItemModel, mask_padding_column
from benchmarks.tensors import masked_mean

ATOMIC_FILES = (f"{ATOMIC_NAME}.inter", f"{ATOMIC_NAME}.item")


class E4SRecNet(nn.Module):
    def __init__(self, item_id_embeddings: torch.Tensor, llm: nn.Module, instruction_ids: torch.Tensor,
                 response_ids: torch.Tensor, n_items: int, pooling: str):
        super().__init__()
        self.item_id_embeddings = nn.Embedding.from_pretrained(item_id_embeddings, freeze=True, padding_idx=0)
        width = backbones.hidden_size(llm)
        self.input_projection = nn.Linear(item_id_embeddings.shape[1], width)
        self.llm = llm  # a peft model: only its LoRA weights require gradients
        self.register_buffer("instruction_ids", instruction_ids, persistent=False)
        self.register_buffer("response_ids", response_ids, persistent=False)
        self.item_output_projection = nn.Linear(width, n_items + 1)
        self.pooling = pooling

    def prompt(self, items: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embeddings (B, T, width) and mask of instruction + items + response, each row's
        padding moved to its end."""
        batch = items.shape[0]
        words = self.llm.get_input_embeddings()
        instruction = words(self.instruction_ids).expand(batch, -1, -1)
        response = words(self.response_ids).expand(batch, -1, -1)
        projected = self.input_projection(self.item_id_embeddings(items))
        inputs = torch.cat([instruction.to(projected.dtype), projected, response.to(projected.dtype)], dim=1)
        ones = lambda n: torch.ones(batch, n, dtype=torch.bool, device=items.device)  # noqa: E731
        real = torch.cat([ones(instruction.shape[1]), mask, ones(response.shape[1])], dim=1)
        order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)  # real first, in order
        inputs = inputs.gather(1, order.unsqueeze(-1).expand_as(inputs))
        return inputs, real.gather(1, order)

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with section("encode"):
            inputs, real = self.prompt(items, mask)
            hidden = self.llm(inputs_embeds=inputs, attention_mask=real.long()).last_hidden_state
            if self.pooling == "last":
                user = hidden[torch.arange(len(hidden), device=hidden.device), real.sum(1) - 1]
            else:
                user = masked_mean(hidden, real)
        with section("score"):
            logits = self.item_output_projection(user)
            return mask_padding_column(logits)


@dataclass
class E4SRecParams(ModelParams):
    llm: str = "all-MiniLM-L6-v2"            # E4SRec: LLaMA2-13B
    instruction: str = "Given the user's interaction history, predict the next item the user will interact with."
    response: str = "Next item:"
    pooling: str = "last"                    # last | mean (over the real positions)
    max_seq_length: int = 20                 # items per user
    strategy: str = "sampling"               # sampling | all (as Lite-LLM4Rec's)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list | str | None = None   # null: peft's default for the architecture
    sasrec_source: str = "auto"              # auto | train | path to a RecBole SASRec checkpoint
    sasrec_epochs: int = 5                   # when SASRec is trained here (the table3 SASRec budget)
    sasrec_batch_size: int = 256
    sasrec_max_seq_length: int = 20
    sasrec_config: dict = field(default_factory=dict)  # RecBole SASRec settings (hidden_size, n_layers...)
    run_dir: str = ".cache/recbole_runs"     # where RecBole runs live (shared with the RecBole rows)

    def validate(self) -> None:
        self.choice("pooling", ("last", "mean"))
        self.choice("strategy", ("sampling", "all"))
        self.positive_int("max_seq_length", "lora_r", "lora_alpha", "sasrec_epochs", "sasrec_batch_size",
                          "sasrec_max_seq_length")
        self.fraction("lora_dropout")
        if not isinstance(self.sasrec_source, str) or not self.sasrec_source:
            raise ConfigError("model.sasrec_source must be 'auto', 'train' or a checkpoint path")


class E4SRec(WindowedNextItemModel):
    Params = E4SRecParams
    input_unit = "tokens + item embeddings"

    def build(self) -> None:
        p = self.params
        self.run_root = Path(p.run_dir)
        tokenizer = backbones.load_tokenizer(p.llm)
        # the instruction as the model frames a text ([CLS] ... [SEP], <s> ...); the response
        # continues the sequence, so it gets no special tokens of its own
        self.instruction_ids = torch.tensor(tokenizer(p.instruction)["input_ids"], dtype=torch.long)
        self.response_ids = torch.tensor(tokenizer(p.response, add_special_tokens=False)["input_ids"], dtype=torch.long)
        self.llm = self._lora_llm(p)
        self.module = None
        self.sasrec_info: dict = {}

    def _lora_llm(self, p: E4SRecParams) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        llm = backbones.load_encoder(p.llm)
        targets = p.lora_target_modules
        if targets is not None and not isinstance(targets, str):  # a list, or one peft string ("all-linear")
            targets = list(targets)
        config = LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=float(p.lora_dropout),
                            target_modules=targets or None)
        try:
            return get_peft_model(llm, config)  # freezes every weight of the LLM but the adapters
        except ValueError as err:  # e.g. no default target modules for this architecture
            raise ConfigError(f"LoRA on {p.llm!r}: {err}; set model.lora_target_modules") from err

    def build_module(self, item_id_embeddings: torch.Tensor) -> None:
        """The network around the LoRA LLM, given SASRec's item ID embeddings in our item order."""
        if item_id_embeddings.shape[0] != self.n_items + 1:
            raise ValueError(f"item ID embeddings have {item_id_embeddings.shape[0]} rows, expected {self.n_items + 1}")
        item_id_embeddings = item_id_embeddings.detach().float().clone()
        item_id_embeddings[0] = 0.0  # RecBole re-initialises its [PAD] row; padding is masked anyway
        self.module = E4SRecNet(item_id_embeddings, self.llm, self.instruction_ids, self.response_ids,
                                self.n_items, self.params.pooling).to(self.device)

    # ---- SASRec item ID embeddings

    def _sasrec_params(self) -> RecBoleParams:
        return RecBoleParams(recbole_model="SASRec", max_seq_length=self.params.sasrec_max_seq_length,
                             loss_type="CE", recbole_config=dict(self.params.sasrec_config or {}),
                             pretrain_epochs=None, run_dir=str(self.run_root))

    def sasrec_item_embeddings(self, split, trainer) -> tuple[torch.Tensor, dict]:
        source = self.params.sasrec_source
        if source == "train":
            return self._train_sasrec(split, trainer)
        if source == "auto":
            found = find_sasrec_checkpoints(self.dataset, self.run_root, seed=getattr(trainer, "seed", None))
            if found:
                return self._load_sasrec(found[0], "reused (auto)")
            return self._train_sasrec(split, trainer)
        return self._load_sasrec(Path(source), "checkpoint given")

    def _train_sasrec(self, split, trainer) -> tuple[torch.Tensor, dict]:
        sasrec = RecBoleModel(self._sasrec_params(), self.dataset, self.device)
        # RecBole trains in fp32 with the classic rows' epochs and batch (the LLM stage's batch and
        # precision differ); patience, validation metric and time budget are the run's own
        cfg = dict(trainer.cfg, precision="fp32", epochs=self.params.sasrec_epochs,
                   batch_size=self.params.sasrec_batch_size, eval_every=1)
        info = sasrec.fit(split, Trainer(cfg, trainer.eval_cfg, seed=trainer.seed, progress=getattr(trainer, "progress", False)))
        weights = sasrec.module.item_embedding.weight.detach().cpu()
        embeddings = weights[torch.from_numpy(sasrec.index.to_recbole)]  # row i = our item i
        checkpoints = sorted(Path(info["run_folder"]).glob("checkpoints/SASRec-*.pth"), key=lambda p: p.stat().st_mtime)
        return embeddings, {
            "source": "trained", "checkpoint": str(checkpoints[-1]) if checkpoints else None,
            "epochs": info["epochs"], "best_epoch": info["best_epoch"], "best_valid": info["best_valid"],
            "seconds": info["seconds"], "recbole_settings": sasrec.describe().get("recbole_settings"),
        }

    def _load_sasrec(self, path: Path, how: str) -> tuple[torch.Tensor, dict]:
        start = time.perf_counter()
        path = Path(path)
        folder = path.resolve().parent.parent  # <run folder>/checkpoints/SASRec-*.pth
        if not path.is_file() or path.parent.name != "checkpoints":
            raise ConfigError(f"model.sasrec_source {str(path)!r} is not a RecBole checkpoint inside a run "
                              "folder (<run folder>/checkpoints/SASRec-*.pth); use 'auto' or 'train'")
        with tempfile.TemporaryDirectory() as tmp:
            ours = write_atomic_files(self.dataset, tmp, ATOMIC_NAME)
            if not _same_atomic_data(ours, folder / "data" / ATOMIC_NAME):
                raise ConfigError(f"the SASRec checkpoint {path} was trained on other data than dataset "
                                  f"{self.dataset.name!r} (its run folder's atomic files differ)")
            to_recbole = recbole_item_index(self.dataset, Path(tmp), self.device)
        import_recbole()  # the checkpoint pickles RecBole's Config
        checkpoint = load_checkpoint(path, folder, map_location="cpu")
        config = checkpoint["config"]
        if config["model"] != "SASRec":
            raise ConfigError(f"{path} is a {config['model']} checkpoint, not SASRec")
        weights = checkpoint["state_dict"]["item_embedding.weight"]
        if weights.shape[0] != self.n_items + 1:
            raise ConfigError(f"{path} has {weights.shape[0] - 1} items, dataset {self.dataset.name!r} has {self.n_items}")
        keys = ("hidden_size", "n_layers", "n_heads", "inner_size", "MAX_ITEM_LIST_LENGTH", "epochs",
                "learning_rate", "train_batch_size", "seed")
        return weights[torch.from_numpy(to_recbole)].float(), {
            "source": how, "checkpoint": str(path), "checkpoint_epoch": int(checkpoint["epoch"]) + 1,
            "best_valid_score": float(checkpoint["best_valid_score"]),
            "recbole_settings": {k: config[k] for k in keys if k in config}, "seconds": time.perf_counter() - start,
        }

    # ---- training (the shared loop in benchmarks/training.py calls these)

    def fit(self, split, trainer) -> dict:
        if len(getattr(split, "held_out_items", ())):
            raise ConfigError("E4SRec scores items by their SASRec ID embeddings and RecBole's split must "
                              "equal the full leave-one-out: it cannot run with split.holdout_items (cold start)")
        start = time.perf_counter()
        embeddings, self.sasrec_info = self.sasrec_item_embeddings(split, trainer)
        self.build_module(embeddings)
        result = trainer.fit(self, split)
        counts = self.parameter_counts()
        return {**result, "llm_stage_seconds": result["seconds"], "seconds": time.perf_counter() - start,
                "sasrec": self.sasrec_info, "trainable_parameters": counts["trainable"], "parameter_counts": counts}

    def loss(self, batch) -> torch.Tensor:
        items, targets = (torch.from_numpy(a).to(self.device) for a in batch)
        return nn.functional.cross_entropy(self.module(items, items > 0), targets)

    # ---- inference (evaluator and latency timer)

    def score(self, batch) -> torch.Tensor:
        if self.module is None:
            raise RuntimeError("E4SRec.score before fit")
        return self.module(*batch)

    def input_length(self, histories) -> np.ndarray:
        return len(self.instruction_ids) + len(self.response_ids) + super().input_length(histories)

    def parameter_counts(self) -> dict:
        count = lambda params: sum(p.numel() for p in params)  # noqa: E731
        llm = list(self.llm.named_parameters())
        counts = {
            "total": count(self.module.parameters()) if self.module is not None else count(p for _, p in llm),
            "lora": count(p for n, p in llm if "lora_" in n),
            "llm_frozen": count(p for n, p in llm if not p.requires_grad),
        }
        if self.module is not None:
            counts["input_projection"] = count(self.module.input_projection.parameters())
            counts["item_output_projection"] = count(self.module.item_output_projection.parameters())
            counts["item_id_embeddings_frozen"] = self.module.item_id_embeddings.weight.numel()
            counts["trainable"] = count(self.trainable_parameters())
        return counts

    def describe(self) -> dict:
        p = self.params
        counts = self.parameter_counts()
        targets = self.llm.peft_config["default"].target_modules
        targets = [targets] if isinstance(targets, str) else sorted(targets)
        return {"parameters": counts["total"], "trainable_parameters": counts.get("trainable"),
                "parameter_counts": counts,
                "backbones": f"LLM {p.llm} + LoRA r={p.lora_r} on {', '.join(targets)}; "
                             f"item IDs from SASRec ({self.sasrec_info.get('source', 'not loaded')})",
                "lora": {"r": p.lora_r, "alpha": p.lora_alpha, "dropout": float(p.lora_dropout),
                         "target_modules": targets},
                "prompt_tokens": {"instruction": len(self.instruction_ids), "response": len(self.response_ids)},
                "sasrec": self.sasrec_info}


# ----------------------------------------------------------------------------- RecBole runs


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
