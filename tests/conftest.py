import os
from pathlib import Path

import numpy as np
import pytest

# Tests never reach a model hub; loading code must work offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def write_ml1m(folder: Path, n_users: int = 60, n_items: int = 80, length: int = 12, seed: int = 0) -> Path:
    """A small GroupLens ml-1m folder whose users walk the items in a cycle (i -> i+1), with
    random starting points: learnable by a next-item model, not by popularity."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for user in range(1, n_users + 1):
        start = int(rng.integers(1, n_items + 1))
        for step in range(length):
            item = (start + step - 1) % n_items + 1
            lines.append(f"{user}::{item}::{int(rng.integers(1, 6))}::{978300000 + 100 * step}")
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    movies = [f"{i}::Movie {i} ({1950 + i})::{'Drama|Comedy' if i % 2 else 'Horror'}" for i in range(1, n_items + 1)]
    (folder / "movies.dat").write_text("\n".join(movies) + "\n", encoding="latin-1")
    return folder


@pytest.fixture
def toy_ml1m(tmp_path):
    return write_ml1m(tmp_path / "toy-ml1m")
