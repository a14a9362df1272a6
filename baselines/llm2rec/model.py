"""LLM2Rec (He et al., KDD 2025, "Large Language Models Are Powerful Embedding Models for
Sequential Recommendation") as HappyPointer/LLM2Rec trains it, readable top to bottom.

    decoder LLM (SmolLM2-135M by default; the authors: Qwen2-0.5B and larger)
      -> CSFT on the training sequences: history titles -> the next item's title (stages.py)
      -> IEM: bidirectional attention, MNTP, then unsupervised SimCSE over item titles (stages.py)
      -> every item's title once through it, mean pooled: a frozen item table (pipeline.py, cached)
    downstream SASRec over that table (`seqrec/models/SASRec/_model.py`, `config.yaml`,
    `seqrec/models/Embedding2.py`, `seqrec/default.yaml`):
      item vectors -> a linear adapter (LLM width -> hidden 128, xavier-normal weights, zero bias:
      adapter_dims [-1]) -> + learned positions -> dropout 0.3 -> 2 post-norm transformer layers
      (2 heads, inner 256, GELU, dropout 0.3 on hidden and attention, layer-norm eps 1e-12;
      torch's TransformerEncoderLayer, which also drops inside the feed-forward) -> the last real
      position's state h; scores h . adapter(e_i) for every item i; cross-entropy over all items
      (loss_type ce); the last 10 items read (max_seq_length 10).
    Official downstream optimiser (`seqrec/trainer.py`, `seqrec/default.yaml`): AdamW, lr 1e-3,
    weight decay 1e-4, batch 256, a constant rate (the trainer's scheduler is commented out, so
    default.yaml's 10,000 warm-up steps and its max_grad_norm never apply): the experiment files
    set these. Validation every 5 epochs with patience 20 on Recall@20 there; the suite's one
    stopping rule here.

Trained by the suite: the LLM stages (fixed step budgets, as the official stop_after_n_steps /
max_steps) inside `fit`, then the downstream SASRec (the adapter, positions and transformer; the
item table frozen) by the shared loop and its EarlyStopping, every training position a target
(`strategy: all`). Scored by the shared evaluator; latency is the downstream forward alone, the
item table precomputed (the adapter over it is part of each forward, as the official
`get_all_embeddings`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from benchmarks.errors import ConfigError
from benchmarks.latency import section
from benchmarks.models import ModelParams
from benchmarks.tensors import causal_attention_mask
from benchmarks.training import WindowedNextItemModel, mask_padding_column

from .pipeline import STAGES, item_embeddings


class LLM2RecSASRec(nn.Module):
    """SASRec over frozen LLM2Rec item vectors through a trainable linear adapter."""

    def __init__(self, item_vectors: torch.Tensor, *, hidden_size: int, n_layers: int, n_heads: int,
                 inner_size: int, dropout: float, max_seq_length: int):
        super().__init__()
        self.register_buffer("item_vectors", item_vectors, persistent=False)  # frozen, not a weight
        self.adapter = nn.Linear(item_vectors.shape[1], hidden_size)
        nn.init.xavier_normal_(self.adapter.weight)
        nn.init.zeros_(self.adapter.bias)
        self.positions = nn.Embedding(max_seq_length, hidden_size)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden_size, n_heads, inner_size, dropout, activation="gelu",
                                           layer_norm_eps=1e-12, batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.n_heads = n_heads

    def item_table(self) -> torch.Tensor:
        """Every item's vector through the adapter (row 0, padding, never scored)."""
        return self.adapter(self.item_vectors)

    def forward(self, items: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Scores (B, n_items + 1) for histories 0-padded on the right."""
        with section("encode"):
            table = self.item_table()
            length = items.shape[1]
            x = table[items] + self.positions(torch.arange(length, device=items.device))
            mask = causal_attention_mask(real, x.dtype).expand(-1, self.n_heads, -1, -1).reshape(-1, length, length)
            hidden = self.encoder(self.dropout(x), mask=mask)
            last = (real.sum(1) - 1).clamp(min=0)
            user = hidden[torch.arange(len(items), device=items.device), last]
        with section("score"):
            return mask_padding_column(user @ table.T)


@dataclass
class LLM2RecParams(ModelParams):
    llm: str = "smollm2-135m"                # the authors: Qwen2-0.5B (and Llama-3.2-1B, ...)
    stages: list = field(default_factory=lambda: list(STAGES))  # csft, mntp, simcse (in this order; a
                                             # subset is an ablation, e.g. [mntp, simcse] = w/o CSFT)
    stage_seed: int = 0                      # the stages' randomness (shared by the run seeds: pipeline.py)
    llm_precision: str = "bf16"              # the stages' autocast (the official trains in bf16)
    cache_dir: str = ".cache/llm2rec"        # fine-tuned LLM folders and item tables (pipeline.py)
    # 1. CSFT (run_csft.py): full fine-tuning, lr 3e-4, 200 warm-up steps, batch 128, max_steps 10,000
    csft_steps: int = 10000
    csft_batch_size: int = 128
    csft_lr: float = 3.0e-4
    csft_warmup_steps: int = 200
    csft_max_history: int = 10               # history items per prompt (the downstream's 10)
    csft_max_length: int = 1024              # tokens (cutoff_len), cut from the left
    # 2a. MNTP (train_mntp_config.json): 1,000 steps of batch 32, 20% masked, lr 5e-5 (HF default)
    mntp_steps: int = 1000
    mntp_batch_size: int = 32
    mntp_lr: float = 5.0e-5
    mntp_probability: float = 0.2
    # 2b. SimCSE (train_simcse_config.json): 1,000 steps of batch 256, lr 2e-4, 300 warm-up, dropout 0.2,
    # loss_scale 10 (temperature 0.1)
    simcse_steps: int = 1000
    simcse_batch_size: int = 256
    simcse_lr: float = 2.0e-4
    simcse_warmup_steps: int = 300
    simcse_dropout: float = 0.2
    simcse_scale: float = 10.0
    item_max_length: int = 512               # title tokens (max_seq_length of MNTP, SimCSE, extraction)
    embed_batch_size: int = 32               # titles per pass when extracting (no effect on the values)
    # 3. downstream SASRec (seqrec/models/SASRec/config.yaml, seqrec/default.yaml)
    max_seq_length: int = 10
    strategy: str = "all"                    # every training position a target (sampling: POD's sampler)
    hidden_size: int = 128
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.3

    def validate(self) -> None:
        self.choice("llm_precision", ("fp32", "bf16"))
        self.choice("strategy", ("all", "sampling"))
        stages = list(self.stages or [])
        if any(s not in STAGES for s in stages) or stages != sorted(stages, key=STAGES.index) or len(set(stages)) != len(stages):
            raise ConfigError(f"model.stages must be a subset of {list(STAGES)} in that order, got {self.stages!r}")
        self.stages = stages
        self.positive_int("csft_steps", "csft_batch_size", "csft_max_history", "csft_max_length", "mntp_steps",
                          "mntp_batch_size", "simcse_steps", "simcse_batch_size", "item_max_length",
                          "embed_batch_size", "max_seq_length", "hidden_size", "n_layers", "n_heads", "inner_size")
        self.fraction("mntp_probability", "simcse_dropout", "dropout")
        if isinstance(self.stage_seed, bool) or not isinstance(self.stage_seed, int) or self.stage_seed < 0:
            raise ConfigError(f"model.stage_seed must be a non-negative integer, got {self.stage_seed!r}")
        for key in ("csft_lr", "mntp_lr", "simcse_lr", "simcse_scale"):
            if not float(getattr(self, key)) > 0:
                raise ConfigError(f"model.{key} must be positive, got {getattr(self, key)!r}")
        for key in ("csft_warmup_steps", "simcse_warmup_steps"):
            if isinstance(getattr(self, key), bool) or int(getattr(self, key)) < 0:
                raise ConfigError(f"model.{key} must be a non-negative integer, got {getattr(self, key)!r}")
        if self.hidden_size % self.n_heads:
            raise ConfigError(f"model.hidden_size ({self.hidden_size}) must be a multiple of model.n_heads ({self.n_heads})")


class LLM2Rec(WindowedNextItemModel):
    Params = LLM2RecParams
    input_unit = "items"

    @classmethod
    def reads_item_text(cls, params) -> bool:
        return True  # the LLM reads every item's title

    @classmethod
    def search_space(cls, params) -> dict:
        """What `--tune` searches by default: the downstream learning rate around the official
        1e-3 and its dropout (the LLM stages are cached and shared by every trial)."""
        return {"train.lr": {"type": "float", "low": 3.0e-4, "high": 3.0e-3, "log": True},
                "model.dropout": {"type": "categorical", "choices": [0.1, 0.3, 0.5]}}

    def build(self) -> None:
        self.module = None  # built in fit, once the item table exists
        self.embedding_info: dict = {}

    def build_module(self, item_vectors: torch.Tensor) -> None:
        p = self.params
        if item_vectors.shape[0] != self.n_items + 1:
            raise ValueError(f"item table has {item_vectors.shape[0]} rows, expected {self.n_items + 1}")
        self.module = LLM2RecSASRec(item_vectors.float().to(self.device), hidden_size=p.hidden_size, n_layers=p.n_layers,
                                    n_heads=p.n_heads, inner_size=p.inner_size, dropout=p.dropout,
                                    max_seq_length=p.max_seq_length).to(self.device)

    def fit(self, split, trainer) -> dict:
        start = time.perf_counter()
        # the run's --checkpoint-minutes reaches the model through its trainer: the LLM stages
        # checkpoint as often as the shared loop does
        minutes = trainer.checkpoint_minutes if getattr(trainer, "checkpoint", None) is not None else None
        table, self.embedding_info = item_embeddings(self.params, self.dataset, split.train, self.device,
                                                     progress=getattr(trainer, "progress", False),
                                                     checkpoint_minutes=minutes)
        self.build_module(table)
        stages_seconds = time.perf_counter() - start
        result = trainer.fit(self, split)
        # the shared loop's seconds count every sitting of a resumed run; this call's wall time would not
        return {**result, "downstream_seconds": result["seconds"], "seconds": stages_seconds + result["seconds"],
                "llm2rec": self.embedding_info}

    def loss(self, batch) -> torch.Tensor:
        items, targets = (torch.from_numpy(a).to(self.device) for a in batch[:2])
        return nn.functional.cross_entropy(self.module(items, items > 0), targets)

    def score(self, batch) -> torch.Tensor:
        if self.module is None:
            raise RuntimeError("LLM2Rec.score before fit")
        return self.module(*batch)

    def describe(self) -> dict:
        p = self.params
        info = self.embedding_info
        facts = info.get("stage_facts", {})
        ran = ", ".join(f"{s} {facts.get(s, {}).get('steps', '?')} steps" for s in p.stages) or "no stage"
        counts = super().describe() if self.module is not None else {}
        return {**counts,
                "backbones": f"LLM {p.llm} ({ran}; bidirectional, mean pooling) -> frozen item table; "
                             f"SASRec (hidden {p.hidden_size}, {p.n_layers} layers) through a linear adapter",
                "backbone_weights": info.get("backbone_weights"),
                "llm2rec_stages": {"ran": list(p.stages), "facts": facts, "embeddings_cache": info.get("embeddings_cache"),
                                   "item_table_sha256": info.get("sha256"), "width": info.get("width")}}
