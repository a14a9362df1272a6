"""The decoder-only path of P5, POD and LightLM: the same prompts and item ids on a causal LM
(SmolLM2-135M, any Llama-family name), as OpenP5 offers a LLaMA backbone beside T5.

    training:   [prompt (POD: prompt vectors first)][id tokens of the target][end of id]
                one causal sequence per user, right-padded; labels -100 on the prompt and on
                padding, so the loss is the next-token cross-entropy on the id tokens only
                (OpenP5, src/src_llama/train.py: `process_func` labels the prompt part -100 and
                keeps the output's tokens, end of sequence included)
    inference:  the prompts left-padded (every prompt ends at the same position, so generation
                continues each one right after its last real token; OpenP5 sets
                `tokenizer.padding_side = "left"` for the same reason), position ids from the
                attention mask (transformers' `generate` counts them from its cumulative sum, so a
                padded row's positions start at 0 like an unpadded one's), KV cache on, 20-beam
                search with the prefix trie applied to the generated tokens only; the prompt is
                read once per user (`read_prompt`, timed as "encode" like the encoder-decoder's
                encoder pass) and its keys and values copied to the user's beams, where
                `generate` alone would expand the prompt to every beam and read it 20 times

The prompt enters `generate` as embeddings (P5's whole-word embeddings, POD's prompt vectors have
no token ids), so the sequences `generate` returns hold only the generated tokens and the trie
reads them from their first token (OpenP5's `prefix_allowed_tokens_fn` in
src/src_llama/utils/generation_trie.py looks for a keyword to cut the prompt off; here there is
no prompt in the sequence to cut).
"""
from __future__ import annotations

import inspect

import torch
from torch import nn


def left_align(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's real positions moved to the end of each row, in order (left padding)."""
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)  # padding (0) first
    return embeds.gather(1, order.unsqueeze(-1).expand_as(embeds)), mask.gather(1, order)


def last_real_state(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's hidden state at its last real position (either padding side): what a causal
    model has read the whole input at."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (positions * (mask > 0)).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def prompt_then_target(prompt: torch.Tensor, prompt_mask: torch.Tensor, labels: torch.Tensor,
                       token_embeddings: nn.Embedding) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher forcing on a causal LM: (embeddings, attention mask, labels) of each user's prompt
    followed by the target's id tokens and end of id, right-padded. `labels` (B, T) are the
    target's tokens padded with -100 (`ItemIdTokens.labels`); the returned labels are -100 on the
    prompt and on every padded position."""
    target = labels != -100
    embeds = torch.cat([prompt, token_embeddings(labels.clamp(min=0)).to(prompt.dtype)], dim=1)
    real = torch.cat([prompt_mask.bool(), target], dim=1)
    full = torch.cat([torch.full_like(prompt_mask, -100, dtype=labels.dtype), labels], dim=1)
    order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)  # real first, in order
    embeds = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))
    return embeds, real.gather(1, order).long(), full.gather(1, order)


def causal_lm_loss(lm: nn.Module, embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy where a label is set: the hidden state at t predicts the token at
    t + 1. The LM head runs on those positions only (a 49k-token vocabulary over every position
    of a batch would cost more than the rest of the step)."""
    hidden = lm.base_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    labelled = targets != -100
    logits = lm.get_output_embeddings()(hidden[:, :-1][labelled])
    return nn.functional.cross_entropy(logits.float(), targets[labelled])


def _cache_argument(lm: nn.Module) -> str:
    """The name transformers gives the KV cache argument and output (`cache` from 5.24 on,
    `past_key_values` before)."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def read_prompt(lm: nn.Module, embeds: torch.Tensor, mask: torch.Tensor, num_beams: int):
    """The KV cache of every left-padded prompt but its last position, each user's copied to its
    `num_beams` beams. Positions count real tokens only, as `generate` counts them."""
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    key = _cache_argument(lm)
    cache = lm.base_model(inputs_embeds=embeds[:, :-1], attention_mask=mask[:, :-1],
                          position_ids=positions[:, :-1], use_cache=True)[key]
    cache.batch_repeat_interleave(num_beams)
    return cache


def beam_search(lm: nn.Module, embeds: torch.Tensor, mask: torch.Tensor, cache, settings: dict,
                rule: dict) -> torch.Tensor:
    """`generate` from left-padded prompt embeddings (the sequences it returns hold the generated
    tokens alone). With `cache` (read_prompt) it reads only each prompt's last position before
    its first new token; without (cache off), the whole prompt at every step."""
    extra = {_cache_argument(lm): cache} if cache is not None else {}
    return lm.generate(inputs_embeds=embeds, attention_mask=mask, **extra, **settings, **rule)
