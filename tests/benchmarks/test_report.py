"""Reports from synthetic records: paper numbers only where comparable, missing and skipped cells."""
import numpy as np

from benchmarks import config as cfgmod
from benchmarks.records import record_path, write_record
from benchmarks.report import build_reports, paper_reference


def record(run, dataset, stats, metrics, *, status="ok", seed=0, paper_name=None, users="all"):
    rec = {
        "experiment": "t3", "run": run, "dataset": dataset, "seed": seed, "model": run.lower(),
        "status": status, "paper_table": "table3_overall",
        "data": {"name": dataset, "source": "ml-1m", "paper_name": paper_name, "stats": stats,
                 "source_hash": "a" * 64, "content_hash": "b" * 64},
        "environment": {"device_name": "Test CPU", "git": {"commit": "c" * 40}},
    }
    if status == "ok":
        rec.update({
            "metrics": metrics,
            "evaluation": {"candidates": "full", "mask_history": True, "users": users},
            "latency": {"ms_per_batch_median": 1.5, "batch_size": 32, "top_k": 20, "n_batches": 5,
                        "warmup_batches": 1, "device_name": "Test CPU", "device": "cpu",
                        "torch_threads": 2, "dtype": "float32"},
            "input_length": {"mean": 20.0}, "training": {"epochs": 3, "seconds": 1.0},
        })
    else:
        rec["skip_reason"] = "no weights for t5-large here"
    return rec


def stats(users, items, inter):
    return {"users": users, "items": items, "interactions": inter, "density": inter / users / items,
            "avg_sequence_length": inter / users, "k_core": 5, "items_without_text": 0,
            "repeated_interactions_removed": 0}


def test_reports_show_paper_only_when_comparable(tmp_path, monkeypatch):
    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    (exp_dir / "t3.yaml").write_text(
        "description: synthetic Table 3\npaper_table: table3_overall\n"
        "runs: {GRU4Rec: {}, SASRec: {}, BERT4Rec: {}, Lite-LLM4Rec_sampling: {}}\n")
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    results = tmp_path / "results"
    full = stats(6040, 3706, 994169)  # the paper's ml-1m (Table 8)
    partial = stats(2998, 3266, 486772)
    m = {"recall@10": 0.2, "recall@20": 0.3, "ndcg@10": 0.1, "ndcg@20": 0.12}
    for ds, st in (("ml-1m", full), ("ml-1m-partial", partial)):
        for seed, bump in ((0, 0.0), (1, 0.02)):
            write_record(record_path(results, "t3", ds, "SASRec", seed),
                         record("SASRec", ds, st, {k: v + bump for k, v in m.items()}, seed=seed, paper_name="ml-1m"),
                         {"rank": np.arange(1.0, 11.0)})
        write_record(record_path(results, "t3", ds, "Lite-LLM4Rec_sampling", 0),
                     record("Lite-LLM4Rec_sampling", ds, st, {}, status="skipped", paper_name="ml-1m"))
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "t3.md").read_text()
    full_part, partial_part = page.split("## ml-1m-partial")
    paper = paper_reference()["table3_overall"]["ml-1m"]
    # comparable: the paper's number, labelled, with our difference
    assert "The paper's numbers" in full_part and "labelled as the paper's" in full_part
    assert f"{paper['SASRec']['R@10']}" in full_part
    assert f"{0.21 - paper['SASRec']['R@10']:+.4f}" in full_part  # mean of seeds 0.20 and 0.22
    assert "0.2100 ± 0.0141" in full_part                          # mean ± sd over two seeds
    # not comparable: no paper number, and the reason
    assert "not shown" in partial_part and "2,998 vs the paper's 6,040" in partial_part
    assert str(paper["SASRec"]["R@10"]) not in partial_part
    # missing and skipped cells say so, never a number from elsewhere
    assert "| GRU4Rec" in page and "not run" in page
    assert "skipped: no weights for t5-large here" in page
    datasets = (tmp_path / "reports" / "datasets.md").read_text()
    assert "paper: ml-1m (Table 8)" in datasets and "2998" in datasets
    index = (tmp_path / "reports" / "README.md").read_text()
    assert "t3.md" in index and "datasets.md" in index


def test_subset_evaluation_is_not_compared_with_the_paper(tmp_path, monkeypatch):
    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    (exp_dir / "t3.yaml").write_text("paper_table: table3_overall\nruns: {SASRec: {}}\n")
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    results = tmp_path / "results"
    m = {"recall@10": 0.2, "recall@20": 0.3, "ndcg@10": 0.1, "ndcg@20": 0.12}
    write_record(record_path(results, "t3", "ml-1m", "SASRec", 0),
                 record("SASRec", "ml-1m", stats(6040, 3706, 994169), m, paper_name="ml-1m",
                        users="seeded subset of 100 of 6040"))
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "t3.md").read_text()
    assert "evaluation protocol differs" in page
