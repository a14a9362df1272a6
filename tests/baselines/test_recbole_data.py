"""RecBole 1.2.1 works with the versions we install, and sees exactly our data."""
import sys

import numpy as np
import pytest

from baselines.recbole import compat as recbole_compat
from benchmarks.data.dataset import SequenceDataset
from baselines.recbole.data import NO_ATTRIBUTE, recbole_config, recbole_dataset, write_atomic_files


def toy_dataset():
    rng = np.random.default_rng(0)
    n_items = 12
    sequences = [rng.permutation(np.arange(1, n_items + 1))[: rng.integers(4, 9)] for _ in range(15)]
    attributes = [[]] + [[f"genre {i % 3}", f"year{i % 2}"] if i % 4 else [] for i in range(1, n_items + 1)]
    return SequenceDataset(
        name="toy", source="test", sequences=sequences, user_ids=[str(u) for u in range(15)],
        item_ids=["[PAD]"] + [str(i) for i in range(1, n_items + 1)],
        item_texts=[""] + [f"item {i}" for i in range(1, n_items + 1)], item_attributes=attributes,
        stats={}, source_hash="x", settings={},
    )


def test_recbole_builds_our_dataset_with_complete_item_features(tmp_path):
    ours = toy_dataset()
    write_atomic_files(ours, tmp_path, "toy")
    config = recbole_config("SASRec", tmp_path, "toy")
    ds = recbole_dataset(config)
    # RecBole never needed ray (quick_start) to get here
    assert "ray" not in sys.modules
    assert ds.user_num - 1 == ours.n_users and ds.item_num - 1 == ours.n_items
    inter = ds.inter_feat  # pandas, before RecBole converts it
    users = np.asarray(inter["user_id"])
    items = np.asarray(inter["item_id"])
    ds.build()  # converts features to the torch form models read
    attrs = ds.get_item_feature()["attributes"]  # padded token-id matrix
    assert not np.isnan(attrs.numpy().astype(float)).any()
    # every real item has at least one attribute token: its own or the explicit [none]
    assert (attrs[1:] > 0).any(dim=1).all()
    # tokens round-trip: RecBole's item ids are its own, map back through its token tables
    id2item = ds.field2id_token["item_id"]
    id2attr = ds.field2id_token["attributes"]
    for rec_id in range(1, ds.item_num):
        item = int(id2item[rec_id])
        got = sorted(id2attr[t] for t in attrs[rec_id].tolist() if t > 0)
        want = sorted("_".join(a.split()) for a in ours.item_attributes[item]) or [NO_ATTRIBUTE]
        assert got == want
    # interactions in our order: RecBole's per-user item lists equal our sequences
    id2user = ds.field2id_token["user_id"]
    for u in range(1, ds.user_num):
        theirs = [int(id2item[i]) for i in items[users == u]]
        assert theirs == ours.sequences[int(id2user[u]) - 1].tolist()


def test_missing_feature_values_are_filled_not_left_nan(tmp_path):
    """The pandas-3 breakage: RecBole's in-place fillna must really fill missing values."""
    folder = tmp_path / "gap"
    folder.mkdir()
    (folder / "gap.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t{t}\n" for u in range(1, 5) for t, i in enumerate(range(1, 5)))
    )
    (folder / "gap.item").write_text(
        "item_id:token\tprice:float\tbrand:token\n1\t2.0\ta\n2\t\tb\n3\t4.0\t\n4\t6.0\tc\n"
    )
    config = recbole_config("SASRec", tmp_path, "gap", {"load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "price", "brand"]}})
    ds = recbole_dataset(config)
    assert not ds.item_feat["price"].isna().any()
    ds.build()
    price = ds.get_item_feature()["price"].numpy()
    assert not np.isnan(price).any(), "missing float feature arrived as NaN"
    # RecBole fills a missing float with the column mean, (2 + 4 + 6) / 3
    id2item = ds.field2id_token["item_id"]
    assert price[list(id2item).index("2")] == pytest.approx(4.0)


def test_pandas_3_is_refused(monkeypatch):
    import pandas as pd

    monkeypatch.setattr(pd, "__version__", "3.1.0")
    with pytest.raises(RuntimeError, match="pandas<3"):
        recbole_compat.check_pandas()


def test_numpy_aliases_restored_and_checkpoint_loading_is_confined(tmp_path):
    import torch

    assert np.float_ is np.float64
    run = tmp_path / "run"
    run.mkdir()
    # a pickled object (as RecBole's checkpoint holds its Config) needs weights_only=False
    torch.save({"config": np.random.default_rng(0)}, run / "ck.pth")
    assert "config" in recbole_compat.load_checkpoint(run / "ck.pth", run)
    torch.save({"x": 1}, tmp_path / "outside.pth")
    with pytest.raises(ValueError, match="refusing"):
        recbole_compat.load_checkpoint(tmp_path / "outside.pth", run)
