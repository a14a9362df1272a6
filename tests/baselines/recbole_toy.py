"""The toy data and the small RecBole settings the RecBole tests share (test_recbole_models.py,
test_recbole_runs.py): RecBole's model parameters for a run, and what RecBole would leave behind."""
from benchmarks.data import load_dataset
from tests.conftest import write_ml1m

# Small enough to train in seconds; every key is one RecBole knows for that model.
SMALL = {
    "GRU4Rec": {"embedding_size": 16, "hidden_size": 16},
    "SASRec": {"hidden_size": 16, "n_layers": 1, "inner_size": 32},
    "BERT4Rec": {"hidden_size": 16, "n_layers": 1, "inner_size": 32},
    "NARM": {"embedding_size": 16, "hidden_size": 16},
    "STAMP": {"embedding_size": 16},
    "S3Rec": {"hidden_size": 16, "n_layers": 1, "inner_size": 32},
    "FDSA": {"hidden_size": 16, "n_layers": 1, "inner_size": 32},
}
RUNTIME_FOLDERS = ("log", "saved", "log_tensorboard")  # what RecBole would leave in the cwd


def toy_data(root):
    data = {"name": "toy", "source": "ml-1m", "path": str(write_ml1m(root / "toy-ml1m")), "files": {},
            "k_core": 5, "repeats": "first", "text_template": None, "missing_text": "Item {item_id}",
            "encoding": None, "cache_dir": str(root / "cache"), "paper_name": None}
    return load_dataset(data, verbose=False)


def params(name, run_dir, **extra):
    out = {"name": "recbole", "recbole_model": name, "recbole_config": SMALL[name], "run_dir": str(run_dir)}
    if name == "S3Rec":
        out["pretrain_epochs"] = 1
    out.update(extra)
    return out
