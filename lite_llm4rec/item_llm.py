"""Item LLM: item text -> one vector per item, computed once, offline, and cached.

Each item's text is tokenised (up to `max_length` tokens), run through a pretrained encoder and
mean-pooled over its real tokens (padding excluded), as in the paper. BERT-style models may use
the pooler output instead (`pooling: pooler`; the paper's Table 6 does so for
bert-base-uncased). Vectors are cached with safetensors, keyed by the model, the pooling, the
maximum length and the dataset's content hash (which covers the item texts, hence the text
template), so a second run loads them instead of recomputing.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from benchmarks import backbones
from benchmarks.records import atomic_write

CACHE_FORMAT = 2  # 2: weights identified by content, not by file times


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where mask is 1: padding never contributes."""
    mask = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


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


def cache_key(model_name: str, pooling: str, max_length: int, content_hash: str) -> str:
    resolved = backbones.resolve(model_name)
    # a local folder's identity is its weights' content (a reinstall, which renews the files'
    # times, keeps the cache; other weights under the same name do not get it)
    weights = sorted(Path(resolved).glob("*.safetensors")) + sorted(Path(resolved).glob("*.bin")) if Path(resolved).is_dir() else []
    fingerprint = [(p.name, file_sha256(p)) for p in weights]
    payload = [CACHE_FORMAT, model_name, fingerprint, pooling, int(max_length), content_hash]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:20]


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Short content hash of a tensor, written into records so two runs can tell whether they
    read the same vectors."""
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


@torch.inference_mode()
def encode_texts(
    texts: list[str],
    model_name: str,
    *,
    max_length: int = 64,
    pooling: str = "mean",
    batch_size: int = 64,
    device: torch.device = torch.device("cpu"),
    progress: bool = True,
) -> torch.Tensor:
    """(len(texts), width) float32 vectors."""
    if pooling not in ("mean", "pooler"):
        raise ValueError(f"item pooling must be 'mean' or 'pooler', got {pooling!r}")
    tokenizer = backbones.load_tokenizer(model_name)
    encoder = backbones.load_encoder(model_name).to(device).eval()
    if pooling == "pooler" and getattr(encoder, "pooler", None) is None:
        raise ValueError(f"{model_name!r} has no pooler output; use item_pooling: mean")
    # longest texts first: batches of similar length waste less compute on padding
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = torch.zeros(len(texts), backbones.hidden_size(encoder))
    for start in tqdm(range(0, len(order), batch_size), desc="item LLM", disable=not progress, leave=False):
        idx = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)
        result = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        if pooling == "pooler":
            vectors = result.pooler_output
        else:
            vectors = masked_mean(result.last_hidden_state, batch["attention_mask"])
        out[idx] = vectors.float().cpu()
    return out


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


def item_vectors(
    dataset,
    model_name: str,
    *,
    max_length: int = 64,
    pooling: str = "mean",
    batch_size: int = 64,
    cache_dir: str | Path = ".cache/item_vectors",
    device: torch.device = torch.device("cpu"),
    progress: bool = True,
) -> tuple[torch.Tensor, dict]:
    """(n_items + 1, width) item vectors, row 0 (padding) zero; and facts for the record."""
    key = cache_key(model_name, pooling, max_length, dataset.content_hash)
    path = Path(cache_dir) / f"{dataset.name}-{key}.safetensors"
    info = {"item_llm": model_name, "pooling": pooling, "max_length": max_length, "cache_key": key}

    def compute() -> torch.Tensor:
        encoded = encode_texts(dataset.item_texts[1:], model_name, max_length=max_length, pooling=pooling,
                               batch_size=batch_size, device=device, progress=progress)
        return torch.cat([torch.zeros(1, encoded.shape[1]), encoded])

    vectors, state = cached_tensor(path, "item_vectors", dataset.n_items + 1, compute,
                                   {"model": model_name, "pooling": pooling})
    return vectors, {**info, "cache": state, "sha256": tensor_sha256(vectors)}
