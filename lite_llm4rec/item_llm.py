"""Item LLM: item text -> one vector per item, computed once, offline, and cached.

Each item's text is tokenised (up to `max_length` tokens), run through a pretrained encoder and
mean-pooled over its real tokens (padding excluded), as in the paper. BERT-style models may use
the pooler output instead (`pooling: pooler`; the paper's Table 6 does so for
bert-base-uncased). Vectors are cached with safetensors, keyed by the model, the pooling, the
maximum length and the dataset's content hash (which covers the item texts, hence the text
template), so a second run loads them instead of recomputing.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmarks import backbones
from benchmarks.tensors import cache_key, cached_tensor, masked_mean, tensor_sha256

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
