"""LLM2Rec's two LLM training stages and the item-embedding extraction, one function each, with
one small fixed-step loop for all three. The official code is HappyPointer/LLM2Rec (read through
its public forks, e.g. hyz-courses/CSIT5210-Project-LLM2Rec, which keeps its files); each choice
below names the file it follows.

1. CSFT (`llm2rec/run_csft.py`, `llm2rec/dataset.py` PurePromptDataset): the decoder LLM, fully
   fine-tuned, reads a user's history as its items' titles joined by ", " (no instruction) and is
   trained to write the next item's title, "\\n" and EOS; the loss is on those target tokens only;
   sequences cut from the left to 1,024 tokens. Official: lr 3e-4, 200 warm-up steps, linear decay
   (the HF Trainer's default schedule), batches of 128 (4 x 32 accumulation), max_steps 10,000.
   The prompt's and the target's tokens are concatenated as the official does, with no separator
   between the last history title and the target title. Here its samples are every position of
   the training sequences (`split.train`: never a validation or test item), the history its
   previous `csft_max_history` items.
2a. MNTP (`llm2rec/run_mntp.py`, `llm2rec/train_mntp_config.json`): attention made bidirectional,
   masked next-token prediction over item titles: 20% of the tokens chosen (special tokens never),
   of those 80% replaced by "_" (mask_token_type "blank"), 10% by a random token, 10% kept (the
   HF DataCollatorForLanguageModeling); the token at i is predicted from position i - 1's output
   (llm2vec's shifted MNTP loss). Full fine-tuning (lora_r null), batch 32, 1,000 steps, lr 5e-5 (the
   config sets none: the HF default), no warm-up, titles up to 512 tokens.
2b. SimCSE (`llm2rec/run_unsupervised_SimCSE.py`, `llm2rec/train_simcse_config.json`,
   `llm2rec/recdata/ItemTitleData.py`): unsupervised contrastive learning over item titles, the
   same title encoded twice with dropout as the augmentation (the LLM's attention_dropout set to
   simcse_dropout 0.2), bidirectional, mean pooling over the title's tokens, in-batch negatives,
   cross-entropy over cosine similarities x loss_scale 10 (llm2vec's HardNegativeNLLLoss; a
   temperature of 0.1). Full fine-tuning, batch 256, lr 2e-4, 300 warm-up steps, 1,000 steps,
   gradient norm clipped at 1.0.
3. Extraction (`extract_llm_embedding.py`, item_prompt_type "title", bidirectional 1): each item's
   title alone, one bidirectional pass, mean pooling (LLM2Vec's default pooling_mode).

The MNTP and SimCSE corpus is the titles of the items in the training sequences (the official
reads every item's title; with the full leave-one-out the difference is the items seen only as a
validation or test target). Bidirectional attention is a 4D attention mask passed to the Llama
(benchmarks.tensors.bidirectional_attention_mask), not a modified modelling file.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import get_scheduler

from benchmarks.tensors import bidirectional_attention_mask, masked_mean
from benchmarks.precision import autocast, warn_if_bf16_is_emulated

IGNORE = -100  # label of a position without a loss


def pad_rows(rows: list[list[int]], pad: int, labels: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
    """Token rows padded on the right: input_ids, the mask of real tokens and (given) labels."""
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    real = torch.zeros((len(rows), width), dtype=torch.bool)
    out = {"input_ids": ids, "real": real}
    if labels is not None:
        out["labels"] = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        real[i, :len(row)] = True
        if labels is not None:
            out["labels"][i, :len(row)] = torch.tensor(labels[i], dtype=torch.long)
    return out


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


class EpochBatches:
    """Batches of `batch_size` indices into n examples: shuffled epochs, one after another (a
    batch never spans two epochs, so its examples are distinct). Its state (the epoch's order,
    the position in it, and `rng`, which a stage may also draw from) is what a stage checkpoint
    saves, so a resumed stage reads the batches an uninterrupted one would."""

    def __init__(self, n: int, batch_size: int, rng: np.random.Generator):
        self.n, self.size, self.rng = n, min(batch_size, n), rng
        self.order, self.at = rng.permutation(n), 0

    def next(self) -> np.ndarray:
        if self.at + self.size > self.n:
            self.order, self.at = self.rng.permutation(self.n), 0
        self.at += self.size
        return self.order[self.at - self.size:self.at]


def run_steps(module: torch.nn.Module, loss_fn, *, steps: int, lr: float, warmup_steps: int, precision: str,
              device: torch.device, desc: str, progress: bool = False, max_grad_norm: float = 1.0,
              checkpoint=None) -> dict:
    """A fixed number of AdamW steps (the HF Trainer's defaults the official scripts use: linear
    decay after the warm-up, no weight decay, gradients clipped at 1.0); `loss_fn(step)` gives the
    step's loss. With `checkpoint` (a StageCheckpoint, checkpoint.py) the state is saved at a
    step boundary whenever it is due and a saved state is resumed first, so the stage may take
    several sittings. Returns the step count, seconds (all sittings), the number of sittings and
    the loss at the start and the end."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=min(warmup_steps, steps), num_training_steps=steps)
    warn_if_bf16_is_emulated(precision, device)
    module.train()
    losses, first, sittings, start = [], 0, 1, time.perf_counter()
    saved = checkpoint.resume(module, optimizer, scheduler) if checkpoint is not None else None
    if saved is not None:
        losses, first, sittings = saved["losses"], saved["step"], saved["sittings"] + 1
        start -= saved["seconds"]
    for step in tqdm(range(first, steps), desc=desc, disable=not progress, leave=False, initial=first, total=steps):
        with autocast(precision, device):
            loss = loss_fn(step).float()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: non-finite loss {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if checkpoint is not None and step + 1 < steps and checkpoint.due():  # the last step's state is the cache's
            checkpoint.save(module, optimizer, scheduler, step=step + 1, losses=losses,
                            seconds=time.perf_counter() - start, sittings=sittings)
    module.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return {"steps": steps, "seconds": time.perf_counter() - start, "sittings": sittings,
            "loss_first": losses[0] if losses else None, "loss_last_tenth": float(np.mean(tail)) if losses else None,
            # the mean loss of each tenth of the steps (each step where there are fewer than ten)
            "loss_curve": [float(np.mean(part)) for part in np.array_split(losses, min(10, len(losses)))] if losses else []}


# ----------------------------------------------------------------------------- 1. CSFT


def csft_samples(train: list[np.ndarray], max_history: int) -> list[tuple[np.ndarray, int]]:
    """Every position t >= 1 of every training sequence: (its previous max_history items, item t)."""
    return [(seq[max(0, t - max_history):t], int(seq[t])) for seq in train for t in range(1, len(seq))]


def csft_batch(tokenizer, titles: list[str], samples, max_length: int) -> dict[str, torch.Tensor]:
    """History titles joined by ", " then the target's title, "\\n" and EOS; labels only on the
    target's tokens; each row cut to its last max_length tokens (dataset.py, PurePromptDataset)."""
    rows, labels = [], []
    for history, target in samples:
        prompt = tokenizer(", ".join(titles[i] for i in history), add_special_tokens=False)["input_ids"]
        answer = tokenizer(titles[target] + "\n", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt + answer)[-max_length:])
        labels.append(([IGNORE] * len(prompt) + answer)[-max_length:])
    return pad_rows(rows, pad_id(tokenizer), labels)


def csft_loss(lm: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The causal LM's next-token loss on the target tokens (causal attention, as the official)."""
    return lm(input_ids=batch["input_ids"], attention_mask=batch["real"].long(), labels=batch["labels"]).loss


# ----------------------------------------------------------------------------- 2a. MNTP


def tokenize_titles(tokenizer, titles: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(list(titles), add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]


def mask_token_id(tokenizer) -> int:
    """The tokenizer's own mask token, else "_" (mask_token_type "blank") when it is one token,
    else EOS (mask_token_type "eos")."""
    if tokenizer.mask_token_id is not None:
        return tokenizer.mask_token_id
    blank = tokenizer("_", add_special_tokens=False)["input_ids"]
    return blank[0] if len(blank) == 1 else tokenizer.eos_token_id


def mntp_batch(rows: list[list[int]], *, probability: float, mask_id: int, vocab_size: int, special: set[int],
               pad: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """BERT-style masking (DataCollatorForLanguageModeling): `probability` of the non-special
    tokens chosen, 80% of them replaced by the mask token, 10% by a random token, 10% kept; the
    labels are the original tokens at the chosen positions."""
    batch = pad_rows(rows, pad)
    ids, real = batch["input_ids"], batch["real"]
    can = real & ~torch.isin(ids, torch.tensor(sorted(special), dtype=torch.long))
    draw = lambda: torch.from_numpy(rng.random(ids.shape)).float()  # noqa: E731
    chosen = (draw() < probability) & can
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    masked = chosen & (draw() < 0.8)
    randomised = chosen & ~masked & (draw() < 0.5)
    inputs = ids.masked_fill(masked, mask_id)
    inputs = torch.where(randomised, torch.from_numpy(rng.integers(0, vocab_size, ids.shape)).long(), inputs)
    return {"input_ids": inputs, "real": real, "labels": labels}


def mntp_loss(lm: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Masked next-token prediction with bidirectional attention: the token at position i is
    predicted from the output at position i - 1 (llm2vec's MNTP models)."""
    mask = bidirectional_attention_mask(batch["real"], lm.dtype)
    logits = lm(input_ids=batch["input_ids"], attention_mask=mask).logits
    labels = batch["labels"][:, 1:]
    if not (labels != IGNORE).any():  # nothing chosen in this batch (tiny batches): no signal
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE)


# ----------------------------------------------------------------------------- 2b. SimCSE and 3. extraction


def mean_pooled(encoder: torch.nn.Module, input_ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """One bidirectional pass; the mean of the title tokens' final states (padding excluded)."""
    mask = bidirectional_attention_mask(real, encoder.dtype)
    hidden = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
    return masked_mean(hidden, real)


def simcse_loss(encoder: torch.nn.Module, input_ids: torch.Tensor, real: torch.Tensor, scale: float) -> torch.Tensor:
    """Unsupervised SimCSE: two passes of the same titles (different dropout), each title's
    second view its positive and the batch's other titles its negatives; cross-entropy over
    cosine similarities times `scale` (llm2vec's HardNegativeNLLLoss without hard negatives)."""
    first = F.normalize(mean_pooled(encoder, input_ids, real).float(), dim=-1)
    second = F.normalize(mean_pooled(encoder, input_ids, real).float(), dim=-1)
    logits = first @ second.T * scale
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


@torch.no_grad()
def encode_titles(encoder: torch.nn.Module, rows: list[list[int]], pad: int, batch_size: int,
                  device: torch.device, progress: bool = False) -> torch.Tensor:
    """(len(rows), width) float32 mean-pooled embeddings, in eval mode (no dropout); rows sorted
    by length inside so that batches carry little padding."""
    encoder.eval()
    order = np.argsort([-len(r) for r in rows], kind="stable")
    out = None
    for start in tqdm(range(0, len(order), batch_size), desc="LLM2Rec item embeddings", disable=not progress, leave=False):
        chunk = order[start:start + batch_size]
        batch = pad_rows([rows[i] for i in chunk], pad)
        vectors = mean_pooled(encoder, batch["input_ids"].to(device), batch["real"].to(device)).float().cpu()
        if out is None:
            out = torch.zeros(len(rows), vectors.shape[1])
        out[torch.from_numpy(chunk)] = vectors
    return out
