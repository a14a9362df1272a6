"""Tensor helpers the models share: masked mean pooling, 4D attention masks (causal or
bidirectional) for decoder backbones, per-dimension standardisation of item vectors, content
hashes, and a safetensors cache of computed tensors keyed by what made them."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import backbones
from .records import atomic_write

CACHE_FORMAT = 2  # 2: weights identified by content, not by file times


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where mask is 1: padding never contributes."""
    mask = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def attention_mask_4d(real: torch.Tensor, dtype: torch.dtype, *, causal: bool) -> torch.Tensor:
    """(B, 1, L, L) additive mask from a (B, L) mask of real positions: each position attends to
    the real positions (at or before it when `causal`). The diagonal is always open, so a padded
    position (or an empty row) never has every key masked. A 4D mask is passed to the attention
    as it is, whatever the backbone's own causality: this is how a causal decoder (HLLM's User
    LLM over item vectors) or a bidirectional one (LLM2Rec's item encoder) is run."""
    length = real.shape[1]
    allowed = real[:, None, None, :] | torch.eye(length, dtype=torch.bool, device=real.device)
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=real.device).tril()
    return torch.zeros(allowed.shape, dtype=dtype, device=real.device).masked_fill(~allowed, torch.finfo(dtype).min)


def causal_attention_mask(real: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Position t attends to real positions <= t (see attention_mask_4d)."""
    return attention_mask_4d(real, dtype, causal=True)


def bidirectional_attention_mask(real: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Every position attends to every real position (see attention_mask_4d)."""
    return attention_mask_4d(real, dtype, causal=False)


def standardize_item_vectors(vectors: torch.Tensor) -> torch.Tensor:
    """Per-dimension z-scores over the real items (row 0, padding, stays zero).

    Mean-pooled sentence-encoder states share a large common direction (anisotropy): on
    ml-100k, MiniLM item vectors vary across items by 0.22 per dimension around a norm of 5.6.
    Fed raw, the Recommendation LLM's user vectors barely differ between users and training
    collapsed them to one popularity vector (measured spread 1e-5). Standardising keeps every
    difference between items and removes only the shared offset and scale."""
    items = vectors[1:]
    out = torch.zeros_like(vectors)
    out[1:] = (items - items.mean(0)) / items.std(0).clamp(min=1e-6)
    return out


_file_hashes: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """Content hash of a file, computed once per process for a given (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _file_hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
        _file_hashes[key] = digest.hexdigest()
    return _file_hashes[key]


def weights_fingerprint(model_name: str) -> list:
    """A backbone's identity for cache keys: a local folder's weight files by content (a
    reinstall, which renews the files' times, keeps the cache; other weights under the same name
    do not get it); [] for a hub name."""
    resolved = backbones.resolve(model_name)
    weights = sorted(Path(resolved).glob("*.safetensors")) + sorted(Path(resolved).glob("*.bin")) if Path(resolved).is_dir() else []
    return [(p.name, file_sha256(p)) for p in weights]


def cache_key(model_name: str, pooling: str, max_length: int, content_hash: str) -> str:
    payload = [CACHE_FORMAT, model_name, weights_fingerprint(model_name), pooling, int(max_length), content_hash]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:20]


def sequences_sha256(sequences) -> str:
    """Content hash of a list of item-id sequences (each as int64, `|` after each), for cache keys
    of what a model trained on (LLM2Rec's stages, Lite-LLM4Rec's first stage)."""
    digest = hashlib.sha256()
    for seq in sequences:
        digest.update(np.asarray(seq, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Short content hash of a tensor, written into records so two runs can tell whether they
    read the same vectors."""
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def cached_tensor(path: Path, name: str, rows: int, compute, metadata: dict) -> tuple[torch.Tensor, str]:
    """Tensor `name` from a safetensors cache file when it holds `rows` rows (state "hit"), else
    `compute()`d and written atomically ("miss"). A damaged file is recomputed and replaced."""
    if path.is_file():
        try:
            tensor = load_file(str(path))[name]
            if tensor.shape[0] == rows:
                return tensor, "hit"
        except Exception:  # damaged or from another format: recompute
            pass
    tensor = compute()
    atomic_write(path, lambda tmp: save_file({name: tensor.contiguous()}, tmp, metadata=metadata))
    return tensor, "miss"
