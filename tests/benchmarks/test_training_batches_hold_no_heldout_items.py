"""No model's training batches hold a validation or test item. The data make a leak visible: every
user's last two items come from a reserved set of items that appear nowhere else, so any reserved
id in a batch (input, target or negative) came from the held-out part of a sequence."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data import load_dataset
from benchmarks.models import build_model
from benchmarks.split import leave_one_out

pytestmark = [pytest.mark.usefixtures("one_thread"),  # peft calls a deprecated transformers name (E4SRec)
              pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")]

N_USERS, N_TRAIN_ITEMS, RESERVED = 30, 40, list(range(901, 907))


def write_ml1m_with_reserved_targets(folder: Path) -> Path:
    """GroupLens ml-1m files: user u's training part is 8 to 11 consecutive items of a cycle over
    items 1..40; its validation and test items are two different reserved items (901..906), each
    reserved item the held-out item of 10 users, so all of them survive the 5-core."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for user in range(1, N_USERS + 1):
        start = (user - 1) * 4
        train = [(start + j) % N_TRAIN_ITEMS + 1 for j in range(8 + user % 4)]
        held_out = [RESERVED[user % 6], RESERVED[(user + 1) % 6]]
        for step, item in enumerate(train + held_out):
            lines.append(f"{user}::{item}::4::{978300000 + 60 * step}")
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    movies = [f"{i}::Movie {i} ({1950 + i % 50})::Drama" for i in range(1, N_TRAIN_ITEMS + 1)]
    movies += [f"{i}::Held-out film {i} (2000)::Comedy" for i in RESERVED]
    (folder / "movies.dat").write_text("\n".join(movies) + "\n", encoding="latin-1")
    return folder


@pytest.fixture(scope="module")
def reserved_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("reserved")
    data = {"name": "reserved", "source": "ml-1m", "path": str(write_ml1m_with_reserved_targets(root / "ml1m")),
            "files": {}, "k_core": 5, "repeats": "first", "text_template": None, "missing_text": "Item {item_id}",
            "encoding": None, "cache_dir": str(root / "cache"), "paper_name": None}
    dataset = load_dataset(data, verbose=False)
    reserved = {index for index, source_id in enumerate(dataset.item_ids) if source_id in {str(i) for i in RESERVED}}
    split = leave_one_out(dataset)
    # the fixture is what it claims: nothing dropped by the 5-core, held-out items reserved
    assert dataset.n_users == N_USERS and dataset.n_items == N_TRAIN_ITEMS + len(RESERVED)
    assert len(reserved) == len(RESERVED) and min(reserved) > N_USERS - 1  # never a user index
    assert set(split.valid_targets.tolist()) | set(split.test_targets.tolist()) == reserved
    assert not reserved & set(np.concatenate(split.train).tolist())
    return dataset, split, reserved, root


def integers_in(batch) -> list[int]:
    """Every integer in a batch: numpy arrays, tensors, lists, tuples and dicts of them."""
    if torch.is_tensor(batch):
        return [] if batch.is_floating_point() else batch.reshape(-1).tolist()
    if isinstance(batch, np.ndarray):
        return batch.reshape(-1).tolist() if np.issubdtype(batch.dtype, np.integer) else []
    if isinstance(batch, dict):
        return [v for value in batch.values() for v in integers_in(value)]
    if isinstance(batch, (list, tuple)):
        return [v for value in batch for v in integers_in(value)]
    if isinstance(batch, (int, np.integer)) and not isinstance(batch, bool):
        return [int(batch)]
    return []


def models(tiny_bert, root):
    vectors = str(root / "vectors")
    return {
        "lite_llm4rec": {"item_llm": tiny_bert, "rec_llm": tiny_bert, "item_cache_dir": vectors, "item_max_length": 16,
                         "max_seq_length": 5},
        "e4srec": {"llm": tiny_bert, "lora_r": 4, "lora_alpha": 8, "max_seq_length": 5, "run_dir": str(root / "runs")},
        "hllm": {"item_llm": tiny_bert, "user_llm": tiny_bert, "item_max_length": 16, "item_cache_dir": vectors,
                 "num_negatives": 16, "max_seq_length": 5},
        "p5": {"backbone": tiny_bert, "max_seq_length": 5},
        "pod": {"backbone": tiny_bert, "max_seq_length": 5},
        "lightlm": {"backbone": tiny_bert, "max_seq_length": 5, "ffn_width": 16},
        "p5_encoder_only": {"backbone": tiny_bert, "max_seq_length": 5},
    }


@pytest.mark.parametrize("name", ["lite_llm4rec", "e4srec", "hllm", "p5", "pod", "lightlm", "p5_encoder_only"])
def test_training_batches_never_hold_a_validation_or_test_item(reserved_data, tiny_bert, name):
    dataset, split, reserved, root = reserved_data
    torch.manual_seed(0)
    model = build_model({"name": name, **models(tiny_bert, root)[name]}, dataset, torch.device("cpu"))
    own = getattr(model.params, "strategy", None)  # the model's default (E4SRec: prefixes), then the shared ones
    strategies = [own] + [s for s in ("sampling", "all") if s != own] if own else [None]
    training = split.for_training()
    seen: set[int] = set()
    for strategy in strategies:
        if strategy is not None:
            model.params.strategy = strategy
        rng = np.random.default_rng(0)
        for epoch in range(3):
            batches = model.training_batches(training, epoch, rng, 8)
            assert batches
            for batch in batches:
                values = set(integers_in(batch))
                assert not values & reserved, (strategy, epoch, sorted(values & reserved))
                seen |= values
    # not vacuous: the batches do carry the training items
    assert set(np.concatenate(split.train).tolist()) <= seen
