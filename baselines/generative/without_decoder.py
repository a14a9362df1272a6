"""The paper's decoder-free variants of P5 and POD (Tables 2 and 9)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from benchmarks import backbones
from benchmarks.latency import section
from benchmarks.models import ModelParams
from benchmarks.split import next_item_batches
from benchmarks.tensors import masked_mean
from benchmarks.training import NeuralRecommender, mask_padding_column

from .indexing import random_indexing
from .p5 import GENERATIVE_SEARCH_SPACE, P5_PROMPT
from .prompts import PromptBuilder, PromptInputs, input_token_limit


@dataclass
class P5WithoutDecoderParams(ModelParams):
    backbone: str = "all-MiniLM-L6-v2"
    backbone_init: str = "pretrained"
    item_text: str = "id"                    # id (w/o_d) | title (w/o_d_TID)
    title_text: str = "title"                # what "title" reads: the item's title alone (the paper's
                                             # Table 2) | text (the dataset's item text: title, year, genres)
    indexing_seed: int = 0
    prompt: str | None = P5_PROMPT
    prompt_vectors: int = 0                  # POD's continuous prompt (POD_w/o_d, POD_w/o_d_TID)
    whole_word_embeddings: bool = True
    max_seq_length: int = 20
    max_input_tokens: int = 512
    strategy: str = "sampling"
    dropout: float = 0.1

    def validate(self) -> None:
        self.choice("item_text", ("id", "title"))
        self.choice("title_text", ("title", "text"))
        self.choice("strategy", ("sampling", "all"))
        self.choice("backbone_init", ("pretrained", "scratch"))
        self.positive_int("max_seq_length", "max_input_tokens")
        self.fraction("dropout")


class P5WithoutDecoder(NeuralRecommender):
    """P5's prompt (or POD's prompt vectors) read by the backbone's encoder, mean-pooled, scored
    against every item by an item projection head (w/o_d), or the same with item titles instead
    of ids (w/o_d_TID)."""

    Params = P5WithoutDecoderParams
    input_unit = "tokens"

    @classmethod
    def search_space(cls, params) -> dict:
        return {key: dict(spec) for key, spec in GENERATIVE_SEARCH_SPACE.items()}  # as P5's (p5.py)

    @classmethod
    def reads_item_text(cls, params) -> bool:
        return params.item_text == "title"  # w/o_d_TID reads titles; w/o_d reads ids

    def build(self) -> None:
        p, dataset, device = self.params, self.dataset, self.device
        self.window = p.max_seq_length
        self.tokenizer = backbones.load_tokenizer(p.backbone)
        if p.item_text == "id":
            texts = random_indexing(dataset.n_items, p.indexing_seed)
        else:
            texts = [""] + list((dataset.item_titles if p.title_text == "title" else dataset.item_texts)[1:])
        item_tokens = [tuple(self.tokenizer(t, add_special_tokens=False)["input_ids"]) if i else ()
                       for i, t in enumerate(texts)]
        self.encoder = backbones.load_encoder(p.backbone, pretrained=p.backbone_init == "pretrained")
        self.prompt = PromptBuilder(self.tokenizer, item_tokens, p.prompt, self.window,
                                    input_token_limit(self.encoder.config, p.max_input_tokens) - p.prompt_vectors)
        width = backbones.hidden_size(self.encoder)
        self.inputs = PromptInputs(self.encoder.get_input_embeddings(), width, self.window,
                                   bool(p.whole_word_embeddings), p.prompt_vectors, len(self.prompt.head))
        self.dropout = nn.Dropout(float(p.dropout))
        self.item_projection_head = nn.Linear(width, self.n_items + 1)
        self.module = nn.ModuleDict({"encoder": self.encoder, "inputs": self.inputs,
                                     "item_projection_head": self.item_projection_head,
                                     "dropout": self.dropout}).to(device)

    def training_batches(self, split, epoch: int, rng: np.random.Generator, batch_size: int) -> list:
        return next_item_batches(split.train, self.params.strategy, self.window, rng, batch_size, padded=False)

    def loss(self, batch) -> torch.Tensor:
        histories, targets = batch
        logits = self.score(self.prepare(histories))
        return nn.functional.cross_entropy(logits, torch.from_numpy(targets).to(self.device))

    def prepare(self, histories):
        input_ids, word_ids, mask = self.prompt.batch(histories, self.tokenizer.pad_token_id)
        return input_ids.to(self.device), word_ids.to(self.device), mask.to(self.device)

    def score(self, batch) -> torch.Tensor:
        input_ids, word_ids, mask = batch
        with section("encode"):
            embeds, mask = self.inputs(input_ids, word_ids, mask)
            hidden = self.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            user = masked_mean(hidden, mask)
        with section("score"):
            return mask_padding_column(self.item_projection_head(self.dropout(user)))

    def input_length(self, histories) -> np.ndarray:
        extra = self.params.prompt_vectors
        return np.array([len(self.prompt.user_tokens(h)[0]) + extra for h in histories], dtype=np.float64)

    def describe(self) -> dict:
        p = self.params
        return {**super().describe(), "backbones": f"{p.backbone} encoder only (no decoder)",
                "item_text": p.item_text if p.item_text == "id" else f"{p.item_text} ({p.title_text})"}
