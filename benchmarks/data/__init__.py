"""Data: source files -> `SequenceDataset`, cached on disk.

`load_dataset(data_config)` is the single entry point. The cache key is a hash of the source
files' bytes and every processing setting, so editing a file or a setting re-processes, and a
failed load writes nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from .dataset import DataError, RawInteractions, SequenceDataset, format_stats, process, template_fields
from .loaders import LOADERS, get_loader

__all__ = [
    "DataError",
    "RawInteractions",
    "SequenceDataset",
    "LOADERS",
    "load_dataset",
    "source_hash",
    "format_stats",
]

CACHE_FORMAT = 2  # bump when the on-disk layout or processing code changes meaning (2: item titles)


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files, key=str):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _save(dataset: SequenceDataset, folder: Path) -> None:
    """Write atomically: build in a temporary sibling folder, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a shared cache must be readable
    try:
        lengths = np.array([len(s) for s in dataset.sequences], dtype=np.int64)
        flat = np.concatenate(dataset.sequences).astype(np.int64)
        save_file({"items": flat, "lengths": lengths}, str(tmp / "sequences.safetensors"))
        meta = {
            "cache_format": CACHE_FORMAT,
            "name": dataset.name,
            "source": dataset.source,
            "user_ids": dataset.user_ids,
            "item_ids": dataset.item_ids,
            "item_texts": dataset.item_texts,
            "item_titles": dataset.item_titles,
            "item_attributes": dataset.item_attributes,
            "stats": dataset.stats,
            "source_hash": dataset.source_hash,
            "settings": dataset.settings,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            os.replace(tmp, folder)
        except OSError:
            if _load(folder) is not None:  # another process won the race: keep its copy
                shutil.rmtree(tmp, ignore_errors=True)
                return
            shutil.rmtree(folder, ignore_errors=True)  # a damaged copy: replace it
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load(folder: Path) -> SequenceDataset | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = load_file(str(folder / "sequences.safetensors"))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None
    if meta.get("cache_format") != CACHE_FORMAT:
        return None
    bounds = np.cumsum(arrays["lengths"])[:-1]
    sequences = np.split(arrays["items"], bounds)
    meta.pop("cache_format")
    return SequenceDataset(sequences=sequences, **meta)


def source_files(data: dict) -> dict[str, Path]:
    """{file key: path} of the source files a resolved `data` section reads; all must exist."""
    loader = get_loader(data["source"])
    files = loader.resolve_files(data.get("path"), data.get("files") or {})
    for path in files.values():
        if not path.is_file():
            raise DataError(f"file not found; expected the {loader.name} source file here", path=path)
    return files


def source_hash(data: dict) -> str:
    """sha256 of the source files' names and bytes (what `SequenceDataset.source_hash` holds)."""
    return _hash_files(list(source_files(data).values()))


def load_dataset(data: dict, *, verbose: bool = True) -> SequenceDataset:
    """Load and process the dataset described by a resolved `data` config section."""
    loader = get_loader(data["source"])
    files = source_files(data)
    k = loader.default_k_core if data.get("k_core") is None else int(data["k_core"])
    if k < 1:
        raise DataError(f"data.k_core must be >= 1, got {k}")
    template = data.get("text_template") or loader.default_text_template
    missing_text = data.get("missing_text") or "Item {item_id}"
    for text in (template, missing_text):  # a malformed template fails here, before any work
        template_fields(text)
    settings = {
        "source": loader.name,
        "files": {key: path.name for key, path in files.items()},
        "k_core": k,
        "repeats": data.get("repeats", "first"),
        "text_template": template,
        "missing_text": missing_text,
        "encoding": data.get("encoding") or loader.default_encoding,
    }
    source_hash = _hash_files(list(files.values()))
    key = hashlib.sha256(
        json.dumps([source_hash, settings, CACHE_FORMAT], sort_keys=True).encode()
    ).hexdigest()[:16]
    folder = Path(data.get("cache_dir") or ".cache/datasets") / f"{data['name']}-{key}"
    dataset = _load(folder)
    if dataset is not None:
        dataset.name = data["name"]
        if verbose:
            print(f"[data] cached {format_stats(dataset)}")
        return dataset
    raw = loader.read(files, encoding=settings["encoding"])
    dataset = process(
        raw,
        name=data["name"],
        k=k,
        repeats=settings["repeats"],
        text_template=template,
        missing_text=missing_text,
        source_hash=source_hash,
        settings=settings,
    )
    _save(dataset, folder)
    if verbose:
        print(f"[data] processed {format_stats(dataset)}")
    return dataset
