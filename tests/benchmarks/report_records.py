"""Synthetic records for the report tests (test_report*.py, test_verdict.py): records and per-user
ranks made by hand, experiment files, training histories, and the autouse fixture under which
their hand-made configs count as current."""
import numpy as np
import pytest

from benchmarks.evaluate import metrics_from_ranks
from benchmarks.reports import build as build_module


def stats(users, items, inter):
    return {"users": users, "items": items, "interactions": inter, "density": inter / users / items,
            "avg_sequence_length": inter / users, "k_core": 5, "items_without_text": 0,
            "repeated_interactions_removed": 0}


def record(run, dataset, stats, metrics, *, status="ok", seed=0, paper_name=None, users="all", experiment="t3",
           model=None, model_config=None, latency=None, candidates="full", device="Test CPU", input_length=20.0):
    rec = {
        "experiment": experiment, "run": run, "dataset": dataset, "seed": seed, "model": model or run.lower(),
        "status": status, "paper_table": "table3_overall",
        "config": {"seed": seed, "model": {"name": model or run.lower(), **(model_config or {})}, "eval": {"ks": [10, 20]}},
        "data": {"name": dataset, "source": "ml-1m", "paper_name": paper_name, "stats": stats,
                 "source_hash": "a" * 64, "content_hash": "b" * 64},
        "environment": {"device_name": device, "git": {"commit": "c" * 40, "dirty": False},
                        "libraries": {"torch": "2.13.0", "scipy": "1.17.1"}},
    }
    if status == "ok":
        rec.update({
            "metrics": metrics,
            "evaluation": {"candidates": candidates, "mask_history": True, "users": users,
                           "num_negatives": 99 if candidates == "sampled" else None},
            "latency": {"ms_per_batch_median": 1.5, "ms_per_batch_p90": 1.7, "batch_size": 32, "top_k": 20,
                        "n_batches": 5, "warmup_batches": 1, "device_name": device, "device": "cpu",
                        "torch_threads": 2, "dtype": "float32", **(latency or {})},
            "input_length": {"mean": input_length, "unit": "items"}, "training": {"epochs": 3, "seconds": 1.0},
        })
    else:
        rec["skip_reason"] = "no weights for t5-large here"
    return rec


def ranked(ranks):
    """Per-user arrays and mean metrics from ranks, as the runner writes them."""
    ranks = np.asarray(ranks, dtype=np.float64)
    per_user = metrics_from_ranks(ranks, (10, 20))
    metrics = {k: float(v.mean()) for k, v in per_user.items()}
    return metrics, {"user_index": np.arange(len(ranks), dtype=np.int64), "rank": ranks, **per_user}


def hand_made_configs_are_current(patch):
    """The synthetic records of these tests hold hand-made configs, not resolved ones: the reports
    take every one as current (the staleness check has its own tests: test_report_stale.py)."""
    patch.setattr(build_module, "mark_stale", lambda *args, **kwargs: None)


@pytest.fixture(autouse=True)
def every_record_current(monkeypatch):
    hand_made_configs_are_current(monkeypatch)


def write_experiments(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / f"{name}.yaml").write_text(body)
    return folder


def _ranks_with_recall(n_users, recall_at_10, seed):
    """Ranks of n users of which a `recall_at_10` share rank within the top 10 (at 1..10)."""
    rng = np.random.default_rng(seed)
    hits = rng.permutation(n_users) < round(recall_at_10 * n_users)
    return np.where(hits, rng.integers(1, 11, n_users), rng.integers(30, 200, n_users)).astype(np.float64)


def _trained(stopped_by, best_epoch, epochs, values):
    return {"epochs": epochs, "seconds": float(epochs), "best_epoch": best_epoch, "stopped_by": stopped_by,
            "history": [{"epoch": e, "loss": 1.0 / e, "seconds": float(e), "valid": {"recall@10": v}}
                        for e, v in zip(range(1, epochs + 1), values)]}
