"""HLLM-style hierarchical item and user LLMs (Chen et al., 2024), readable top to bottom.

    Item LLM: "<instruction><item text>[ITEM]" -> the final hidden state of the appended,
              learnable [ITEM] token = the item's embedding e_i
    User LLM: a causal transformer over the user's item embeddings e_1..e_t (fed as input
              embeddings; position t sees positions <= t only) -> h_t, the prediction of e_{t+1}
    loss:     InfoNCE on cosine similarity with a learnable temperature: h_t against the next
              item's embedding (the positive) and a set of negatives, sampled items and (optionally)
              the other positives in the batch; a negative that is the positive item is masked
    scoring:  cos(h_last, e_i) for every item i, the item table computed once per evaluation

Two ways to run the Item LLM (`item_llm_training`):
- `end_to_end` (HLLM's own): the Item LLM is trained with the User LLM. A training batch runs it
  on the items that batch mentions (inputs, positives, negatives) and nothing else; an evaluation
  runs it once over every item and reuses that table for all its batches (the table is dropped as
  soon as the weights change: a training step, or the trainer restoring the best weights).
- `frozen` (cheap runs): the Item LLM is run once over every item, before training, and the table
  is cached on disk (safetensors, keyed by backbone, instruction, [ITEM] rule, maximum length and
  dataset hash) like Lite-LLM4Rec's item vectors.

Item embeddings are standardised per dimension over the items at hand (`item_norm`, a deviation
from HLLM, whose LLMs are larger): the [ITEM] states of a sentence encoder share one large
direction (MiniLM on ml-100k: mean cosine 0.91 between items; a tiny random BERT: 0.9999997), so
cosine logits barely differ between items, and training measured on the toy data stayed at the
uniform loss. Frozen: z-scores over every item, once (lite_llm4rec.model.standardize_item_vectors).
End to end: over the batch's distinct items in training and over every item in an evaluation
(statistics fixed at the start drifted away from the moving Item LLM and collapsed every item
onto one direction, measured on the toy data). `item_norm: none` is HLLM as published.
`user_input_scale: token_embeddings` brings what the User LLM reads to the norm of its own token
embeddings, as Lite-LLM4Rec's `item_vector_scale` does (z-scored embeddings have norm about 20
against MiniLM's tokens' 1.1 and positions' 0.5, and a BERT-style encoder adds the positions
before it normalises); each input vector is normalised to that norm (end to end the table moves,
and the scores are cosines, blind to norms). The default, decided on validation: on ml-100k (frozen
Item LLM, the llm_baselines budget, same machine) it reached a higher validation Recall@10 than
`none` (0.127 at epoch 25 against 0.120 at epoch 40).
Trained end to end, the Item LLM runs without dropout (`item_llm_dropout`): HLLM's decoder LLMs
have none, and with BERT's 0.1 the toy run reached validation Recall@10 0.22 in 15 epochs, 1.0
without.

The [ITEM] token is added to the Item LLM's tokenizer and vocabulary; its input embedding starts
as the mean of the existing word embeddings (deterministic, so a frozen table can be cached).

Backbones: both LLMs default to the packaged all-MiniLM-L6-v2 (HLLM uses TinyLlama / Baichuan2;
any AutoModel name works where its weights exist). A bidirectional encoder becomes a causal User
LLM through a 4D additive attention mask (lower-triangular and key padding), which transformers'
mask utilities pass through unchanged: no model-specific flag is needed (checked for BERT, and
for Llama, where it equals the model's own causal mask).

Because items are scored from their text, items never seen in training can be ranked: see the
`cold_start` experiment (split.holdout_items), which Lite-LLM4Rec's projection head cannot do.
Held-out items are never sampled as negatives: training sees only the items of split.train.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from benchmarks import backbones
from benchmarks.errors import ConfigError
from benchmarks.latency import section
from benchmarks.split import pad_histories, sampling_samples
from benchmarks.models import ModelParams
from benchmarks.training import NeuralRecommender
from benchmarks.tensors import cache_key, cached_tensor, standardize_item_vectors, tensor_sha256

ITEM_TOKEN = "[ITEM]"
ITEM_TOKEN_RULE = "hllm-item-token-v1:appended-last;init=mean-word-embedding"  # part of the cache key


# ----------------------------------------------------------------------------- Item LLM


class ItemLLM(nn.Module):
    """Token ids of "<instruction><text>[ITEM]" -> the [ITEM] token's final hidden state."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        item_position = attention_mask.sum(1) - 1  # [ITEM] is each text's last real token
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), item_position]


def load_item_llm(name: str) -> tuple[object, ItemLLM, int]:
    """The tokenizer with [ITEM] added, the Item LLM with a vocabulary row for it, and its id."""
    tokenizer = backbones.load_tokenizer(name)
    tokenizer.add_tokens([ITEM_TOKEN], special_tokens=True)
    encoder = backbones.load_encoder(name)
    old_rows = encoder.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > old_rows:  # some vocabularies are padded beyond the tokenizer: no resize
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    item_token_id = tokenizer.convert_tokens_to_ids(ITEM_TOKEN)
    with torch.no_grad():
        words = encoder.get_input_embeddings().weight
        words[item_token_id] = words[:old_rows].mean(0)
    return tokenizer, ItemLLM(encoder), item_token_id


def tokenize_items(tokenizer, texts: list[str], instruction: str, max_length: int,
                   item_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_items + 1, width) token ids and mask; row i is item i's prompt with [ITEM] appended
    after its last token (the text is truncated to leave room for it). Row 0, padding, holds
    [ITEM] alone and is never used."""
    encoded = tokenizer([instruction + text for text in texts], truncation=True,
                        max_length=max_length - 1)["input_ids"]
    rows = [[item_token_id]] + [tokens + [item_token_id] for tokens in encoded]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, tokens in enumerate(rows):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    return ids, mask


@torch.no_grad()
def encode_all_items(item_llm: ItemLLM, ids: torch.Tensor, mask: torch.Tensor, batch_size: int,
                     progress: bool = False) -> torch.Tensor:
    """(n_items + 1, width) float32 item embeddings, row 0 zero; longest prompts first so each
    batch is trimmed to little padding."""
    lengths = mask.sum(1)
    order = torch.argsort(lengths[1:], descending=True) + 1
    out = None
    for chunk in tqdm(order.split(batch_size), desc="item LLM", disable=not progress, leave=False):
        width = int(lengths[chunk].max())
        vectors = item_llm(ids[chunk, :width], mask[chunk, :width]).float()
        if out is None:
            out = torch.zeros(ids.shape[0], vectors.shape[1], device=vectors.device)
        out[chunk] = vectors
    return out


def frozen_item_table(dataset, name: str, *, instruction: str, max_length: int, batch_size: int,
                      cache_dir: str | Path, device: torch.device, progress: bool = True) -> tuple[torch.Tensor, dict]:
    """The frozen Item LLM's [ITEM] embedding of every item, computed once and cached."""
    key = cache_key(name, f"{ITEM_TOKEN_RULE};instruction={instruction!r}", max_length, dataset.content_hash)
    path = Path(cache_dir) / f"{dataset.name}-hllm-{key}.safetensors"
    info = {"item_llm": name, "instruction": instruction, "max_length": max_length, "cache_key": key}

    def compute() -> torch.Tensor:
        tokenizer, item_llm, item_token_id = load_item_llm(name)
        ids, mask = tokenize_items(tokenizer, dataset.item_texts[1:], instruction, max_length, item_token_id)
        item_llm = item_llm.to(device).eval()
        return encode_all_items(item_llm, ids.to(device), mask.to(device), batch_size, progress).cpu()

    table, state = cached_tensor(path, "item_embeddings", dataset.n_items + 1, compute,
                                 {"model": name, "rule": ITEM_TOKEN_RULE})
    return table, {**info, "cache": state, "sha256": tensor_sha256(table)}


# ----------------------------------------------------------------------------- User LLM and loss


def causal_attention_mask(real: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, L, L) additive mask: position t attends to real positions <= t. The diagonal is
    always open, so a padded position (or an empty history) never has every key masked."""
    length = real.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=real.device).tril()
    itself = torch.eye(length, dtype=torch.bool, device=real.device)
    allowed = causal & (real[:, None, None, :] | itself)
    return torch.zeros(allowed.shape, dtype=dtype, device=real.device).masked_fill(~allowed, torch.finfo(dtype).min)


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

    def __init__(self, user_llm: nn.Module, *, item_llm: ItemLLM | None = None,
                 item_tokens: torch.Tensor | None = None, item_token_mask: torch.Tensor | None = None,
                 frozen_table: torch.Tensor | None = None, temperature: float = 0.07,
                 user_input_norm: float | None = None):
        super().__init__()
        self.item_llm = item_llm
        # the item texts and a frozen table are data, not weights: kept out of the state dict
        if item_llm is not None:
            self.register_buffer("item_tokens", item_tokens, persistent=False)
            self.register_buffer("item_token_mask", item_token_mask, persistent=False)
            item_width = backbones.hidden_size(item_llm.encoder)
        else:
            self.register_buffer("frozen_table", frozen_table, persistent=False)
            item_width = frozen_table.shape[1]
        self.standardize = False  # end to end: z-scores over the items at hand (item_norm)
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
        """Embeddings of item ids (any shape; id 0 -> zeros). End to end, the Item LLM runs
        once per distinct item among them, with gradients."""
        if self.item_llm is None:
            return self.frozen_table[ids]  # standardised once, when the model was built
        unique = torch.unique(ids)
        real = unique[unique > 0]
        width = int(self.item_token_mask[real].sum(1).max())
        vectors = self._standardized(self.item_llm(self.item_tokens[real, :width], self.item_token_mask[real, :width]))
        table = torch.cat([vectors.new_zeros(1, vectors.shape[1]), vectors])
        return table[torch.where(ids > 0, torch.searchsorted(real, ids) + 1, 0)]

    def all_item_embeddings(self, batch_size: int) -> torch.Tensor:
        """(n_items + 1, width) embeddings of every item, row 0 zero."""
        if self.item_llm is None:
            return self.frozen_table
        table = encode_all_items(self.item_llm, self.item_tokens, self.item_token_mask, batch_size)
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
            scores = F.normalize(user.float(), dim=-1) @ F.normalize(item_table.float(), dim=-1).T
            return scores.index_fill(1, torch.tensor([0], device=scores.device), float("-inf"))


# ----------------------------------------------------------------------------- the recommender


@dataclass
class HLLMParams(ModelParams):
    item_llm: str = "all-MiniLM-L6-v2"       # HLLM: TinyLlama-1.1B or Baichuan2-7B
    user_llm: str = "all-MiniLM-L6-v2"
    item_llm_training: str = "end_to_end"    # end_to_end | frozen (embeddings computed once, cached)
    item_instruction: str = "Compress the following sentence into embedding: "  # HLLM's prompt
    item_max_length: int = 64                # tokens of instruction + text, [ITEM] included
    item_batch_size: int = 64                # items per Item LLM call when embedding every item
    item_cache_dir: str = ".cache/item_vectors"
    item_norm: str = "standardize"           # standardize | none (HLLM as published; see docstring)
    user_input_scale: str = "token_embeddings"  # none | token_embeddings (validation; see docstring)
    item_llm_dropout: float = 0.0            # end to end; HLLM's decoder LLMs have none (see docstring)
    max_seq_length: int = 20                 # items the User LLM reads
    num_negatives: int = 256                 # sampled negatives per batch, shared by its positions
    in_batch_negatives: bool = True          # the batch's other positives are negatives too
    temperature: float = 0.07                # initial; 1 / temperature is learned, within [1, 100]

    def validate(self) -> None:
        self.choice("item_llm_training", ("end_to_end", "frozen"))
        self.choice("item_norm", ("standardize", "none"))
        self.choice("user_input_scale", ("token_embeddings", "none"))
        self.positive_int("max_seq_length", "item_batch_size")
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

    def build(self) -> None:
        p, dataset, device = self.params, self.dataset, self.device
        self.window = int(p["max_seq_length"])
        self.frozen = p["item_llm_training"] == "frozen"
        user_llm = backbones.load_encoder(p["user_llm"])
        user_input_norm = backbones.token_embedding_norm(user_llm) if p["user_input_scale"] == "token_embeddings" else None
        if self.frozen:
            table, self.item_table_info = frozen_item_table(
                dataset, p["item_llm"], instruction=p["item_instruction"], max_length=int(p["item_max_length"]),
                batch_size=int(p["item_batch_size"]), cache_dir=p["item_cache_dir"], device=device)
            if p["item_norm"] == "standardize":
                table = standardize_item_vectors(table)
            self.module = HLLMNet(user_llm, frozen_table=table, temperature=float(p["temperature"]),
                                  user_input_norm=user_input_norm)
        else:
            tokenizer, item_llm, item_token_id = load_item_llm(p["item_llm"])
            backbones.set_dropout(item_llm, float(p["item_llm_dropout"]))
            ids, mask = tokenize_items(tokenizer, dataset.item_texts[1:], p["item_instruction"],
                                       int(p["item_max_length"]), item_token_id)
            self.item_table_info = {"item_llm": p["item_llm"], "instruction": p["item_instruction"],
                                    "max_length": int(p["item_max_length"]), "training": "end_to_end"}
            self.module = HLLMNet(user_llm, item_llm=item_llm, item_tokens=ids, item_token_mask=mask,
                                  temperature=float(p["temperature"]), user_input_norm=user_input_norm)
            self.module.standardize = p["item_norm"] == "standardize"
        self.module.to(device)
        self.item_table_info["norm"] = p["item_norm"]
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
                self._evaluation_table = self.module.all_item_embeddings(int(self.params["item_batch_size"]))
            self.module.train(was_training)
            self.item_table_computations += 1
        return self._evaluation_table

    # ---- training (the shared loop in benchmarks/training.py calls these)

    def training_batches(self, split, epoch: int, rng: np.random.Generator, batch_size: int) -> list:
        """One random segment of at most max_seq_length + 1 training items per user (as
        Lite-LLM4Rec's sampling strategy); every position of it predicts the item after it."""
        inputs, last, _ = sampling_samples(split.train, self.window, rng)
        targets = [np.append(seq[1:], t) for seq, t in zip(inputs, last)]
        inputs, targets = pad_histories(inputs, self.window), pad_histories(targets, self.window)
        train_items = np.unique(np.concatenate(split.train)) if split.train else np.zeros(0, dtype=np.int64)
        train_items = train_items[train_items > 0]
        n_negatives = int(self.params["num_negatives"])
        order = rng.permutation(len(inputs))
        batches = []
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            negatives = np.unique(rng.choice(train_items, size=n_negatives)) if n_negatives else np.zeros(0, dtype=np.int64)
            batches.append((inputs[rows], targets[rows], negatives.astype(np.int64)))
        return batches

    def loss(self, batch) -> torch.Tensor:
        self._drop_evaluation_table()  # the weights are about to change
        inputs, targets, negatives = (torch.from_numpy(a).to(self.device) for a in batch)
        valid = targets > 0
        positive_ids = targets[valid]
        negative_ids = torch.unique(torch.cat([negatives, positive_ids])) if self.params["in_batch_negatives"] else negatives
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
                "backbones": f"item LLM {p['item_llm']} ({p['item_llm_training']}); user LLM {p['user_llm']} (causal)",
                "user_input_norm": self.module.user_input_norm,
                "negatives": {"sampled": int(p["num_negatives"]), "in_batch": bool(p["in_batch_negatives"])},
                "temperature": float(1.0 / self.module.logit_scale_clamped().detach().exp())}
