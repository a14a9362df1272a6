"""P5, POD and LightLM: one generative core (see the package docstring), three sets of settings."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from benchmarks import backbones
from benchmarks.errors import ConfigError
from benchmarks.latency import section
from benchmarks.models import ModelParams
from benchmarks.split import next_item_batches
from benchmarks.training import NeuralRecommender

from .backbone import is_causal_backbone, load_causal_lm, load_seq2seq
from .decoder_only import beam_search, causal_lm_loss, left_align, prompt_then_target, read_prompt
from .decoding import BanHistoryItems, TrieConstraint
from .indexing import ItemIdTokens, collaborative_indexing, random_indexing, sequential_indexing
from .prompts import PromptBuilder, PromptInputs, input_token_limit

# P5's sequential prompt (jeykigung/P5, src/all_amazon_templates.py, 2-1: "Given the following
# purchase history of user_{} : \n {} \n predict next possible item to be purchased by the user ?")
# in words that fit any domain; {user} is "user_<index>" (prompts.py), "the user" without user ids
P5_PROMPT = ("Given the following interaction history of {user} : {history} , predict the next item "
             "the user will interact with .")


@dataclass
class P5Params(ModelParams):
    backbone: str = "all-MiniLM-L6-v2"       # encoder-decoder from this encoder (bert2bert), a T5 name, or a
                                             # decoder-only causal LM (smollm2-135m, a Llama-family name)
    backbone_init: str = "pretrained"        # pretrained | scratch
    ffn_width: int | None = None             # LightLM: cut every feed-forward block to this width
    indexing: str = "random"                 # random | sequential (leaks the target) | collaborative
    indexing_seed: int = 0
    collaborative_clusters: int = 16         # collaborative indexing: clusters per level
    collaborative_leaf_size: int = 16        # ... and items per leaf
    prompt: str | None = P5_PROMPT           # null: the items only
    user_in_prompt: bool = True              # "user_<index>" where the prompt says {user} (before the history
                                             # where it does not), as P5, POD and LightLM write the user's id
    prompt_vectors: int = 0                  # POD: learned continuous prompt vectors
    whole_word_embeddings: bool = True       # P5's marks of which sub-word tokens form one item id
    max_seq_length: int = 20                 # history items in the input
    max_input_tokens: int = 512
    strategy: str = "sampling"               # sampling | all (the same sample rules as Lite-LLM4Rec)
    num_beams: int = 20                      # beam width; the list is the beam's hypotheses, best first
    constrained: bool = False                # prefix-trie constrained decoding over valid item ids
    length_penalty: float = 0.0              # 0: hypotheses ranked by total log-probability of the id

    def validate(self) -> None:
        self.choice("strategy", ("sampling", "all"))
        self.choice("backbone_init", ("pretrained", "scratch"))
        self.choice("indexing", ("random", "sequential", "collaborative"))
        self.positive_int("max_seq_length", "max_input_tokens", "num_beams", "collaborative_clusters",
                          "collaborative_leaf_size")
        self.positive_int("ffn_width", allow_none=True)
        self.choice("user_in_prompt", (True, False))
        if self.prompt and "{history}" not in self.prompt:
            raise ConfigError("model.prompt must contain {history}")


@dataclass
class PODParams(P5Params):
    prompt: str | None = None
    prompt_vectors: int = 3


@dataclass
class LightLMParams(P5Params):
    ffn_width: int | None = 64
    indexing: str = "collaborative"
    constrained: bool = True


# What `--tune` searches by default for the generative family (P5, POD, LightLM and the w/o_d
# rows): the learning rate only, from below the 1e-4 these rows train at on MiniLM up to the
# published T5 rates, which collapsed MiniLM's encoder (table1_2_4_5_generative.yaml). A trial
# trains a sequence-to-sequence model and validates by beam search, the costliest of any row, so
# the space holds one setting.
GENERATIVE_SEARCH_SPACE = {"train.lr": {"type": "float", "low": 1.0e-5, "high": 3.0e-3, "log": True}}


class P5(NeuralRecommender):
    """P5-style generative recommender; POD and LightLM are the same model with other settings."""

    Params = P5Params
    output = "topk"
    never_lists_history = True  # see "Lists" in the package docstring
    input_unit = "tokens"

    @classmethod
    def search_space(cls, params) -> dict:
        return {key: dict(spec) for key, spec in GENERATIVE_SEARCH_SPACE.items()}

    def build(self) -> None:
        p, dataset, device = self.params, self.dataset, self.device
        self.window = p.max_seq_length
        self.tokenizer = backbones.load_tokenizer(p.backbone)
        pretrained = p.backbone_init == "pretrained"
        # decoder-only (decoder_only.py): the prompt and the target's id tokens in one causal sequence
        self.causal = is_causal_backbone(p.backbone)
        if self.causal:
            self.lm, self.special = load_causal_lm(p.backbone, self.tokenizer, pretrained=pretrained,
                                                   ffn_width=p.ffn_width)
            self.seq2seq = self.encoder = None
            core, limit_config = self.lm, self.lm.config
        else:
            self.seq2seq, self.encoder, self.special = load_seq2seq(
                p.backbone, self.tokenizer, pretrained=pretrained, ffn_width=p.ffn_width)
            core, limit_config = self.seq2seq, self.seq2seq.get_encoder().config
        self.item_ids = ItemIdTokens(self._index_items(dataset), self.tokenizer, self.special["eos"])
        limit = input_token_limit(limit_config, p.max_input_tokens) - p.prompt_vectors
        if self.causal:  # the target's id tokens share the decoder's positions with the prompt
            limit -= self.item_ids.max_length
        self.prompt = PromptBuilder(self.tokenizer, self.item_ids.tokens, p.prompt, self.window, limit,
                                    user_in_prompt=p.user_in_prompt)
        self.reads_user_ids = bool(p.user_in_prompt)
        width = core.get_input_embeddings().embedding_dim
        self.inputs = PromptInputs(core.get_input_embeddings(), width, self.prompt.whole_words,
                                   bool(p.whole_word_embeddings), p.prompt_vectors, len(self.prompt.head))
        self.module = nn.ModuleDict({"lm" if self.causal else "seq2seq": core, "inputs": self.inputs}).to(device)
        self.decoding = Counter()

    def _index_items(self, dataset) -> list[str]:
        p = self.params
        train = [s[:-2] for s in dataset.sequences]  # the split's training part only: no leak of targets
        if p.indexing == "random":
            return random_indexing(dataset.n_items, p.indexing_seed)
        if p.indexing == "sequential":
            return sequential_indexing(train, dataset.n_items)
        return collaborative_indexing(train, dataset.n_items, p.collaborative_clusters,
                                      p.collaborative_leaf_size, p.indexing_seed)

    # ---- training

    def training_batches(self, split, epoch: int, rng: np.random.Generator, batch_size: int) -> list:
        return next_item_batches(split.train, self.params.strategy, self.window, rng, batch_size, padded=False,
                                 with_users=self.reads_user_ids)

    def loss(self, batch) -> torch.Tensor:
        histories, targets, *users = batch  # (histories, targets, users) where the prompt reads user ids
        embeds, mask = self._embed(self.prepare(histories, users=users[0] if users else None))
        labels = self.item_ids.labels(targets).to(self.device)
        if self.causal:
            return causal_lm_loss(self.lm, *prompt_then_target(embeds, mask, labels, self.lm.get_input_embeddings()))
        # teacher forcing: the decoder reads the start token and the id tokens before each target
        decoder_inputs = torch.cat([torch.full_like(labels[:, :1], self.special["start"]),
                                    labels[:, :-1].clamp(min=0)], dim=1)
        decoder_inputs = decoder_inputs.masked_fill(decoder_inputs == 0, self.special["pad"])
        logits = self.seq2seq(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_inputs,
                              decoder_attention_mask=(labels != -100).long()).logits
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)

    # ---- inference

    def prepare(self, histories, users=None):
        input_ids, word_ids, mask = self.prompt.batch(histories, self.special["pad"], users)
        return {"input_ids": input_ids.to(self.device), "word_ids": word_ids.to(self.device),
                "mask": mask.to(self.device), "histories": list(histories)}

    def _embed(self, batch):
        return self.inputs(batch["input_ids"], batch["word_ids"], batch["mask"])

    def generation_settings(self, k: int) -> dict:
        return {"num_beams": max(k, self.params.num_beams), "num_return_sequences":
                max(k, self.params.num_beams), "max_new_tokens": self.item_ids.max_length,
                "length_penalty": float(self.params.length_penalty), "early_stopping": True,
                "do_sample": False, "use_cache": True}

    def recommend(self, batch, k: int, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Top-k item ids per user (B, k), best first; with `candidates` (B, C), only those."""
        settings = self.generation_settings(k)
        beams = settings["num_beams"]
        if beams > (self.n_items if candidates is None else candidates.shape[1]):
            raise ValueError(f"{beams} beams for {self.n_items if candidates is None else candidates.shape[1]} "
                             f"{'items' if candidates is None else 'candidates'}")
        histories = batch["histories"]
        rule = self.decoding_rule(histories, beams, candidates)
        with section("encode"):
            embeds, mask = self._embed(batch)
            if self.causal:  # left padding: every prompt ends where generation starts
                embeds, mask = left_align(embeds, mask)
                shared = settings["use_cache"] and mask.shape[1] > 1
                cache = read_prompt(self.lm, embeds, mask, beams) if shared else None
            else:
                encoded = self.encoder(inputs_embeds=embeds, attention_mask=mask)
        with section("beam_search"):
            if self.causal:
                sequences = beam_search(self.lm, embeds, mask, cache, settings, rule)
            else:
                sequences = self.seq2seq.generate(encoder_outputs=encoded, attention_mask=mask, **settings, **rule)
        with section("decode"):
            return self.sequences_to_items(sequences, len(histories), beams, k)

    def decoding_rule(self, histories, beams: int, candidates: torch.Tensor | None) -> dict:
        """The per-user rule of the beam search (data preparation it needs, timed under "other"):
        the trie restricted to each user's candidates, the trie without the user's history items
        (constrained), or the end of id banned after a history item's tokens (unconstrained)."""
        start = 0 if self.causal else 1  # tokens before the generated id (decoding.py)
        if candidates is not None:
            return {"prefix_allowed_tokens_fn": TrieConstraint(
                self.item_ids, self.special["pad"], start=start,
                allowed=[self.item_ids.prefix_counts(row) for row in candidates.cpu().numpy()])}
        if self.params.constrained:
            return {"prefix_allowed_tokens_fn": TrieConstraint(
                self.item_ids, self.special["pad"], start=start,
                excluded=[self.item_ids.prefix_counts(h) for h in histories])}
        from transformers import LogitsProcessorList
        banned = [{self.item_ids.tokens[i] for i in np.unique(h)} for h in histories]
        return {"logits_processor": LogitsProcessorList([BanHistoryItems(banned, beams, self.special["eos"],
                                                                         start=start)])}

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

    def input_length(self, histories, users=None) -> np.ndarray:
        return self.prompt.lengths(histories, users) + self.params.prompt_vectors

    def describe(self) -> dict:
        p = self.params
        weights = {"backbone_weights": backbones.provenance(p.backbone)} if self.causal else {}
        return {
            **super().describe(),
            "backbones": f"{p.backbone} {'decoder-only' if self.causal else 'encoder-decoder'}"
                         + (f", feed-forward width {p.ffn_width}" if p.ffn_width else "")
                         + (" (scratch)" if p.backbone_init == "scratch" else ""),
            **weights,
            "decoding": {
                **{k: v for k, v in self.generation_settings(20).items() if k != "num_return_sequences"},
                "constrained": bool(p.constrained),
                "history_rule": ("history items removed from each user's prefix trie" if p.constrained else
                                 "end-of-id banned after a history item's tokens (history never generated)"),
                "counts": dict(self.decoding),
            },
            "indexing": p.indexing,
            "id_tokens_max": self.item_ids.max_length - 1,
        }


class POD(P5):
    """P5 with the discrete prompt distilled into learned continuous prompt vectors."""

    Params = PODParams


class LightLM(P5):
    """P5 deep and narrow, with collaborative ids and trie-constrained beam search."""

    Params = LightLMParams
