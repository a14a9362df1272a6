"""HLLM's Item LLM: "<instruction><item text>" followed by a learnable [ITEM] embedding (HLLM's
`item_emb_tokens`, initialised N(0, 0.02)); the final hidden state at [ITEM] is the item's
embedding. Three ways to run it (`item_llm_training`):

- `end_to_end` (HLLM's own): `TextItemLLM`, the Item LLM trained with the User LLM; each call runs
  it over the texts of the items asked for, [ITEM] placed right after each text.
- `frozen_cached` (a causal Item LLM on a CPU): `CachedItemLLM`, the Item LLM frozen; every item's
  text goes through it once and its keys and values are kept, so an item's embedding is one
  [ITEM] position attending to its cached text. The [ITEM] embedding still trains through the
  User LLM's loss, and the embeddings equal the end-to-end path's at the same weights (tested).
- `frozen` (the cheapest, any backbone): a fixed table, the [ITEM] input the mean of the word
  embeddings, computed once and cached on disk; nothing of the Item LLM trains.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from benchmarks import backbones
from benchmarks.tensors import cache_key, cached_tensor, tensor_sha256

ITEM_TOKEN_RULE = "item-token-v2"  # the frozen table's [ITEM]: the mean word embedding, after the text


def tokenize_texts(tokenizer, texts: list[str], instruction: str, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_items + 1, width) token ids of "<instruction><text>" (cut to leave room for [ITEM]) and
    their lengths; row 0, padding, is one token and never used."""
    encoded = tokenizer([instruction + text for text in texts], truncation=True, max_length=max_length - 1)["input_ids"]
    rows = [[0]] + encoded
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    for row, tokens in enumerate(rows):
        ids[row, : len(tokens)] = torch.tensor(tokens)
    return ids, torch.tensor([len(r) for r in rows], dtype=torch.long)


class TextItemLLM(nn.Module):
    """End to end: the Item LLM over each asked item's text, the [ITEM] embedding after it."""

    def __init__(self, llm: nn.Module, text_ids: torch.Tensor, lengths: torch.Tensor):
        super().__init__()
        self.llm = llm
        self.register_buffer("text_ids", text_ids, persistent=False)  # data, not weights
        self.register_buffer("lengths", lengths, persistent=False)

    def forward(self, items: torch.Tensor, item_token: torch.Tensor) -> torch.Tensor:
        lengths = self.lengths[items]
        width = int(lengths.max())
        words = self.llm.get_input_embeddings()(self.text_ids[items, :width])
        inputs = torch.cat([words, words.new_zeros(len(items), 1, words.shape[-1])], dim=1)
        rows = torch.arange(len(items), device=items.device)
        inputs = inputs.index_put((rows, lengths), item_token.to(inputs.dtype).expand(len(items), -1))
        mask = torch.arange(width + 1, device=items.device)[None, :] <= lengths[:, None]
        hidden = self.llm(inputs_embeds=inputs, attention_mask=mask.long()).last_hidden_state
        return hidden[rows, lengths]


class CachedItemLLM(nn.Module):
    """Frozen causal Item LLM: the texts' keys and values computed once; an embedding is the
    [ITEM] position's final state over its item's cached text."""

    def __init__(self, llm: nn.Module, text_ids: torch.Tensor, lengths: torch.Tensor, batch_size: int,
                 device: torch.device, progress: bool = False):
        super().__init__()
        if not backbones.is_causal(llm):
            from benchmarks.errors import ConfigError

            raise ConfigError("model.item_llm_training frozen_cached needs a causal (decoder) Item LLM: a "
                              "bidirectional encoder's text states depend on [ITEM]; use end_to_end or frozen")
        self.llm = llm.requires_grad_(False).eval().to(device)
        self.register_buffer("lengths", lengths.to(device), persistent=False)
        text_ids = text_ids.to(device)
        keys, values = [], []
        with torch.no_grad():
            for chunk in tqdm(torch.arange(len(text_ids), device=device).split(batch_size), desc="item LLM cache",
                              disable=not progress, leave=False):
                mask = torch.arange(text_ids.shape[1], device=device)[None, :] < self.lengths[chunk, None]
                cache = self.llm(input_ids=text_ids[chunk], attention_mask=mask.long(), use_cache=True).past_key_values
                keys.append([layer.keys for layer in cache.layers])
                values.append([layer.values for layer in cache.layers])
        for layer in range(len(keys[0])):  # (n_items + 1, kv heads, width, head dim) per layer
            self.register_buffer(f"k{layer}", torch.cat([k[layer] for k in keys]), persistent=False)
            self.register_buffer(f"v{layer}", torch.cat([v[layer] for v in values]), persistent=False)
        self.n_layers = len(keys[0])

    def train(self, mode: bool = True):  # the frozen LLM stays in eval mode (no dropout)
        super().train(mode)
        self.llm.eval()
        return self

    def forward(self, items: torch.Tensor, item_token: torch.Tensor) -> torch.Tensor:
        from transformers import DynamicCache

        lengths = self.lengths[items]
        width = int(lengths.max())
        cache = DynamicCache()
        for layer in range(self.n_layers):
            cache.update(getattr(self, f"k{layer}")[items, :, :width], getattr(self, f"v{layer}")[items, :, :width], layer)
        mask = torch.arange(width + 1, device=items.device)[None, :] <= lengths[:, None]
        mask[:, -1] = True  # the [ITEM] position itself
        inputs = item_token.expand(len(items), 1, -1)
        hidden = self.llm(inputs_embeds=inputs, cache=cache, attention_mask=mask.long(),
                          position_ids=lengths[:, None]).last_hidden_state
        return hidden[:, -1]


def encode_all_items(item_llm: nn.Module, item_token: torch.Tensor, n_items: int, batch_size: int,
                     progress: bool = False) -> torch.Tensor:
    """(n_items + 1, width) float32 embeddings of every item, row 0 zero; longest texts first."""
    lengths = item_llm.lengths[1:]
    order = torch.argsort(lengths, descending=True) + 1
    out = None
    for chunk in tqdm(order.split(batch_size), desc="item LLM", disable=not progress, leave=False):
        vectors = item_llm(chunk.to(item_token.device), item_token).float()
        if out is None:
            out = torch.zeros(n_items + 1, vectors.shape[1], device=vectors.device)
        out[chunk.to(vectors.device)] = vectors
    return out


def frozen_item_table(dataset, name: str, *, instruction: str, max_length: int, batch_size: int,
                      cache_dir: str | Path, device: torch.device, progress: bool = True) -> tuple[torch.Tensor, dict]:
    """The frozen Item LLM's [ITEM] embedding of every item ([ITEM] = the mean word embedding, so
    the table is deterministic), computed once and cached on disk."""
    key = cache_key(name, f"{ITEM_TOKEN_RULE};instruction={instruction!r}", max_length, dataset.content_hash)
    path = Path(cache_dir) / f"{dataset.name}-hllm-{key}.safetensors"
    info = {"item_llm": name, "instruction": instruction, "max_length": max_length, "cache_key": key}

    def compute() -> torch.Tensor:
        tokenizer, llm = backbones.load_tokenizer(name), backbones.load_encoder(name).to(device).eval()
        ids, lengths = tokenize_texts(tokenizer, dataset.item_texts[1:], instruction, max_length)
        item_llm = TextItemLLM(llm, ids, lengths).to(device)
        token = llm.get_input_embeddings().weight.mean(0)
        with torch.no_grad():
            return encode_all_items(item_llm, token, dataset.n_items, batch_size, progress).cpu()

    table, state = cached_tensor(path, "item_embeddings", dataset.n_items + 1, compute,
                                 {"model": name, "rule": ITEM_TOKEN_RULE})
    return table, {**info, "cache": state, "sha256": tensor_sha256(table)}
