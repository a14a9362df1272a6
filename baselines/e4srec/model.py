"""E4SRec (Li et al., 2023) as HestiaSky/E4SRec trains it, readable top to bottom.

    SASRec, trained by the suite on the same data and split (RecBole, baselines/recbole/)
      -> its item ID embedding table, frozen (sasrec.py)
    user's last 20 items -> their ID embeddings -> input projection (linear, into the LLM's width)
    LLM input: [instruction tokens] [projected item embeddings] [response tokens]
      (the text parts through the LLM's own word embeddings)
      -> the LLM (SmolLM2-135M, a Llama-architecture decoder, by default): its weights frozen, LoRA
         (r 16, alpha 16, dropout 0.05) on its feed-forward projections gate_proj, up_proj, down_proj
      -> the final position's hidden state
      -> item output projection, no bias: logits over every item in one forward pass (no generation)
    loss: cross-entropy with the next item as the only positive

Training (`strategy: prefixes`, E4SRec's data code): every one of a user's last 20 training
positions is a target, predicted from the items before it in the window. On a causal LLM all of a
user's prefixes come out of one forward pass (prompt.py: the response written once per prefix,
each copy seeing only its prefix); on an encoder (the MiniLM option) each prefix is its own prompt.
The official optimiser settings (lr 3e-4, cosine schedule, 100 warm-up steps, batches of about
128 prefixes) sit in the experiment files; the official trains one epoch, the suite to convergence
by its stopping rule.

Trainable: the input projection, the LoRA adapters and the item output projection; the count is
written into the run's record (E4SRec's point is how few these are next to the LLM).

Padding: for scoring, the three parts are concatenated and each row's padding moved to its end (a
stable sort on "is padding"), so every user's prompt is one contiguous sequence from position 0
and "the final position" is each row's last real token.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from benchmarks import backbones
from benchmarks.errors import ConfigError
from benchmarks.latency import section
from benchmarks.models import ModelParams
from benchmarks.split import pad_histories
from benchmarks.tensors import masked_mean
from benchmarks.training import WindowedNextItemModel, mask_padding_column

from .prompt import prefix_batch
from .sasrec import sasrec_item_embeddings


class E4SRecNet(nn.Module):
    def __init__(self, item_id_embeddings: torch.Tensor, llm: nn.Module, instruction_ids: torch.Tensor,
                 response_ids: torch.Tensor, n_items: int, pooling: str):
        super().__init__()
        self.item_id_embeddings = nn.Embedding.from_pretrained(item_id_embeddings, freeze=True, padding_idx=0)
        width = backbones.hidden_size(llm)
        self.input_projection = nn.Linear(item_id_embeddings.shape[1], width)
        self.llm = llm  # a peft model: only its LoRA weights require gradients
        self.register_buffer("instruction_ids", instruction_ids, persistent=False)
        self.register_buffer("response_ids", response_ids, persistent=False)
        self.item_output_projection = nn.Linear(width, n_items + 1, bias=False)
        self.pooling = pooling

    def _parts(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        words = self.llm.get_input_embeddings()
        projected = self.input_projection(self.item_id_embeddings(items))
        batch = items.shape[0]
        instruction = words(self.instruction_ids).expand(batch, -1, -1).to(projected.dtype)
        response = words(self.response_ids).expand(batch, -1, -1).to(projected.dtype)
        return instruction, projected, response

    def prompt(self, items: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embeddings (B, T, width) and mask of instruction + items + response, each row's
        padding moved to its end."""
        instruction, projected, response = self._parts(items)
        inputs = torch.cat([instruction, projected, response], dim=1)
        ones = lambda n: torch.ones(items.shape[0], n, dtype=torch.bool, device=items.device)  # noqa: E731
        real = torch.cat([ones(instruction.shape[1]), mask, ones(response.shape[1])], dim=1)
        order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)  # real first, in order
        inputs = inputs.gather(1, order.unsqueeze(-1).expand_as(inputs))
        return inputs, real.gather(1, order)

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with section("encode"):
            inputs, real = self.prompt(items, mask)
            hidden = self.llm(inputs_embeds=inputs, attention_mask=real.long()).last_hidden_state
            if self.pooling == "last":
                user = hidden[torch.arange(len(hidden), device=hidden.device), real.sum(1) - 1]
            else:
                user = masked_mean(hidden, real)
        with section("score"):
            return mask_padding_column(self.item_output_projection(user))

    def prefix_logits(self, items: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """(B, W, n_items + 1): for each row's prefix t (items[:, :t], t <= its length) the scores
        of the next item, all in one pass of a causal LLM (prompt.py); rows past their length are
        padding."""
        instruction, projected, response = self._parts(items)
        layout = prefix_batch(lengths, instruction.shape[1], response.shape[1], items.shape[1], items.device)
        source = torch.cat([instruction, projected, response], dim=1)
        inputs = source.gather(1, layout["source"].unsqueeze(-1).expand(-1, -1, source.shape[-1]))
        hidden = self.llm(inputs_embeds=inputs, attention_mask=layout["mask"].to(inputs.dtype),
                          position_ids=layout["positions"]).last_hidden_state
        readout = layout["readout"].clamp(min=0)
        states = hidden.gather(1, readout.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        return mask_padding_column(self.item_output_projection(states))


@dataclass
class E4SRecParams(ModelParams):
    llm: str = "smollm2-135m"                # E4SRec: LLaMA2-13B; all-MiniLM-L6-v2 is a labelled option
    instruction: str = "Given the user's interaction history, predict the next item the user will interact with."
    response: str = "Next item:"
    pooling: str = "last"                    # last (E4SRec) | mean (over the real positions)
    max_seq_length: int = 20                 # items per user
    strategy: str = "prefixes"               # prefixes (E4SRec) | sampling | all (as Lite-LLM4Rec's)
    lora_r: int = 16
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list | str | None = None   # null: the feed-forward layers (backbones.feed_forward_modules)
    sasrec_source: str = "auto"              # auto | train | path to a RecBole SASRec checkpoint (sasrec.py)
    sasrec_epochs: int = 300                 # when SASRec is trained here: a cap, it stops by patience
    sasrec_batch_size: int = 256
    sasrec_max_seq_length: int = 20
    sasrec_config: dict = field(default_factory=dict)  # RecBole SASRec settings (hidden_size, n_layers...)
    run_dir: str = ".cache/recbole_runs"     # where RecBole runs live (shared with the RecBole rows)

    def validate(self) -> None:
        self.choice("pooling", ("last", "mean"))
        self.choice("strategy", ("prefixes", "sampling", "all"))
        self.positive_int("max_seq_length", "lora_r", "lora_alpha", "sasrec_epochs", "sasrec_batch_size",
                          "sasrec_max_seq_length")
        self.fraction("lora_dropout")
        if not isinstance(self.sasrec_source, str) or not self.sasrec_source:
            raise ConfigError("model.sasrec_source must be 'auto', 'train' or a checkpoint path")


class E4SRec(WindowedNextItemModel):
    Params = E4SRecParams
    input_unit = "tokens + item embeddings"

    @classmethod
    def search_space(cls, params) -> dict:
        """What `--tune` searches by default: the learning rate around the official 3e-4 and the
        LoRA rank (alpha stays, so the update's scale alpha / r moves with it); the LLM is frozen."""
        return {"train.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True},
                "model.lora_r": {"type": "categorical", "choices": [8, 16, 32]}}

    def build(self) -> None:
        p = self.params
        tokenizer = backbones.load_tokenizer(p.llm)
        # the instruction as the model frames a text ([CLS] ... [SEP] for BERT; SmolLM2 adds no
        # special token); the response continues the sequence, so it gets none of its own
        self.instruction_ids = torch.tensor(tokenizer(p.instruction)["input_ids"], dtype=torch.long)
        self.response_ids = torch.tensor(tokenizer(p.response, add_special_tokens=False)["input_ids"], dtype=torch.long)
        self.llm = self._lora_llm(p)
        self.one_pass = backbones.is_causal(self.llm) and p.pooling == "last"
        self.module = None
        self.sasrec_info: dict = {}

    def _lora_llm(self, p: E4SRecParams) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        llm = backbones.load_encoder(p.llm)
        targets = p.lora_target_modules
        if targets is not None and not isinstance(targets, str):  # a list, or one regular expression
            targets = list(targets)
        config = LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=float(p.lora_dropout),
                            target_modules=targets or backbones.feed_forward_modules(llm), bias="none")
        try:
            return get_peft_model(llm, config)  # freezes every weight of the LLM but the adapters
        except ValueError as err:
            raise ConfigError(f"LoRA on {p.llm!r}: {err}; set model.lora_target_modules") from err

    def build_module(self, item_id_embeddings: torch.Tensor) -> None:
        """The network around the LoRA LLM, given SASRec's item ID embeddings in our item order."""
        if item_id_embeddings.shape[0] != self.n_items + 1:
            raise ValueError(f"item ID embeddings have {item_id_embeddings.shape[0]} rows, expected {self.n_items + 1}")
        item_id_embeddings = item_id_embeddings.detach().float().clone()
        item_id_embeddings[0] = 0.0  # RecBole re-initialises its [PAD] row; padding is masked anyway
        self.module = E4SRecNet(item_id_embeddings, self.llm, self.instruction_ids, self.response_ids,
                                self.n_items, self.params.pooling).to(self.device)

    # ---- training (the shared loop in benchmarks/training.py calls these)

    def fit(self, split, trainer) -> dict:
        if len(getattr(split, "held_out_items", ())):
            raise ConfigError("E4SRec scores items by their SASRec ID embeddings and RecBole's split must "
                              "equal the full leave-one-out: it cannot run with split.holdout_items (cold start)")
        start = time.perf_counter()
        embeddings, self.sasrec_info = sasrec_item_embeddings(self.params, self.dataset, self.device, split, trainer)
        self.build_module(embeddings)
        sasrec_seconds = time.perf_counter() - start
        result = trainer.fit(self, split)
        counts = self.parameter_counts()
        # the shared loop's seconds count every sitting of a resumed run; this call's wall time would not
        return {**result, "llm_stage_seconds": result["seconds"], "seconds": sasrec_seconds + result["seconds"],
                "sasrec": self.sasrec_info, "trainable_parameters": counts["trainable"], "parameter_counts": counts}

    def training_batches(self, split, epoch: int, rng: np.random.Generator, batch_size: int) -> list:
        if self.params.strategy != "prefixes":
            return super().training_batches(split, epoch, rng, batch_size)
        windows = [seq[-(self.window + 1):] for seq in split.train if len(seq) >= 2]
        order = rng.permutation(len(windows))
        batches = []
        for start in range(0, len(order), batch_size):
            rows = [windows[i] for i in order[start:start + batch_size]]
            batches.append((pad_histories([w[:-1] for w in rows], self.window),
                            pad_histories([w[1:] for w in rows], self.window)))
        return batches

    def loss(self, batch) -> torch.Tensor:
        items, targets = (torch.from_numpy(a).to(self.device) for a in batch)
        if self.params.strategy != "prefixes":
            return nn.functional.cross_entropy(self.module(items, items > 0), targets)
        real = targets > 0
        if self.one_pass:
            logits = self.module.prefix_logits(items, (items > 0).sum(1).tolist())[real]
        else:  # an encoder (or mean pooling): every prefix its own prompt
            prefixes = [row[:t] for row, n in zip(items.cpu().numpy(), real.sum(1).tolist()) for t in range(1, n + 1)]
            logits = self.module(*self.prepare(prefixes))
        return nn.functional.cross_entropy(logits, targets[real])

    # ---- inference (evaluator and latency timer)

    def score(self, batch) -> torch.Tensor:
        if self.module is None:
            raise RuntimeError("E4SRec.score before fit")
        return self.module(*batch)

    def input_length(self, histories) -> np.ndarray:
        return len(self.instruction_ids) + len(self.response_ids) + super().input_length(histories)

    def parameter_counts(self) -> dict:
        count = lambda params: sum(p.numel() for p in params)  # noqa: E731
        llm = list(self.llm.named_parameters())
        counts = {
            "total": count(self.module.parameters()) if self.module is not None else count(p for _, p in llm),
            "lora": count(p for n, p in llm if "lora_" in n),
            "llm_frozen": count(p for n, p in llm if not p.requires_grad),
        }
        if self.module is not None:
            counts["input_projection"] = count(self.module.input_projection.parameters())
            counts["item_output_projection"] = count(self.module.item_output_projection.parameters())
            counts["item_id_embeddings_frozen"] = self.module.item_id_embeddings.weight.numel()
            counts["trainable"] = count(self.trainable_parameters())
        return counts

    def describe(self) -> dict:
        p = self.params
        counts = self.parameter_counts()
        targets = self.llm.peft_config["default"].target_modules
        targets = [targets] if isinstance(targets, str) else sorted(targets)
        return {"parameters": counts["total"], "trainable_parameters": counts.get("trainable"),
                "parameter_counts": counts,
                "backbones": f"LLM {p.llm} + LoRA r={p.lora_r} on {', '.join(targets)}; "
                             f"item IDs from SASRec ({self.sasrec_info.get('source', 'not loaded')})",
                "backbone_weights": backbones.provenance(p.llm),
                "training_prefixes": "one pass per user (causal LLM)" if self.one_pass else "one prompt per prefix",
                "lora": {"r": p.lora_r, "alpha": p.lora_alpha, "dropout": float(p.lora_dropout),
                         "target_modules": targets},
                "prompt_tokens": {"instruction": len(self.instruction_ids), "response": len(self.response_ids)},
                "sasrec": self.sasrec_info}
