"""Prompts: a user's history written as item-id tokens inside P5's sentence (or after POD's learned
prompt vectors), with the user's id ("user_7") where the template says {user} (before the history
where it does not), and P5's whole-word ids marking which sub-word tokens form one id.

The user id is written as P5 (jeykigung/P5, src/all_amazon_templates.py: "... purchase history of
user_{} : ..."), POD (lileipisces/POD, templates.py and utils.py: "user_{} item_{} ...") and
LightLM (dongyuanjushi/LightLM, utils/prompt.py: "... user_{} ...") write it, from the user's index
in the split, and split into sub-word tokens by the backbone's own tokenizer as P5 lets T5's
sentencepiece split it ("user_7": user, _, 7 for WordPiece and T5 alike), tokenised alone as the
item ids are. Its tokens form one whole word, numbered in order of appearance with the items (POD's
`compute_whole_word_id` numbers user_xx 1 and the items after it). A batch prepared without users
(a caller outside the protocol, which always hands them to a model that reads them) reads as
`user_in_prompt: false`: "the user" where the template says {user}, nothing where it does not.
"""
from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

USER = None  # the user id's place among a template's pieces of text


class PromptBuilder:
    """Token ids of each user's input: [text] [user id] [text] item, item, ... [text], with the
    tokenizer's special tokens, and whole-word ids (k for the tokens of the k-th id, 0 else)."""

    def __init__(self, tokenizer, item_tokens: list[tuple], template: str | None, window: int,
                 max_length: int, user_in_prompt: bool = False):
        self.tokenizer = tokenizer
        self.item_tokens = item_tokens
        self.window = window
        self.max_length = max_length
        self.user_in_prompt = bool(user_in_prompt)
        self.whole_words = window + self.user_in_prompt  # the items, and the user id where written
        template = template or "{history}"
        with_user = template if "{user}" in template else "{user} " + template
        # {with users: (pieces before the history, pieces after it)}, a piece being tokens or USER
        self.parts = {True: self._pieces(with_user), False: self._pieces(template.replace("{user}", "the user"))}
        self.separator = self._encode(",")
        self.user_ids: dict[int, tuple] = {}
        # special tokens around a sequence ([CLS] .. [SEP] for BERT, .. </s> for T5)
        bare = tokenizer("item", add_special_tokens=False)["input_ids"]
        probe = tokenizer("item")["input_ids"]
        at = next(i for i in range(len(probe)) if probe[i: i + len(bare)] == bare)
        self.head, self.tail = tuple(probe[:at]), tuple(probe[at + len(bare):])

    def _encode(self, text: str) -> tuple:
        # a method, not a lambda kept on the instance: a trained model is pickled whole (--keep-models)
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text.strip() else ()

    def _pieces(self, template: str) -> tuple[list, list]:
        prefix, suffix = template.split("{history}")
        split = lambda text: [USER if part == "{user}" else self._encode(part)  # noqa: E731
                              for part in re.split(r"(\{user\})", text) if part]
        return split(prefix), split(suffix)

    def user_id(self, user: int) -> tuple:
        """The tokens of "user_<index>", as the backbone's tokenizer splits it."""
        if user not in self.user_ids:
            self.user_ids[user] = self._encode(f"user_{int(user)}")
        return self.user_ids[user]

    def user_tokens(self, history: np.ndarray, user: int | None = None) -> tuple[list[int], list[int]]:
        with_user = self.user_in_prompt and user is not None
        before, after = self.parts[with_user]
        items = history[-self.window:]
        # whole words in order of appearance: a user id written before the history is the first
        first_item = 2 if with_user and USER in before else 1
        user_word = (self.user_id(user), 1 if first_item == 2 else len(items) + 1) if with_user else ((), 0)
        tokens, words = self._text(self.head, before, user_word)
        keep = len(tokens)
        for j, item in enumerate(items):
            if j:
                tokens += self.separator
                words += [0] * len(self.separator)
            tokens += self.item_tokens[item]
            words += [first_item + j] * len(self.item_tokens[item])
        suffix, suffix_words = self._text((), after, user_word)
        body = self.max_length - len(self.tail) - len(suffix)
        if len(tokens) > body:  # keep the newest items when the text is too long
            cut = len(tokens) - body
            tokens, words = tokens[:keep] + tokens[keep + cut:], words[:keep] + words[keep + cut:]
        return tokens + suffix + list(self.tail), words + suffix_words + [0] * len(self.tail)

    @staticmethod
    def _text(head: tuple, pieces: list, user_word: tuple) -> tuple[list[int], list[int]]:
        """Tokens and whole-word ids of the template's text around the history."""
        tokens, words = list(head), [0] * len(head)
        for piece in pieces:
            ids, word = user_word if piece is USER else (piece, 0)
            tokens += ids
            words += [word] * len(ids)
        return tokens, words

    def lengths(self, histories, users=None) -> np.ndarray:
        """Tokens of each user's input (float64, for input_length)."""
        users = [None] * len(histories) if users is None else users
        return np.array([len(self.user_tokens(h, u)[0]) for h, u in zip(histories, users)], dtype=np.float64)

    def batch(self, histories, pad_id: int, users=None):
        users = [None] * len(histories) if users is None else users
        rows = [self.user_tokens(h, u) for h, u in zip(histories, users)]
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

    def __init__(self, token_embeddings: nn.Embedding, width: int, whole_words: int,
                 whole_word: bool, n_prompt_vectors: int, insert_at: int = 0):
        super().__init__()
        self.insert_at = insert_at  # after the leading special tokens ([CLS] for BERT, none for T5)
        self.token_embeddings = token_embeddings  # the backbone's own (shared with its encoder)
        self.whole_word_embeddings = nn.Embedding(whole_words + 1, width, padding_idx=0) if whole_word else None
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
