"""The GPU set: planned in full, sharded without gaps or overlaps, and run at toy size on CPU."""
import json
import re
from collections import Counter

import pytest

import run_all
from benchmarks.config import ConfigError, load_experiment
from benchmarks.runner import parse_shard, plan_runs, shard_plan


def test_gpu_set_plans_every_run_of_both_experiments_on_both_datasets_with_three_seeds():
    plan = plan_runs(set_name="gpu")
    expected = Counter()
    for name in ("table3_overall", "figure4_5_ablations"):
        _, exp = load_experiment(name)
        for dataset in ("ml-1m-partial", "amazon-beauty"):
            for seed in (0, 1, 2):
                expected.update((name, dataset, run, seed) for run in exp["runs"])
    planned = Counter((s.experiment, s.dataset, s.run, s.seed) for s in plan.runs)
    assert planned == expected and len(plan.runs) == sum(expected.values())  # each exactly once
    for spec in plan.runs:
        assert spec.config["device"] == "auto"  # cuda where present; --device cuda insists
        assert spec.config["train"]["max_minutes"] == 0.2  # the set's budget reaches every row
        assert spec.config["data"]["name"] == spec.dataset
    # the experiments' own per-run settings still apply under the set's config
    lite = next(s for s in plan.runs if s.run == "Lite-LLM4Rec_sampling" and s.dataset == "amazon-beauty")
    assert lite.config["train"]["weight_decay"] == 0.1 and lite.config["train"]["warmup_ratio"] == 0.1
    sasrec = next(s for s in plan.runs if s.run == "SASRec")
    assert sasrec.config["train"]["epochs"] == 5


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 200])
def test_shards_cover_the_set_exactly_once(count):
    plan = plan_runs(set_name="gpu")
    keys = [s.key for s in plan.runs]
    shards = [[s.key for s in shard_plan(plan, index, count).runs] for index in range(1, count + 1)]
    merged = [key for shard in shards for key in shard]
    assert sorted(merged) == sorted(keys) and len(set(merged)) == len(keys)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # every N-th run: balanced counts


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "2", "a/b", "-1/3"])
def test_bad_shard_is_a_config_error(text):
    with pytest.raises(ConfigError, match="shards count from 1"):
        parse_shard(text)
    assert parse_shard("3/4") == (3, 4)


def test_gpu_set_runs_at_toy_size_on_cpu_in_two_shards(tmp_path, toy_ml1m, tiny_bert, monkeypatch):
    """The same set, shrunk: a toy ml-1m, a tiny BERT standing in for MiniLM, one epoch, a few
    rows of each experiment, two seeds; run as two shards into one results/, then reported."""
    monkeypatch.setenv("MINILM_PATH", tiny_bert)
    monkeypatch.chdir(tmp_path)  # the item-vector and dataset caches go under tmp_path
    results, reports = tmp_path / "results", tmp_path / "reports"
    common = ["--set", "gpu", "--dataset", "ml-1m", "--data-path", str(toy_ml1m), "--device", "cpu",
              "--runs", "MostPopular,SASRec,Lite-LLM4Rec_sampling,fixT5", "--seeds", "0,1",
              "-o", "train.epochs=1", "-o", "latency.max_batches=1", "-o", "latency.warmup_batches=0",
              "--results-dir", str(results), "--reports-dir", str(reports), "--quiet"]
    for shard in ("1/2", "2/2"):
        assert run_all.main(common + ["--shard", shard]) == 0
    assert not reports.exists()  # shards leave the report to one build over the merged records
    written = sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json"))
    assert written == sorted(
        [f"table3_overall/ml-1m/{run}__seed{seed}.json" for run in ("MostPopular", "SASRec", "Lite-LLM4Rec_sampling")
         for seed in (0, 1)] + [f"figure4_5_ablations/ml-1m/fixT5__seed{seed}.json" for seed in (0, 1)])
    for path in results.rglob("*.json"):
        rec = json.loads(path.read_text())
        assert rec["status"] == "ok" and rec["environment"]["device"] == "cpu"
        assert rec["config"]["train"]["max_minutes"] == 0.2 and rec["latency"]["n_batches"] == 1
    assert run_all.main(["--report-only", "--results-dir", str(results), "--reports-dir", str(reports)]) == 0
    table3 = (reports / "table3.md").read_text()
    assert "n=2: 0, 1" in table3 and " ± " in table3  # two seeds: mean and interval
    assert re.search(r"\| SASRec +\| 0\.", table3) and re.search(r"\| BERT4Rec +\| not run", table3)
    assert "fixT5" in (reports / "figure4_5.md").read_text()
