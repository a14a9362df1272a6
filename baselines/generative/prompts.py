"""Prompts: a user's history written as item-id tokens inside P5's sentence (or after POD's learned
prompt vectors), with P5's whole-word ids marking which sub-word tokens form one item id."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class PromptBuilder:
    """Token ids of each user's input: [prefix text] item, item, ... [suffix text], with the
    tokenizer's special tokens, and whole-word ids (k for the tokens of the k-th item, 0 else)."""

    def __init__(self, tokenizer, item_tokens: list[tuple], template: str | None, window: int,
                 max_length: int):
        self.tokenizer = tokenizer
        self.item_tokens = item_tokens
        self.window = window
        self.max_length = max_length
        prefix, suffix = (template.split("{history}") if template else ("", ""))
        encode = lambda text: tuple(tokenizer(text, add_special_tokens=False)["input_ids"]) if text.strip() else ()  # noqa: E731
        self.prefix, self.suffix = encode(prefix), encode(suffix)
        self.separator = encode(",")
        # special tokens around a sequence ([CLS] .. [SEP] for BERT, .. </s> for T5)
        bare = tokenizer("item", add_special_tokens=False)["input_ids"]
        probe = tokenizer("item")["input_ids"]
        at = next(i for i in range(len(probe)) if probe[i: i + len(bare)] == bare)
        self.head, self.tail = tuple(probe[:at]), tuple(probe[at + len(bare):])

    def user_tokens(self, history: np.ndarray) -> tuple[list[int], list[int]]:
        tokens, words = list(self.head + self.prefix), [0] * len(self.head + self.prefix)
        for k, item in enumerate(history[-self.window:], start=1):
            if k > 1:
                tokens += self.separator
                words += [0] * len(self.separator)
            tokens += self.item_tokens[item]
            words += [k] * len(self.item_tokens[item])
        body = self.max_length - len(self.tail) - len(self.suffix)
        if len(tokens) > body:  # keep the newest items when the text is too long
            cut = len(tokens) - body
            keep = len(self.head + self.prefix)
            tokens, words = tokens[:keep] + tokens[keep + cut:], words[:keep] + words[keep + cut:]
        tokens += self.suffix + self.tail
        words += [0] * len(self.suffix + self.tail)
        return tokens, words

    def batch(self, histories, pad_id: int):
        rows = [self.user_tokens(h) for h in histories]
        width = max(len(t) for t, _ in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        word_ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (t, w) in enumerate(rows):
            input_ids[r, : len(t)] = torch.tensor(t)
            word_ids[r, : len(w)] = torch.tensor(w)
            mask[r, : len(t)] = 1
        return input_ids, word_ids, mask


def input_token_limit(config, max_input_tokens: int) -> int:
    """model.max_input_tokens, capped by the backbone's absolute position table (BERT's 512;
    T5's relative positions have none)."""
    positions = getattr(config, "max_position_embeddings", None)
    return min(int(max_input_tokens), int(positions) if positions else 1 << 30)


class PromptInputs(nn.Module):
    """Token embeddings + whole-word embeddings, optionally after learned prompt vectors (POD)."""

    def __init__(self, token_embeddings: nn.Embedding, width: int, window: int,
                 whole_word: bool, n_prompt_vectors: int, insert_at: int = 0):
        super().__init__()
        self.insert_at = insert_at  # after the leading special tokens ([CLS] for BERT, none for T5)
        self.token_embeddings = token_embeddings  # the backbone's own (shared with its encoder)
        self.whole_word_embeddings = nn.Embedding(window + 1, width, padding_idx=0) if whole_word else None
        if self.whole_word_embeddings is not None:
            nn.init.normal_(self.whole_word_embeddings.weight, std=0.02)
            self.whole_word_embeddings.weight.data[0].zero_()
        self.prompt_vectors = (nn.Parameter(torch.randn(n_prompt_vectors, width) * 0.02)
                               if n_prompt_vectors else None)

    def forward(self, input_ids, word_ids, mask):
        embeds = self.token_embeddings(input_ids)
        if self.whole_word_embeddings is not None:
            embeds = embeds + self.whole_word_embeddings(word_ids)
        if self.prompt_vectors is not None:
            prompt = self.prompt_vectors.unsqueeze(0).expand(embeds.shape[0], -1, -1).to(embeds.dtype)
            at = self.insert_at
            embeds = torch.cat([embeds[:, :at], prompt, embeds[:, at:]], dim=1)
            mask = torch.cat([mask[:, :at], mask.new_ones(mask.shape[0], prompt.shape[1]), mask[:, at:]], dim=1)
        return embeds, mask
