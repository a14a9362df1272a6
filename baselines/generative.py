"""Generative recommenders (P5, POD, LightLM) on one sequence-to-sequence core, and the paper's
decoder-free variants (Tables 2 and 9). Readable top to bottom.

    items -> text ids ("item_1234": random numbers by default, as in the paper)
    user's last 20 items -> prompt tokens (+ whole-word ids marking each item's sub-word tokens)
      -> encoder -> decoder generates the next item's id tokens, teacher-forced in training
    inference: 20-beam search (transformers' `generate`, with its cache) -> top-20 item ids

The three generative models differ only in their settings (their `defaults` below):
- P5: a natural-language prompt around the history, whole-word embeddings added to the token
  embeddings (P5's way of telling the encoder which sub-word tokens form one item id).
- POD: the discrete prompt replaced by a few learned continuous prompt vectors (shorter input).
- LightLM: deep and narrow (every feed-forward block cut to a small width), collaborative item
  indexing (hierarchical spectral clustering of the item co-occurrence graph, so items that occur
  together share id prefixes) and beam search constrained to valid item ids by a prefix trie.

Backbones: a T5 name loads `T5ForConditionalGeneration`; any other encoder (the offline default,
the packaged all-MiniLM-L6-v2) becomes transformers' `EncoderDecoderModel` with encoder and
decoder both initialised from it (bert2bert; the cross-attention starts new). Never silently a
different model: a backbone that cannot be loaded skips the run with the reason.

Lists: history items are never generated (the constrained trie leaves them out; unconstrained
decoding bans the end-of-id token after a history item's tokens), so the beam returns k
candidates that are not in the history without widening; strings that are not item ids are
dropped and counted, never replaced. The rule and the counts go into the record. Evaluated on
sampled candidates (1 target + 99 negatives, Figure 6), the beam may spell only the user's
candidates (the same prefix trie, restricted to them): the model ranks the 100 items, as a
scoring model does, instead of having its catalogue-wide list filtered to them.

Variants (`PromptEncoderRecommender`): `w/o_d` keeps P5's prompt and encoder, removes the
decoder, and puts an item projection head on the mean-pooled encoder output (scores every item
in one step); `w/o_d_TID` writes item titles instead of ids.
"""
from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from benchmarks import backbones
from benchmarks.latency import section
from benchmarks.split import next_item_batches
from benchmarks.training import NeuralRecommender
from lite_llm4rec.item_llm import masked_mean

# ----------------------------------------------------------------------------- item indexing


def random_indexing(n_items: int, seed: int) -> list[str]:
    """Each item gets a random distinct number (the paper's setting)."""
    numbers = np.random.default_rng(seed).permutation(n_items) + 1
    return [""] + [f"item_{n}" for n in numbers]


def sequential_indexing(train: list[np.ndarray], n_items: int) -> list[str]:
    """Items numbered in order of first appearance, user after user. Leaks the target: a user's
    consecutive items get consecutive numbers, so the next id is guessable from the last one."""
    warnings.warn("sequential item indexing leaks the target (consecutive items get consecutive "
                  "ids); use it only to measure that leak", stacklevel=2)
    number = np.zeros(n_items + 1, dtype=np.int64)
    next_number = 1
    for seq in train:
        for item in seq:
            if number[item] == 0:
                number[item] = next_number
                next_number += 1
    for item in range(1, n_items + 1):  # items only ever seen as validation or test targets
        if number[item] == 0:
            number[item] = next_number
            next_number += 1
    return [""] + [f"item_{number[i]}" for i in range(1, n_items + 1)]


def co_occurrence(train: list[np.ndarray], n_items: int, window: int = 2) -> sp.csr_matrix:
    """Symmetric counts of items appearing within `window` positions of each other in training."""
    rows, cols = [], []
    for seq in train:
        for gap in range(1, window + 1):
            rows.append(seq[:-gap])
            cols.append(seq[gap:])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    m = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(n_items + 1, n_items + 1)).tocsr()
    return m + m.T


def _spectral_clusters(graph: sp.csr_matrix, n_clusters: int, seed: int) -> np.ndarray:
    """Cluster labels of a graph's nodes: k-means on the top eigenvectors of the normalised
    adjacency (spectral clustering); an even split along the leading eigenvector when k-means
    puts everything in one cluster."""
    from scipy.cluster.vq import kmeans2
    from scipy.sparse.linalg import eigsh

    n = graph.shape[0]
    degree = np.asarray(graph.sum(1)).ravel() + 1e-9
    scale = sp.diags(1.0 / np.sqrt(degree))
    norm_adj = scale @ (graph + sp.identity(n) * 1e-6) @ scale
    dims = min(n_clusters, n - 2)
    if n <= 200:
        _, vectors = np.linalg.eigh(norm_adj.toarray())
        vectors = vectors[:, -dims:]
    else:
        v0 = np.random.default_rng(seed).standard_normal(n)
        _, vectors = eigsh(norm_adj, k=dims, which="LA", v0=v0)
    vectors = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    _, labels = kmeans2(vectors, n_clusters, minit="++", seed=seed)
    if len(np.unique(labels)) < 2:
        order = np.argsort(vectors[:, -1], kind="stable")
        labels = np.empty(n, dtype=np.int64)
        labels[order] = np.arange(n) * n_clusters // n
    return labels


def collaborative_indexing(train: list[np.ndarray], n_items: int, n_clusters: int = 16,
                           leaf_size: int = 16, seed: int = 0) -> list[str]:
    """Hierarchical ids "a-b-c": spectral clusters of the co-occurrence graph, split again until a
    cluster holds at most `leaf_size` items; the last number tells the items of a leaf apart.
    Items that occur together share prefixes, so the decoder's early tokens carry meaning."""
    graph = co_occurrence(train, n_items)
    codes: dict[int, list[int]] = {}

    def split(items: np.ndarray, prefix: list[int]) -> None:
        if len(items) <= leaf_size or len(items) < 3:
            for position, item in enumerate(items):
                codes[int(item)] = prefix + [position]
            return
        labels = _spectral_clusters(graph[items][:, items], min(n_clusters, len(items) - 1), seed)
        for label in np.unique(labels):
            split(items[labels == label], prefix + [int(label)])

    split(np.arange(1, n_items + 1), [])
    return [""] + ["-".join(str(c) for c in codes[i]) for i in range(1, n_items + 1)]


class ItemIdTokens:
    """Item text ids as token sequences, the map back from tokens to items, and the prefix trie
    for constrained decoding (with per-user exclusion of history items)."""

    def __init__(self, strings: list[str], tokenizer, eos_id: int):
        self.strings = strings
        self.eos_id = eos_id
        self.tokens = [tuple(tokenizer(s, add_special_tokens=False)["input_ids"]) if i else ()
                       for i, s in enumerate(strings)]
        self.item_of = {t: i for i, t in enumerate(self.tokens) if i}
        if len(self.item_of) != len(strings) - 1:
            raise ValueError("two items have the same id tokens; choose another item indexing")
        # trie: prefix (tuple of tokens, eos included at the end) -> allowed next tokens;
        # items_under[prefix]: how many items complete that prefix (for history exclusion)
        self.children: dict[tuple, set] = {}
        self.items_under: Counter = Counter()
        for toks in self.item_of:
            full = toks + (eos_id,)
            for j in range(len(full)):
                self.children.setdefault(full[:j], set()).add(full[j])
                self.items_under[full[: j + 1]] += 1
        self.children = {k: sorted(v) for k, v in self.children.items()}
        self.max_length = max(len(t) for t in self.item_of) + 1  # + end of id

    def labels(self, items: np.ndarray) -> torch.Tensor:
        """Teacher-forcing targets: id tokens + end of id, padded with -100 (ignored)."""
        seqs = [self.tokens[i] + (self.eos_id,) for i in items]
        out = torch.full((len(seqs), max(map(len, seqs))), -100, dtype=torch.long)
        for row, s in enumerate(seqs):
            out[row, : len(s)] = torch.tensor(s)
        return out

    def prefix_counts(self, items) -> Counter:
        """How many of the given (distinct) items complete each trie prefix."""
        counts: Counter = Counter()
        for item in np.unique(np.asarray(items, dtype=np.int64)):
            full = self.tokens[item] + (self.eos_id,)
            for j in range(1, len(full) + 1):
                counts[full[:j]] += 1
        return counts


# ----------------------------------------------------------------------------- backbones


def _cut_feed_forward(model: nn.Module, old_width: int, new_width: int) -> None:
    """Keep the first `new_width` units of every feed-forward block (LightLM's narrow layers).
    Linear layers into the block have out_features == old_width, out of it in_features."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            if child.out_features == old_width and child.in_features != old_width:
                cut = nn.Linear(child.in_features, new_width, bias=child.bias is not None)
                cut.weight.data.copy_(child.weight.data[:new_width])
                if child.bias is not None:
                    cut.bias.data.copy_(child.bias.data[:new_width])
            elif child.in_features == old_width and child.out_features != old_width:
                cut = nn.Linear(new_width, child.out_features, bias=child.bias is not None)
                cut.weight.data.copy_(child.weight.data[:, :new_width])
                if child.bias is not None:
                    cut.bias.data.copy_(child.bias.data)
            else:
                continue
            setattr(parent, name, cut.to(child.weight.dtype))


def load_seq2seq(name: str, tokenizer, *, pretrained: bool = True, ffn_width: int | None = None):
    """(encoder-decoder model, its encoder, special token ids) for a backbone name."""
    from transformers import EncoderDecoderModel, T5ForConditionalGeneration

    config = backbones.load_config(name)
    resolved = backbones.resolve(name)
    is_t5 = config.model_type in ("t5", "mt5", "umt5")
    pad_id = tokenizer.pad_token_id
    eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if is_t5:
        if pretrained:
            model = backbones._from_pretrained(T5ForConditionalGeneration.from_pretrained, name, resolved)
        else:
            model = T5ForConditionalGeneration(config)
        start_id = model.config.decoder_start_token_id if model.config.decoder_start_token_id is not None else pad_id
        old_ffn = model.config.d_ff
    else:
        if pretrained:
            def loader(path, local_files_only=False):
                from transformers.utils import logging as hf_logging
                level = hf_logging.get_verbosity()
                hf_logging.set_verbosity_error()  # the expected report: cross-attention and LM head start new
                try:
                    return EncoderDecoderModel.from_encoder_decoder_pretrained(
                        path, path, encoder_local_files_only=local_files_only,
                        decoder_local_files_only=local_files_only)
                finally:
                    hf_logging.set_verbosity(level)
            model = backbones._from_pretrained(loader, name, resolved)
        else:
            from transformers import AutoConfig, EncoderDecoderConfig
            decoder_config = AutoConfig.from_pretrained(resolved, local_files_only=True)
            decoder_config.is_decoder, decoder_config.add_cross_attention = True, True
            model = EncoderDecoderModel(EncoderDecoderConfig.from_encoder_decoder_configs(
                AutoConfig.from_pretrained(resolved, local_files_only=True), decoder_config))
        start_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else pad_id
        old_ffn = model.config.encoder.intermediate_size
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = start_id, pad_id, eos_id
    if ffn_width:
        if not 0 < int(ffn_width) <= old_ffn:
            raise ValueError(f"model.ffn_width={ffn_width} must be between 1 and {name}'s feed-forward width {old_ffn}")
        _cut_feed_forward(model, old_ffn, int(ffn_width))
        if is_t5:
            model.config.d_ff = int(ffn_width)
        else:
            model.config.encoder.intermediate_size = model.config.decoder.intermediate_size = int(ffn_width)
    return model, model.get_encoder(), {"pad": pad_id, "eos": eos_id, "start": start_id}


# ----------------------------------------------------------------------------- prompts


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


def input_token_limit(config, params: dict) -> int:
    """model.max_input_tokens, capped by the backbone's absolute position table (BERT's 512;
    T5's relative positions have none)."""
    positions = getattr(config, "max_position_embeddings", None)
    return min(int(params["max_input_tokens"]), int(positions) if positions else 1 << 30)


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


# ----------------------------------------------------------------------------- decoding helpers


class BanHistoryItems:
    """A logits processor for unconstrained beam search: the end-of-id token is banned right after
    the tokens of one of the user's history items, so a history item is never generated."""

    def __init__(self, banned: list[set], num_beams: int, eos_id: int):
        self.banned, self.num_beams, self.eos_id = banned, num_beams, eos_id

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for row, seq in enumerate(input_ids[:, 1:].tolist()):
            if tuple(seq) in self.banned[row // self.num_beams]:
                scores[row, self.eos_id] = float("-inf")
        return scores


class TrieConstraint:
    """prefix_allowed_tokens_fn for `generate`: only continuations of valid item ids that still
    lead to at least one item the user may get: outside the user's history (`excluded`: the
    prefix counts of each user's history items) or, on sampled candidates, among them (`allowed`:
    the prefix counts of each user's candidates)."""

    def __init__(self, ids: ItemIdTokens, pad_id: int, *, excluded: list[Counter] | None = None,
                 allowed: list[Counter] | None = None):
        if (excluded is None) == (allowed is None):
            raise ValueError("TrieConstraint needs exactly one of excluded= and allowed=")
        self.ids, self.pad_id, self.excluded, self.allowed = ids, pad_id, excluded, allowed

    def __call__(self, batch_id: int, sent: torch.Tensor) -> list[int]:
        prefix = tuple(sent[1:].tolist())  # drop the decoder start token
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


# ----------------------------------------------------------------------------- the models


class GenerativeRecommender(NeuralRecommender):
    """P5-style generative recommender; POD and LightLM are the same class with other defaults."""

    output = "topk"
    never_lists_history = True  # see "Lists" above
    input_unit = "tokens"
    defaults = {
        "backbone": "all-MiniLM-L6-v2",   # encoder-decoder from this encoder (bert2bert) or a T5 name
        "backbone_init": "pretrained",    # pretrained | scratch
        "ffn_width": None,                # LightLM: cut every feed-forward block to this width
        "indexing": "random",             # random | sequential (leaks the target) | collaborative
        "indexing_seed": 0,
        "collaborative_clusters": 16,     # collaborative indexing: clusters per level
        "collaborative_leaf_size": 16,    # ... and items per leaf
        "prompt": "Given the following interaction history: {history} , predict the next item "
                  "the user will interact with .",   # null: the items only
        "prompt_vectors": 0,              # POD: learned continuous prompt vectors
        "whole_word_embeddings": True,    # P5's marks of which sub-word tokens form one item id
        "max_seq_length": 20,             # history items in the input
        "max_input_tokens": 512,
        "strategy": "sampling",           # sampling | all (the same sample rules as Lite-LLM4Rec)
        "num_beams": 20,                  # beam width; the list is the beam's hypotheses, best first
        "constrained": False,             # prefix-trie constrained decoding over valid item ids
        "length_penalty": 0.0,            # 0: hypotheses ranked by total log-probability of the id
    }

    def __init__(self, params: dict, dataset, device: torch.device):
        super().__init__(params, dataset, device)
        p = params
        self.require_choice("strategy", ("sampling", "all"))
        self.require_choice("backbone_init", ("pretrained", "scratch"))
        if p["prompt"] and "{history}" not in p["prompt"]:
            raise ValueError("model.prompt must contain {history}")
        self.window = int(p["max_seq_length"])
        self.tokenizer = backbones.load_tokenizer(p["backbone"])
        self.seq2seq, self.encoder, self.special = load_seq2seq(
            p["backbone"], self.tokenizer, pretrained=p["backbone_init"] == "pretrained", ffn_width=p["ffn_width"])
        self.item_ids = ItemIdTokens(self._index_items(dataset), self.tokenizer, self.special["eos"])
        self.prompt = PromptBuilder(self.tokenizer, self.item_ids.tokens, p["prompt"], self.window,
                                    input_token_limit(self.seq2seq.get_encoder().config, p) - int(p["prompt_vectors"]))
        width = self.seq2seq.get_input_embeddings().embedding_dim
        self.inputs = PromptInputs(self.seq2seq.get_input_embeddings(), width, self.window,
                                   bool(p["whole_word_embeddings"]), int(p["prompt_vectors"]), len(self.prompt.head))
        self.module = nn.ModuleDict({"seq2seq": self.seq2seq, "inputs": self.inputs}).to(device)
        self.decoding = Counter()

    def _index_items(self, dataset) -> list[str]:
        p = self.params
        train = [s[:-2] for s in dataset.sequences]  # the split's training part only: no leak of targets
        if p["indexing"] == "random":
            return random_indexing(dataset.n_items, int(p["indexing_seed"]))
        if p["indexing"] == "sequential":
            return sequential_indexing(train, dataset.n_items)
        if p["indexing"] == "collaborative":
            return collaborative_indexing(train, dataset.n_items, int(p["collaborative_clusters"]),
                                          int(p["collaborative_leaf_size"]), int(p["indexing_seed"]))
        raise ValueError(f"model.indexing must be random, sequential or collaborative, got {p['indexing']!r}")

    # ---- training

    def training_batches(self, split, epoch: int, rng: np.random.Generator, batch_size: int) -> list:
        return next_item_batches(split.train, self.params["strategy"], self.window, rng, batch_size, padded=False)

    def loss(self, batch) -> torch.Tensor:
        histories, targets = batch
        embeds, mask = self._embed(self.prepare(histories))
        labels = self.item_ids.labels(targets).to(self.device)
        # teacher forcing: the decoder reads the start token and the id tokens before each target
        decoder_inputs = torch.cat([torch.full_like(labels[:, :1], self.special["start"]),
                                    labels[:, :-1].clamp(min=0)], dim=1)
        decoder_inputs = decoder_inputs.masked_fill(decoder_inputs == 0, self.special["pad"])
        logits = self.seq2seq(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_inputs,
                              decoder_attention_mask=(labels != -100).long()).logits
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)

    # ---- inference

    def prepare(self, histories):
        input_ids, word_ids, mask = self.prompt.batch(histories, self.special["pad"])
        return {"input_ids": input_ids.to(self.device), "word_ids": word_ids.to(self.device),
                "mask": mask.to(self.device), "histories": list(histories)}

    def _embed(self, batch):
        return self.inputs(batch["input_ids"], batch["word_ids"], batch["mask"])

    def generation_settings(self, k: int) -> dict:
        return {"num_beams": max(k, int(self.params["num_beams"])), "num_return_sequences":
                max(k, int(self.params["num_beams"])), "max_new_tokens": self.item_ids.max_length,
                "length_penalty": float(self.params["length_penalty"]), "early_stopping": True,
                "do_sample": False, "use_cache": True}

    def recommend(self, batch, k: int, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Top-k item ids per user (B, k), best first; with `candidates` (B, C), only those."""
        settings = self.generation_settings(k)
        beams = settings["num_beams"]
        if beams > (self.n_items if candidates is None else candidates.shape[1]):
            raise ValueError(f"{beams} beams for {self.n_items if candidates is None else candidates.shape[1]} "
                             f"{'items' if candidates is None else 'candidates'}")
        histories = batch["histories"]
        # the per-user rules are data preparation the beam search needs (timed under "other")
        if candidates is not None:
            rule = {"prefix_allowed_tokens_fn": TrieConstraint(
                self.item_ids, self.special["pad"],
                allowed=[self.item_ids.prefix_counts(row) for row in candidates.cpu().numpy()])}
        elif self.params["constrained"]:
            rule = {"prefix_allowed_tokens_fn": TrieConstraint(
                self.item_ids, self.special["pad"], excluded=[self.item_ids.prefix_counts(h) for h in histories])}
        else:
            from transformers import LogitsProcessorList
            banned = [{self.item_ids.tokens[i] for i in np.unique(h)} for h in histories]
            rule = {"logits_processor": LogitsProcessorList([BanHistoryItems(banned, beams, self.special["eos"])])}
        with section("encode"):
            embeds, mask = self._embed(batch)
            encoded = self.encoder(inputs_embeds=embeds, attention_mask=mask)
        with section("beam_search"):
            sequences = self.seq2seq.generate(encoder_outputs=encoded, attention_mask=mask, **settings, **rule)
        with section("decode"):
            return self.sequences_to_items(sequences, len(histories), beams, k)

    def sequences_to_items(self, sequences: torch.Tensor, n_users: int, beams: int, k: int) -> torch.Tensor:
        """Generated token ids -> item ids (best first), k per user; a string that is not an item
        id, or repeats one, is dropped and counted; 0 fills a list left short."""
        special = set(self.special.values())
        out = torch.zeros((n_users, k), dtype=torch.long)
        rows = sequences.view(n_users, beams, -1).tolist()
        for user, hypotheses in enumerate(rows):
            items, seen = [], set()
            for seq in hypotheses:
                item = self.item_ids.item_of.get(tuple(t for t in seq if t not in special))
                if item is None:
                    self.decoding["invalid_ids"] += 1
                elif item in seen:
                    self.decoding["repeated_ids"] += 1
                else:
                    seen.add(item)
                    items.append(item)
            self.decoding["lists"] += 1
            self.decoding["short_lists"] += len(items) < k
            out[user, : min(k, len(items))] = torch.tensor(items[:k], dtype=torch.long)
        return out

    def input_length(self, histories) -> np.ndarray:
        extra = int(self.params["prompt_vectors"])
        return np.array([len(self.prompt.user_tokens(h)[0]) + extra for h in histories], dtype=np.float64)

    def describe(self) -> dict:
        p = self.params
        return {
            **super().describe(),
            "backbones": f"{p['backbone']} encoder-decoder" + (f", feed-forward width {p['ffn_width']}" if p["ffn_width"] else "")
                         + (" (scratch)" if p["backbone_init"] == "scratch" else ""),
            "decoding": {
                **{k: v for k, v in self.generation_settings(20).items() if k != "num_return_sequences"},
                "constrained": bool(p["constrained"]),
                "history_rule": ("history items removed from each user's prefix trie" if p["constrained"] else
                                 "end-of-id banned after a history item's tokens (history never generated)"),
                "counts": dict(self.decoding),
            },
            "indexing": p["indexing"],
            "id_tokens_max": self.item_ids.max_length - 1,
        }


class POD(GenerativeRecommender):
    defaults = {**GenerativeRecommender.defaults, "prompt": None, "prompt_vectors": 3}


class LightLM(GenerativeRecommender):
    defaults = {**GenerativeRecommender.defaults, "ffn_width": 64, "indexing": "collaborative",
                "constrained": True}


class PromptEncoderRecommender(NeuralRecommender):
    """The paper's decoder-free variants: P5's prompt (or POD's prompt vectors) read by the
    backbone's encoder, mean-pooled, scored against every item by an item projection head (w/o_d),
    or the same with item titles instead of ids (w/o_d_TID)."""

    input_unit = "tokens"
    defaults = {
        "backbone": "all-MiniLM-L6-v2",
        "backbone_init": "pretrained",
        "item_text": "id",                # id (w/o_d) | title (w/o_d_TID)
        "indexing_seed": 0,
        "prompt": GenerativeRecommender.defaults["prompt"],
        "prompt_vectors": 0,              # POD's continuous prompt (POD_w/o_d, POD_w/o_d_TID)
        "whole_word_embeddings": True,
        "max_seq_length": 20,
        "max_input_tokens": 512,
        "strategy": "sampling",
        "dropout": 0.1,
    }

    def __init__(self, params: dict, dataset, device: torch.device):
        super().__init__(params, dataset, device)
        p = params
        self.require_choice("item_text", ("id", "title"))
        self.require_choice("strategy", ("sampling", "all"))
        self.window = int(p["max_seq_length"])
        self.tokenizer = backbones.load_tokenizer(p["backbone"])
        texts = (random_indexing(dataset.n_items, int(p["indexing_seed"])) if p["item_text"] == "id"
                 else [""] + list(dataset.item_texts[1:]))
        item_tokens = [tuple(self.tokenizer(t, add_special_tokens=False)["input_ids"]) if i else ()
                       for i, t in enumerate(texts)]
        self.encoder = backbones.load_encoder(p["backbone"], pretrained=p["backbone_init"] == "pretrained")
        self.prompt = PromptBuilder(self.tokenizer, item_tokens, p["prompt"], self.window,
                                    input_token_limit(self.encoder.config, p) - int(p["prompt_vectors"]))
        width = backbones.hidden_size(self.encoder)
        self.inputs = PromptInputs(self.encoder.get_input_embeddings(), width, self.window,
                                   bool(p["whole_word_embeddings"]), int(p["prompt_vectors"]), len(self.prompt.head))
        self.dropout = nn.Dropout(float(p["dropout"]))
        self.item_projection_head = nn.Linear(width, self.n_items + 1)
        self.module = nn.ModuleDict({"encoder": self.encoder, "inputs": self.inputs,
                                     "item_projection_head": self.item_projection_head,
                                     "dropout": self.dropout}).to(device)
        self._padding_column = torch.arange(self.n_items + 1, device=device) == 0

    def training_batches(self, split, epoch: int, rng: np.random.Generator, batch_size: int) -> list:
        return next_item_batches(split.train, self.params["strategy"], self.window, rng, batch_size, padded=False)

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
            logits = self.item_projection_head(self.dropout(user))
            return logits.masked_fill(self._padding_column, float("-inf"))  # never a prediction

    def input_length(self, histories) -> np.ndarray:
        extra = int(self.params["prompt_vectors"])
        return np.array([len(self.prompt.user_tokens(h)[0]) + extra for h in histories], dtype=np.float64)

    def describe(self) -> dict:
        p = self.params
        return {**super().describe(), "backbones": f"{p['backbone']} encoder only (no decoder)",
                "item_text": p["item_text"]}
