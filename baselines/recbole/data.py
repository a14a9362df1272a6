"""Our processed dataset as RecBole atomic files, and a RecBole Dataset built from them.

RecBole must see exactly our data: the same users, items and order. So the `.inter` file holds
our re-indexed ids and, as timestamp, each interaction's position in the user's sequence (RecBole
sorts by time, and positions reproduce our order with no ties). The `.item` file holds item
attributes as a token sequence; an item without attributes gets the explicit token `[none]`,
because an empty cell would arrive as a missing value (see compat.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .compat import import_recbole, isolated_config

NO_ATTRIBUTE = "[none]"


def _token(text: str) -> str:
    # RecBole splits token sequences on spaces and reads the file as tab-separated
    return "_".join(str(text).split()) or NO_ATTRIBUTE


def write_atomic_files(dataset, folder: str | Path, name: str) -> Path:
    """Write <folder>/<name>/<name>.inter and .item; return the dataset folder."""
    out = Path(folder) / name
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.inter", "w") as inter:
        inter.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, seq in enumerate(dataset.sequences, start=1):
            for position, item in enumerate(seq):
                inter.write(f"{user}\t{int(item)}\t{position}\n")
    attributes = dataset.item_attributes or [[]] * (dataset.n_items + 1)
    with open(out / f"{name}.item", "w") as items:
        items.write("item_id:token\tattributes:token_seq\n")
        for item in range(1, dataset.n_items + 1):
            attrs = attributes[item]
            tokens = " ".join(_token(a) for a in attrs) or NO_ATTRIBUTE
            items.write(f"{item}\t{tokens}\n")
    return out


def recbole_config(model: str, folder: str | Path, name: str, overrides: dict | None = None):
    """A RecBole Config for our atomic files, with no filtering of its own (ours is done)."""
    import_recbole()
    from recbole.config import Config

    settings = {
        "data_path": str(Path(folder)),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "attributes"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "checkpoint_dir": str(Path(folder) / "checkpoints"),
        "train_neg_sample_args": None,  # the suite trains with cross-entropy over all items
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        **(overrides or {}),
    }
    with isolated_config():  # RecBole's Config reads sys.argv and sets CUDA_VISIBLE_DEVICES
        return Config(model=model, dataset=name, config_dict=settings)


def recbole_dataset(config):
    import_recbole()
    from recbole.data import create_dataset

    return create_dataset(config)


class ItemIndex:
    """Our ids <-> RecBole's internal ids, from a RecBole dataset built from our atomic files (0 is
    padding in both): `to_recbole[i]` is RecBole's id of our item i, `from_recbole` the inverse,
    `user_of_token[t]` our user index of RecBole's user id t."""

    def __init__(self, rb_dataset, n_items: int):
        token_id = rb_dataset.field2token_id["item_id"]
        if rb_dataset.item_num != n_items + 1:
            raise RuntimeError(f"RecBole sees {rb_dataset.item_num - 1} items, our dataset has {n_items}")
        self.to_recbole = np.zeros(n_items + 1, dtype=np.int64)
        self.to_recbole[1:] = [token_id[str(i)] for i in range(1, n_items + 1)]
        self.from_recbole = np.zeros(n_items + 1, dtype=np.int64)
        self.from_recbole[self.to_recbole] = np.arange(n_items + 1)
        self.user_of_token = np.array([-1] + [int(t) - 1 for t in rb_dataset.field2id_token["user_id"][1:]],
                                      dtype=np.int64)

    def rows(self, loader) -> dict[str, np.ndarray]:
        """One validation or test dataloader's rows in our ids: users, targets, histories."""
        inter = loader._dataset.inter_feat
        lengths = inter["item_length"].numpy().astype(np.int64)
        lists = self.from_recbole[inter["item_id_list"].numpy()]
        return {
            "users": self.user_of_token[inter["user_id"].numpy()],
            "targets": self.from_recbole[inter["item_id"].numpy()],
            "histories": [lists[r, :lengths[r]] for r in range(len(lengths))],
        }
