import os
from pathlib import Path

import numpy as np
import pytest

# Tests never reach a model hub; loading code must work offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The data tests' shared checks (assert_well_formed, ...) live in a plain helper module: pytest
# rewrites its asserts as a test module's, so that a failing check shows its values.
pytest.register_assert_rewrite("tests.benchmarks.data_files")

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


@pytest.fixture
def one_thread_children(monkeypatch):
    """For tests that start processes (submitit jobs, `accelerate launch`): they inherit one
    thread each (the CPU is shared), and start in the repository, where they import the suite and
    the toy models from."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    monkeypatch.chdir(Path(__file__).resolve().parents[1])


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A randomly initialised 2-layer BERT (width 32) with MiniLM's tokenizer, as a local folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from benchmarks import backbones

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(backbones.resolve("all-MiniLM-L6-v2"))
    torch.manual_seed(1234)  # not a seed tests use: "scratch" must differ from these weights
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> str:
    """A randomly initialised 2-layer T5 (width 24) as a local folder (no tokenizer: used as a
    Recommendation LLM, which reads vectors, not tokens)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-t5")
    torch.manual_seed(1234)
    config = T5Config(vocab_size=64, d_model=24, d_kv=8, d_ff=48, num_layers=2, num_heads=3,
                      decoder_start_token_id=0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def toy_dataset(tmp_path, toy_ml1m):
    from benchmarks.data import load_dataset

    data = {"name": "toy", "source": "ml-1m", "path": str(toy_ml1m), "files": {}, "k_core": 5,
            "repeats": "first", "text_template": None, "missing_text": "Item {item_id}",
            "encoding": None, "cache_dir": str(tmp_path / "cache"), "paper_name": None}
    return load_dataset(data, verbose=False)


@pytest.fixture
def one_thread():
    """Tiny models: extra torch threads only add overhead on a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    """A tiny random Llama decoder converted from a GGUF file by the suite's own conversion path
    (the one that prepares SmolLM2), as a local Hugging Face folder."""
    from benchmarks import backbones
    from tests.tiny_gguf import write_tiny_llama_gguf

    root = tmp_path_factory.mktemp("tiny-llama")
    gguf_file = write_tiny_llama_gguf(root / "tiny-llama.gguf")
    return str(backbones.convert_gguf(gguf_file, "tiny-llama", "a tiny random Llama (tests)", root=root / "prepared"))
