"""Fixtures the baselines' tests share."""
from __future__ import annotations

import pytest

from benchmarks.split import leave_one_out


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy ML-1m dataset (tests/conftest.py's files, 5-core) and its leave-one-out split."""
    from benchmarks.data import load_dataset
    from tests.conftest import write_ml1m

    folder = tmp_path_factory.mktemp("gen")
    data = {"name": "toy", "source": "ml-1m", "path": str(write_ml1m(folder / "ml1m")), "files": {},
            "k_core": 5, "repeats": "first", "text_template": None, "missing_text": "Item {item_id}",
            "encoding": None, "cache_dir": str(folder / "cache"), "paper_name": None}
    dataset = load_dataset(data, verbose=False)
    return dataset, leave_one_out(dataset)
