"""Beam-search rules: history items never generated (banned end-of-id, or left out of a prefix
trie of valid ids), and the trie restricted to a user's sampled candidates."""
from __future__ import annotations

from collections import Counter

import torch

from .indexing import ItemIdTokens


class BanHistoryItems:
    """A logits processor for unconstrained beam search: the end-of-id token is banned right after
    the tokens of one of the user's history items, so a history item is never generated."""

    def __init__(self, banned: list[set], num_beams: int, eos_id: int, *, start: int = 1):
        self.banned, self.num_beams, self.eos_id, self.start = banned, num_beams, eos_id, start

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for row, seq in enumerate(input_ids[:, self.start:].tolist()):
            if tuple(seq) in self.banned[row // self.num_beams]:
                scores[row, self.eos_id] = float("-inf")
        return scores


class TrieConstraint:
    """prefix_allowed_tokens_fn for `generate`: only continuations of valid item ids that still
    lead to at least one item the user may get: outside the user's history (`excluded`: the
    prefix counts of each user's history items) or, on sampled candidates, among them (`allowed`:
    the prefix counts of each user's candidates).

    Both rules read only the generated id tokens (BanHistoryItems takes the same `start`): `start`
    tokens come before them in the sequences `generate` passes (1: an encoder-decoder's decoder
    start token; 0: a decoder-only model generating from its prompt's embeddings, whose sequences
    hold the generated tokens alone)."""

    def __init__(self, ids: ItemIdTokens, pad_id: int, *, excluded: list[Counter] | None = None,
                 allowed: list[Counter] | None = None, start: int = 1):
        if (excluded is None) == (allowed is None):
            raise ValueError("TrieConstraint needs exactly one of excluded= and allowed=")
        self.ids, self.pad_id, self.excluded, self.allowed, self.start = ids, pad_id, excluded, allowed, start

    def __call__(self, batch_id: int, sent: torch.Tensor) -> list[int]:
        prefix = tuple(sent[self.start:].tolist())  # the generated id tokens only
        children = self.ids.children.get(prefix)
        if children is None:  # finished (after end of id) or off the trie
            return [self.pad_id]
        if self.allowed is not None:
            left = self.allowed[batch_id]
            tokens = [t for t in children if left.get(prefix + (t,), 0) > 0]
        else:
            seen = self.excluded[batch_id]
            tokens = [t for t in children if self.ids.items_under[prefix + (t,)] > seen.get(prefix + (t,), 0)]
        return tokens or [self.pad_id]
