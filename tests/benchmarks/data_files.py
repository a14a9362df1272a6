"""Small source files for the data tests (test_data*.py): a config for each source, files in each
format (GroupLens ml-1m, Amazon 2018 reviews and metadata, the Beauty sequence files), and the
checks every loaded dataset must pass."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.data import load_dataset


def config(tmp_path: Path, source: str, path, **overrides) -> dict:
    data = {
        "name": "toy",
        "source": source,
        "path": None if path is None else str(path),
        "files": {},
        "k_core": 1,
        "repeats": "first",
        "text_template": None,
        "missing_text": "Item {item_id}",
        "encoding": None,
        "cache_dir": str(tmp_path / "cache"),
    }
    data.update(overrides)
    return data


def load(tmp_path, source, path, **overrides):
    return load_dataset(config(tmp_path, source, path, **overrides), verbose=False)


def write(path: Path, content, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode(encoding))
    return path


def assert_no_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir()), list(cache.iterdir())


def sequences_by_user(ds) -> dict[str, list[str]]:
    """user id -> source item ids, in sequence order."""
    return {u: [ds.item_ids[i] for i in seq] for u, seq in zip(ds.user_ids, ds.sequences)}


def assert_well_formed(ds, k: int) -> None:
    """Re-indexed 1..N with 0 padding, no repeats, and really a k-core."""
    assert ds.item_ids[0] == "[PAD]" and ds.item_texts[0] == ""
    flat = np.concatenate(ds.sequences)
    assert flat.min() >= 1 and flat.max() == ds.n_items
    assert set(flat.tolist()) == set(range(1, ds.n_items + 1))
    counts = np.bincount(flat, minlength=ds.n_items + 1)[1:]
    assert counts.min() >= k
    for seq in ds.sequences:
        assert len(set(seq.tolist())) == len(seq)
        assert len(seq) >= max(k, 3)
    assert len(ds.item_texts) == ds.n_items + 1
    assert ds.stats["users"] == ds.n_users and ds.stats["items"] == ds.n_items
    assert ds.stats["interactions"] == len(flat)


ML1M_MOVIES = (
    "10::Toy Story (1995)::Animation|Children's|Comedy\n"
    "20::Misérables, Les (1995)::Drama|Musical\n"
)


def ml1m_folder(tmp_path: Path, ratings: str, movies: str | None = ML1M_MOVIES) -> Path:
    folder = tmp_path / "ml-1m"
    write(folder / "ratings.dat", ratings, encoding="ascii")
    if movies is not None:
        write(folder / "movies.dat", movies, encoding="iso-8859-1")
    return folder


def _amazon_reviews() -> str:
    rows = [
        ("A1", "B0LEGO", 300), ("A1", "B0CARD", 100), ("A1", "B0BALL", 200),
        ("A2", "B0BALL", 50), ("A2", "B0LEGO", 60), ("A2", "B0CARD", 70),
        ("A3", "B0CARD", 10), ("A3", "B0LEGO", 10), ("A3", "B0BALL", 20),
    ]
    lines = [
        json.dumps({"overall": 5.0, "verified": True, "reviewerID": u, "asin": a,
                    "unixReviewTime": t, "reviewText": "fun <br/> toy"})
        for u, a, t in rows
    ]
    return "\n".join(lines) + "\n"


def _amazon_meta() -> str:
    rows = [
        {"asin": "B0LEGO", "title": "<b>Lego</b> Bricks &amp; Plates", "brand": "LEGO",
         "category": ["Toys &amp; Games", "Building Toys", "<span>Building Sets</span>"]},
        {"asin": "B0CARD", "title": "Uno", "brand": "", "category": ["Toys & Games", "Games"]},
        {"asin": "B0LEGO", "title": "duplicate product line: the first wins"},
        {"asin": "B0NOTREVIEWED", "title": "never reviewed"},
    ]
    return "\n".join(json.dumps(r) for r in rows) + "\n"


BEAUTY_SEQUENCES = "1 1 2 3 4\n2 2 3 4 1\n3 4 3 1 2\n4 3 1 2 4 5\n"
BEAUTY_TITLES = (
    "item_id\tasin\ttitle\n"
    "1\tB001\tOPI Nail Lacquer, 0.5-Fluid  Ounce\n"
    "2\tB002\tBurt's Bees Hand Cr&egrave;me\n"
    "3\tB003\t\n"  # empty title, as 7 items of the real Beauty file
    "5\tB005\tNot kept by the k-core\n"
)
BEAUTY_ATTRIBUTES = json.dumps({"1": [1, 2], "2": [3], "3": [], "5": [9]})
