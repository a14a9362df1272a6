"""HLLM (Chen et al., 2024) as bytedance/HLLM trains it, readable top to bottom.

    Item LLM: "<instruction><item text>" then a learnable [ITEM] embedding (N(0, 0.02)) -> the
              final hidden state at [ITEM] = the item's embedding e_i (item_llm.py)
    User LLM: a causal decoder over the user's item embeddings e_1..e_t (fed as input
              embeddings) -> h_t, the prediction of e_{t+1}
    loss:     InfoNCE on cosine similarity with a learnable temperature (1 / temperature kept in
              [1, 100]): h_t against the next item's embedding and negatives (sampled items and the
              batch's other positives); a negative that is the positive item is masked (HLLM masks
              negatives whose embedding is within cosine 0.99 of the positive's, to the same end)
    scoring:  cos(h_last, e_i) for every item i, the item table computed once per evaluation

Both LLMs are SmolLM2-135M (a Llama-architecture decoder; HLLM uses TinyLlama-1.1B or Baichuan2-7B)
by default, prepared offline (python -m benchmarks.backbones --prepare smollm2-135m); MiniLM (a
bidirectional encoder, made causal as the User LLM by a 4D attention mask) is a labelled option.
Training as HLLM's code: every training sequence cut into consecutive chunks of max_seq_length + 1
items (each overlapping the next by one), so every training position is a target every epoch;
lr 1e-4, weight decay 0.01, cosine schedule, warm-up 0.1 (the experiment files). How the Item LLM
runs (`item_llm_training`: end_to_end, frozen_cached, frozen) is described in item_llm.py.

Input rescaling (`item_norm`, `user_input_scale`; `auto` applies them only where the backbone adds
absolute position embeddings, as Lite-LLM4Rec's input transforms): a sentence encoder's [ITEM]
states share one large direction (MiniLM on ml-100k: mean cosine 0.91 between items), so cosine
logits barely differ and the toy runs stayed at the uniform loss; standardising per dimension over
the items at hand removes it. `user_input_scale: token_embeddings` brings what a BERT-style User
LLM reads to the norm of its own token embeddings, since it adds position embeddings before it
normalises; on ml-100k (MiniLM, frozen Item LLM) validation Recall@10 preferred it (0.127 at epoch
25 against 0.120 at epoch 40). A decoder with rotary positions (SmolLM2) gets neither under
`auto`: HLLM as published. A frozen decoder needs them too: ml-100k's frozen_cached SmolLM2 row sets
both, chosen on validation (table3_overall.yaml has the numbers).

Because items are scored from their text, items never seen in training can be ranked: see the
`cold_start` experiment (split.holdout_items), which Lite-LLM4Rec's projection head cannot do.
Held-out items are never sampled as negatives: training sees only the items of split.train.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks import backbones
from benchmarks.data_parallel import rows_share
from benchmarks.errors import ConfigError
from benchmarks.latency import section
from benchmarks.models import ModelParams
from benchmarks.split import pad_histories
from benchmarks.tensors import causal_attention_mask, standardize_item_vectors
from benchmarks.training import NeuralRecommender, mask_padding_column

from .item_llm import CachedItemLLM, TextItemLLM, encode_all_items, frozen_item_table, tokenize_texts

# ----------------------------------------------------------------------------- User LLM and loss


def training_attention(device: torch.device):
    """The attention kernel of a training step. On a CPU, PyTorch's fused (flash) attention has a
    slow backward for HLLM's short queries: measured on SmolLM2-135M, 1 thread, bf16, the
    frozen_cached Item LLM's backward over 550 items (one [ITEM] query each over ~23 cached text
    positions) took 6.9-8.8 s, 63% of it in the flash backward, against 1.6-1.8 s with the math
    kernel (the same softmax(QK^T / sqrt(d)) V, as plain matrix multiplies); the User LLM's (16
    chunks of 20) 1.4 s against 0.8-1.1 s. A GPU keeps PyTorch's choice; inference is left alone."""
    if torch.device(device).type == "cpu":
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


def info_nce(predicted: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
             positive_ids: torch.Tensor, negative_ids: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """InfoNCE over cosine similarities: predicted (P, d) against its positive (P, d) and the
    shared negatives (M, d). A negative with the positive's item id is masked for that row (it
    would otherwise be a second copy of the right answer counted as wrong)."""
    predicted, positives, negatives = (F.normalize(x.float(), dim=-1) for x in (predicted, positives, negatives))
    positive_logits = (predicted * positives).sum(-1, keepdim=True)
    negative_logits = predicted @ negatives.T
    logits = torch.cat([positive_logits, negative_logits], dim=1) * logit_scale.exp()
    # masked after scaling: a -inf scaled by the temperature would give the temperature a NaN gradient
    same_item = torch.cat([torch.zeros_like(positive_ids[:, None], dtype=torch.bool),
                           negative_ids[None, :] == positive_ids[:, None]], dim=1)
    logits = logits.masked_fill(same_item, float("-inf"))
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


class HLLMNet(nn.Module):
    MAX_LOGIT_SCALE = math.log(100.0)  # HLLM (as CLIP) keeps 1 / temperature within [1, 100]

    def __init__(self, user_llm: nn.Module, item_width: int, *, item_llm: nn.Module | None = None,
                 frozen_table: torch.Tensor | None = None, temperature: float = 0.07,
                 user_input_norm: float | None = None, standardize: bool = False):
        super().__init__()
        self.item_llm = item_llm  # TextItemLLM or CachedItemLLM; None: a frozen table
        if item_llm is None:
            self.register_buffer("frozen_table", frozen_table, persistent=False)  # data, not weights
        else:
            self.item_token = nn.Parameter(torch.randn(item_width) * 0.02)  # HLLM's item_emb_tokens
        self.standardize = standardize and item_llm is not None  # z-scores over the items at hand
        user_width = backbones.hidden_size(user_llm)
        same = item_width == user_width
        self.item_to_user = nn.Identity() if same else nn.Linear(item_width, user_width)
        self.user_llm = user_llm
        self.user_input_norm = user_input_norm  # None: the User LLM reads the embeddings as they are
        self.user_to_item = nn.Identity() if same else nn.Linear(user_width, item_width)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def _standardized(self, vectors: torch.Tensor) -> torch.Tensor:
        """Rows = distinct real items; per-dimension z-scores over them when standardising."""
        if not self.standardize or len(vectors) < 2:
            return vectors
        return (vectors - vectors.mean(0)) / vectors.std(0).clamp(min=1e-6)

    def embed_items(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of item ids (any shape; id 0 -> zeros); the Item LLM runs once per distinct
        item among them, with gradients (to the [ITEM] embedding at least)."""
        if self.item_llm is None:
            return self.frozen_table[ids]  # standardised once, when the model was built
        unique = torch.unique(ids)
        real = unique[unique > 0]
        vectors = self._standardized(self.item_llm(real, self.item_token))
        table = torch.cat([vectors.new_zeros(1, vectors.shape[1]), vectors])
        return table[torch.where(ids > 0, torch.searchsorted(real, ids) + 1, 0)]

    def all_item_embeddings(self, batch_size: int) -> torch.Tensor:
        """(n_items + 1, width) embeddings of every item, row 0 zero."""
        if self.item_llm is None:
            return self.frozen_table
        table = encode_all_items(self.item_llm, self.item_token, len(self.item_llm.lengths) - 1, batch_size)
        table[1:] = self._standardized(table[1:])
        return table

    def user_states(self, item_embeddings: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """(B, L, item width): at position t, the predicted embedding of the item after t."""
        inputs = self.item_to_user(item_embeddings)
        if self.user_input_norm is not None:  # padding rows are zero and stay zero
            inputs = F.normalize(inputs, dim=-1) * self.user_input_norm
        mask = causal_attention_mask(real, inputs.dtype)
        hidden = self.user_llm(inputs_embeds=inputs, attention_mask=mask).last_hidden_state
        return self.user_to_item(hidden)

    def logit_scale_clamped(self) -> torch.Tensor:
        return self.logit_scale.clamp(0.0, self.MAX_LOGIT_SCALE)

    def forward(self, items: torch.Tensor, item_table: torch.Tensor) -> torch.Tensor:
        """Scores (B, n_items + 1) of every item for each history (0-padded on the right)."""
        with section("encode"):
            real = items > 0
            states = self.user_states(item_table[items], real)
            last = (real.sum(1) - 1).clamp(min=0)
            user = states[torch.arange(len(items), device=items.device), last]
        with section("score"):
            return mask_padding_column(F.normalize(user.float(), dim=-1) @ F.normalize(item_table.float(), dim=-1).T)


@dataclass
class HLLMParams(ModelParams):
    item_llm: str = "smollm2-135m"           # HLLM: TinyLlama-1.1B or Baichuan2-7B
    user_llm: str = "smollm2-135m"
    item_llm_training: str = "end_to_end"    # end_to_end | frozen_cached (causal Item LLM) | frozen (item_llm.py)
    item_instruction: str = "Compress the following sentence into embedding: "  # HLLM's prompt
    item_max_length: int = 64                # tokens of instruction + text, [ITEM] included
    item_batch_size: int = 64                # items per Item LLM call when embedding every item
    item_cache_dir: str = ".cache/item_vectors"   # the frozen table's cache
    item_norm: str = "auto"                  # auto | standardize | none (see the docstring)
    user_input_scale: str = "auto"           # auto | token_embeddings | none (see the docstring)
    item_llm_dropout: float = 0.0            # end to end; HLLM's decoder LLMs have none
    max_seq_length: int = 20                 # items the User LLM reads
    num_negatives: int = 256                 # sampled negatives per batch, shared by its positions
    in_batch_negatives: bool = True          # the batch's other positives are negatives too
    temperature: float = 0.07                # initial; 1 / temperature is learned, within [1, 100]

    def validate(self) -> None:
        self.choice("item_llm_training", ("end_to_end", "frozen_cached", "frozen"))
        self.choice("item_norm", ("auto", "standardize", "none"))
        self.choice("user_input_scale", ("auto", "token_embeddings", "none"))
        self.positive_int("max_seq_length", "item_batch_size")
        self.fraction("item_llm_dropout")
        if int(self.num_negatives) < 0 or (int(self.num_negatives) == 0 and not self.in_batch_negatives):
            raise ConfigError("HLLM needs negatives: set model.num_negatives > 0 or model.in_batch_negatives: true")
        if not 0.0 < float(self.temperature) <= 1.0:
            raise ConfigError(f"model.temperature must be in (0, 1], got {self.temperature!r}")
        if int(self.item_max_length) < 2:
            raise ConfigError("model.item_max_length must leave room for text and the [ITEM] token (>= 2)")


class HLLM(NeuralRecommender):
    Params = HLLMParams
    input_unit = "item embeddings"

    @classmethod
    def reads_item_text(cls, params) -> bool:
        return True  # the Item LLM reads each item's text

    @classmethod
    def search_space(cls, params) -> dict:
        """What `--tune` searches by default: the learning rate around HLLM's 1e-4 and the
        number of sampled negatives (HLLM's 256 was set for far larger catalogues)."""
        return {"train.lr": {"type": "float", "low": 3.0e-5, "high": 3.0e-4, "log": True},
                "model.num_negatives": {"type": "categorical", "choices": [64, 128, 256]}}

    def build(self) -> None:
        p, dataset, device = self.params, self.dataset, self.device
        self.window = p.max_seq_length
        user_llm = backbones.load_encoder(p.user_llm)
        scale = p.user_input_scale == "token_embeddings" or (
            p.user_input_scale == "auto" and backbones.adds_absolute_positions(user_llm))
        user_input_norm = backbones.token_embedding_norm(user_llm) if scale else None
        info = {"item_llm": p.item_llm, "instruction": p.item_instruction, "max_length": p.item_max_length,
                "training": p.item_llm_training}
        if p.item_llm_training == "frozen":
            table, info = frozen_item_table(dataset, p.item_llm, instruction=p.item_instruction,
                                            max_length=p.item_max_length, batch_size=p.item_batch_size,
                                            cache_dir=p.item_cache_dir, device=device)
            absolute = backbones.config_adds_absolute_positions(backbones.load_config(p.item_llm))
            standardize = p.item_norm == "standardize" or (p.item_norm == "auto" and absolute)
            if standardize:
                table = standardize_item_vectors(table)
            self.module = HLLMNet(user_llm, table.shape[1], frozen_table=table, temperature=p.temperature,
                                  user_input_norm=user_input_norm)
            info = {**info, "training": "frozen"}
        else:
            tokenizer, llm = backbones.load_tokenizer(p.item_llm), backbones.load_encoder(p.item_llm)
            backbones.set_dropout(llm, float(p.item_llm_dropout))
            ids, lengths = tokenize_texts(tokenizer, dataset.item_texts[1:], p.item_instruction, p.item_max_length)
            item_llm = (TextItemLLM(llm, ids, lengths) if p.item_llm_training == "end_to_end"
                        else CachedItemLLM(llm, ids, lengths, p.item_batch_size, device))
            standardize = p.item_norm == "standardize" or (p.item_norm == "auto" and backbones.adds_absolute_positions(llm))
            self.module = HLLMNet(user_llm, backbones.hidden_size(llm), item_llm=item_llm, temperature=p.temperature,
                                  user_input_norm=user_input_norm, standardize=standardize)
        self.module.to(device)
        self.item_table_info = {**info, "norm": "standardize" if standardize else "none"}
        self._evaluation_table: torch.Tensor | None = None
        self.item_table_computations = 0  # how often every item was embedded (tests check it)
        # the trainer restores the best weights with load_state_dict: a table of other weights is stale
        self.module.register_load_state_dict_post_hook(lambda module, keys: self._drop_evaluation_table())

    def _drop_evaluation_table(self) -> None:
        self._evaluation_table = None

    def item_table(self) -> torch.Tensor:
        """Every item's embedding under the current weights, computed once and reused until the
        weights change (the evaluator's and the latency timer's batches all share it)."""
        if self._evaluation_table is None:
            was_training = self.module.training
            self.module.eval()
            with torch.no_grad():
                self._evaluation_table = self.module.all_item_embeddings(self.params.item_batch_size)
            self.module.train(was_training)
            self.item_table_computations += 1
        return self._evaluation_table

    # ---- training (the shared loop in benchmarks/training.py calls these)

    def training_batches(self, split, epoch: int, rng: np.random.Generator, batch_size: int) -> list:
        """Every training sequence cut into consecutive chunks of max_seq_length + 1 items, each
        overlapping the next by one, so every training position is a target every epoch (HLLM's
        data code); every position of a chunk predicts the item after it."""
        step = self.window
        chunks = [seq[start:start + step + 1] for seq in split.train for start in range(0, len(seq) - 1, step)]
        inputs, targets = pad_histories([c[:-1] for c in chunks], step), pad_histories([c[1:] for c in chunks], step)
        train_items = np.unique(np.concatenate(split.train)) if split.train else np.zeros(0, dtype=np.int64)
        train_items = train_items[train_items > 0]
        n_negatives = int(self.params.num_negatives)
        order = rng.permutation(len(inputs))
        batches = []
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            negatives = np.unique(rng.choice(train_items, size=n_negatives)) if n_negatives else np.zeros(0, dtype=np.int64)
            batches.append((inputs[rows], targets[rows], negatives.astype(np.int64)))
        return batches

    def shard_batch(self, batch, index: int, count: int):
        """Data parallel training: each process takes its rows of the inputs and targets; the
        batch's sampled negatives are shared by all its rows (kept whole, whatever their count)."""
        inputs, targets, negatives = batch
        return (*rows_share((inputs, targets), index, count), negatives)

    def loss(self, batch) -> torch.Tensor:
        self._drop_evaluation_table()  # the weights are about to change
        inputs, targets, negatives = (torch.from_numpy(a).to(self.device) for a in batch)
        valid = targets > 0
        positive_ids = targets[valid]
        negative_ids = torch.unique(torch.cat([negatives, positive_ids])) if self.params.in_batch_negatives else negatives
        with training_attention(self.device):  # the backward runs what this forward chose
            # one Item LLM call for every item this batch mentions
            embedded = self.module.embed_items(torch.cat([inputs.reshape(-1), positive_ids, negative_ids]))
            input_vectors, positives, negative_vectors = embedded.split([inputs.numel(), len(positive_ids), len(negative_ids)])
            states = self.module.user_states(input_vectors.reshape(*inputs.shape, -1), inputs > 0)
        return info_nce(states[valid], positives, negative_vectors, positive_ids, negative_ids,
                        self.module.logit_scale_clamped())

    def fit(self, split, trainer) -> dict:
        result = trainer.fit(self, split)
        return {**result, "item_embeddings": self.item_table_info,
                "temperature": float(1.0 / self.module.logit_scale_clamped().detach().exp())}

    # ---- inference (evaluator and latency timer)

    def prepare(self, histories):
        return torch.from_numpy(pad_histories(histories, self.window)).to(self.device)

    def score(self, batch) -> torch.Tensor:
        return self.module(batch, self.item_table())

    def input_length(self, histories) -> np.ndarray:
        return np.array([min(len(h), self.window) for h in histories], dtype=np.float64)

    def describe(self) -> dict:
        p = self.params
        return {**super().describe(), "item_embeddings": self.item_table_info,
                "backbones": f"item LLM {p.item_llm} ({p.item_llm_training}); user LLM {p.user_llm} (causal)",
                "backbone_weights": sorted({backbones.provenance(p.item_llm), backbones.provenance(p.user_llm)}),
                "user_input_norm": self.module.user_input_norm,
                "negatives": {"sampled": int(p.num_negatives), "in_batch": bool(p.in_batch_negatives)},
                "temperature": float(1.0 / self.module.logit_scale_clamped().detach().exp())}
