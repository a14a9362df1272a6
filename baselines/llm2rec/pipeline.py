"""LLM2Rec's item embeddings from the stages in stages.py, each stage's output cached on disk.

    backbone (e.g. smollm2-135m) --CSFT--> LLM --MNTP--> LLM --SimCSE--> LLM --extraction--> table

Each stage's fine-tuned LLM is a Hugging Face folder (safetensors weights, config, tokenizer and
a manifest of what made it) at <cache_dir>/<dataset>-<stage>-<key>/, and the item table a
safetensors file <cache_dir>/<dataset>-embeddings-<key>.safetensors. A stage's key is a digest of
the previous stage's key and its own settings; the first key digests the backbone (name,
provenance, weight files by content), the data (source hash, content hash, the titles and the
training sequences the stages read) and CODE_VERSION. So a later run reuses every stage whose
inputs are unchanged, and a change anywhere (another backbone, other data or split, a step
budget, a learning rate, this code's version) recomputes from that stage on. A run that finds the
table loads no LLM at all. With the run's checkpoint minutes a stage in training also leaves a
checkpoint beside its folder, under the same key, which the next call resumes (checkpoint.py).

The stages' randomness comes from `stage_seed`, not the run's seed: the seeds of a multi-seed
campaign share one embedding model and vary the downstream SASRec (the expensive part is done
once per dataset, as the authors train one LLM2Rec and then the recommenders on it).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import backbones
from benchmarks.tensors import cached_tensor, sequences_sha256, tensor_sha256, weights_fingerprint

from . import stages
from .checkpoint import StageCheckpoint, checkpoint_file

CODE_VERSION = "llm2rec-2"  # 2: SimCSE trains tied input embeddings. Bump when a stage's computation changes: every cached stage is then redone
STAGES = ("csft", "mntp", "simcse")
MANIFEST = "llm2rec_stage.json"


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def item_titles(dataset) -> list[str]:
    """Each item's title (row 0 padding), the text LLM2Rec reads; a source without titles gives
    its item texts."""
    return list(dataset.item_titles if dataset.item_titles is not None else dataset.item_texts)


def data_digest(dataset, train: list[np.ndarray]) -> str:
    """What the stages read of the data: the source, the dataset as models see it, the titles and
    the training sequences (which differ under split.holdout_items)."""
    return digest(dataset.source_hash, dataset.content_hash, item_titles(dataset), sequences_sha256(train))


def stage_settings(p) -> dict[str, dict]:
    """Each stage's settings as its key reads them (the run's precision included: it changes the
    numbers)."""
    common = {"seed": p.stage_seed, "precision": p.llm_precision}
    return {
        "csft": {**common, "steps": p.csft_steps, "batch_size": p.csft_batch_size, "lr": p.csft_lr,
                 "warmup_steps": p.csft_warmup_steps, "max_history": p.csft_max_history, "max_length": p.csft_max_length},
        "mntp": {**common, "steps": p.mntp_steps, "batch_size": p.mntp_batch_size, "lr": p.mntp_lr,
                 "probability": p.mntp_probability, "max_length": p.item_max_length},
        "simcse": {**common, "steps": p.simcse_steps, "batch_size": p.simcse_batch_size, "lr": p.simcse_lr,
                   "warmup_steps": p.simcse_warmup_steps, "dropout": p.simcse_dropout, "scale": p.simcse_scale,
                   "max_length": p.item_max_length},
        "embeddings": {"max_length": p.item_max_length, "pooling": "mean", "attention": "bidirectional"},
    }


def stage_keys(p, dataset, train) -> dict[str, str]:
    """{stage: key} for the stages that run, in order, and the embeddings' key after them."""
    settings = stage_settings(p)
    key = digest(CODE_VERSION, p.llm, backbones.provenance(p.llm), weights_fingerprint(p.llm), data_digest(dataset, train))
    keys = {}
    for stage in [*p.stages, "embeddings"]:
        key = digest(key, stage, settings[stage])
        keys[stage] = key
    return keys


def stage_folder(p, dataset, stage: str, key: str) -> Path:
    return Path(p.cache_dir) / f"{dataset.name}-{stage}-{key}"


def _save(lm, tokenizer, folder: Path, manifest: dict) -> None:
    """The fine-tuned LLM as a folder, written under a temporary name and renamed when complete."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    lm.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _train_stage(stage: str, lm, tokenizer, p, dataset, train, device, progress: bool, *,
                 key: str | None = None, checkpoint_minutes: float | None = None) -> dict:
    """Run one stage on `lm` in place; returns its facts (steps, seconds, sittings, losses). With
    checkpoint_minutes (and the stage's key) it saves its state that often and resumes a saved one."""
    rng = np.random.default_rng([p.stage_seed, STAGES.index(stage)])
    torch.manual_seed(p.stage_seed * 10 + STAGES.index(stage))
    titles = item_titles(dataset)

    def step_args(draws: stages.EpochBatches) -> dict:
        saving = None if checkpoint_minutes is None else StageCheckpoint(
            checkpoint_file(stage_folder(p, dataset, stage, key)), key, checkpoint_minutes, draws, device)
        return {"precision": p.llm_precision, "device": device, "desc": f"LLM2Rec {stage}", "progress": progress,
                "checkpoint": saving}

    if stage == "csft":
        samples = stages.csft_samples(train, p.csft_max_history)
        draws = stages.EpochBatches(len(samples), p.csft_batch_size, rng)

        def loss(step):
            batch = stages.csft_batch(tokenizer, titles, [samples[i] for i in draws.next()], p.csft_max_length)
            return stages.csft_loss(lm, {k: v.to(device) for k, v in batch.items()})

        info = stages.run_steps(lm, loss, steps=p.csft_steps, lr=p.csft_lr, warmup_steps=p.csft_warmup_steps,
                                **step_args(draws))
        return {**info, "samples": len(samples)}
    items = np.unique(np.concatenate([np.asarray(s) for s in train])) if train else np.zeros(0, dtype=np.int64)
    rows = stages.tokenize_titles(tokenizer, [titles[i] for i in items[items > 0]], p.item_max_length)
    pad = stages.pad_id(tokenizer)
    if stage == "mntp":
        special = set(tokenizer.all_special_ids) | {pad}
        draws = stages.EpochBatches(len(rows), p.mntp_batch_size, rng)

        def loss(step):
            batch = stages.mntp_batch([rows[i] for i in draws.next()], probability=p.mntp_probability,
                                      mask_id=stages.mask_token_id(tokenizer), vocab_size=lm.config.vocab_size,
                                      special=special, pad=pad, rng=rng)
            return stages.mntp_loss(lm, {k: v.to(device) for k, v in batch.items()})

        info = stages.run_steps(lm, loss, steps=p.mntp_steps, lr=p.mntp_lr, warmup_steps=0, **step_args(draws))
        return {**info, "titles": len(rows), "mask_token_id": stages.mask_token_id(tokenizer)}
    # simcse: dropout as the augmentation (the Llama's attention dropout), only the base model trains
    # (run_steps optimises lm.model's parameters; freezing lm_head would also freeze the input
    # embeddings of a model that ties them to it, as SmolLM2 does, while llm2vec trains them)
    dropout_before = float(getattr(lm.config, "attention_dropout", 0.0))
    _attention_dropout(lm, float(p.simcse_dropout))
    draws = stages.EpochBatches(len(rows), p.simcse_batch_size, rng)

    def loss(step):
        batch = stages.pad_rows([rows[i] for i in draws.next()], pad)
        return stages.simcse_loss(lm.model, batch["input_ids"].to(device), batch["real"].to(device), p.simcse_scale)

    info = stages.run_steps(lm.model, loss, steps=p.simcse_steps, lr=p.simcse_lr, warmup_steps=p.simcse_warmup_steps,
                            **step_args(draws))
    lm.requires_grad_(True)
    _attention_dropout(lm, dropout_before)  # the saved LLM keeps the backbone's own dropout
    return {**info, "titles": len(rows)}


def _attention_dropout(lm, p: float) -> None:
    """A loaded Llama's attention dropout (each attention layer copied it from the config)."""
    lm.config.attention_dropout = p
    for module in lm.modules():
        if hasattr(module, "attention_dropout") and isinstance(module.attention_dropout, float):
            module.attention_dropout = p


def fine_tuned_llm(p, dataset, train, keys: dict[str, str], device, progress: bool = False,
                   checkpoint_minutes: float | None = None):
    """The LLM after every stage in p.stages (tokenizer, model, facts per stage): the latest
    cached stage is loaded, the stages after it are trained (resuming a stage's checkpoint, and
    saving one every checkpoint_minutes where given) and cached."""
    facts: dict[str, dict] = {}
    source = p.llm
    todo = list(p.stages)
    for i in range(len(p.stages) - 1, -1, -1):  # the last stage already on disk
        folder = stage_folder(p, dataset, p.stages[i], keys[p.stages[i]])
        if (folder / MANIFEST).is_file():
            source, todo = str(folder), list(p.stages[i + 1:])
            for stage in p.stages[:i + 1]:
                saved = stage_folder(p, dataset, stage, keys[stage]) / MANIFEST
                facts[stage] = {**json.loads(saved.read_text())["facts"], "cache": "hit"} if saved.is_file() \
                    else {"cache": "hit (a later stage's folder)"}
            break
    tokenizer = backbones.load_tokenizer(source)
    lm = backbones.load_decoder(source, dtype=torch.float32).to(device)
    for stage in todo:
        info = _train_stage(stage, lm, tokenizer, p, dataset, train, device, progress, key=keys[stage],
                            checkpoint_minutes=checkpoint_minutes)
        folder = stage_folder(p, dataset, stage, keys[stage])
        _save(lm, tokenizer, folder,
              {"stage": stage, "key": keys[stage], "code_version": CODE_VERSION, "backbone": p.llm,
               "backbone_weights": backbones.provenance(p.llm), "settings": stage_settings(p)[stage], "facts": info})
        checkpoint_file(folder).unlink(missing_ok=True)  # the cached stage replaces it
        facts[stage] = {**info, "cache": "miss"}
    return tokenizer, lm.eval(), facts


def item_embeddings(p, dataset, train, device, progress: bool = False,
                    checkpoint_minutes: float | None = None) -> tuple[torch.Tensor, dict]:
    """(n_items + 1, LLM width) float32 item embeddings (row 0 zero) and facts for the record:
    which stages ran (or came from the cache), for how many steps and sittings, on which
    backbone. checkpoint_minutes: the run's training checkpoints (the stages save theirs too)."""
    start = time.perf_counter()
    keys = stage_keys(p, dataset, train)
    path = Path(p.cache_dir) / f"{dataset.name}-embeddings-{keys['embeddings']}.safetensors"
    facts: dict = {}

    def compute() -> torch.Tensor:
        tokenizer, lm, stage_facts = fine_tuned_llm(p, dataset, train, keys, device, progress, checkpoint_minutes)
        facts.update(stage_facts)
        rows = stages.tokenize_titles(tokenizer, item_titles(dataset)[1:], p.item_max_length)
        vectors = stages.encode_titles(lm.model, rows, stages.pad_id(tokenizer), p.embed_batch_size, device, progress)
        return torch.cat([torch.zeros(1, vectors.shape[1]), vectors])

    table, state = cached_tensor(path, "item_embeddings", dataset.n_items + 1, compute,
                                 {"backbone": p.llm, "stages": ",".join(p.stages), "code_version": CODE_VERSION})
    if state == "hit":  # the stages' facts as their manifests recorded them
        for stage in p.stages:
            saved = stage_folder(p, dataset, stage, keys[stage]) / MANIFEST
            facts[stage] = {**json.loads(saved.read_text())["facts"], "cache": "hit"} if saved.is_file() \
                else {"cache": "hit (embeddings only; the stage's folder is gone)"}
    return table, {"backbone": p.llm, "backbone_weights": backbones.provenance(p.llm), "stages": list(p.stages),
                   "stage_facts": facts, "settings": {s: stage_settings(p)[s] for s in [*p.stages, "embeddings"]},
                   "embeddings_cache": state, "cache_file": str(path), "keys": keys, "code_version": CODE_VERSION,
                   "width": int(table.shape[1]), "sha256": tensor_sha256(table), "seconds": time.perf_counter() - start}
