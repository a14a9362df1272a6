"""The GPU set: planned in full, sharded without gaps or overlaps, and run at toy size on CPU."""
import json
import re
from collections import Counter

import pytest

import run_all
from benchmarks.config import ConfigError, load_experiment
from benchmarks.planning import declared_seconds, expected_cost, parse_shard, plan_runs, shard_assignment, shard_plan


GPU_EXPERIMENTS = {"table3_overall": ("ml-1m-partial", "amazon-beauty"),
                   "table1_2_4_5_generative": ("ml-1m-partial",),
                   "figure4_5_ablations": ("ml-1m-partial", "amazon-beauty"),
                   "figure6_topn_sampled": ("ml-1m-partial",),
                   "table6_item_llm": ("ml-1m-partial",), "table7_rec_llm": ("ml-1m-partial",)}


def test_gpu_set_plans_every_run_of_every_experiment_on_its_datasets_with_three_seeds():
    plan = plan_runs(set_name="gpu")
    expected = Counter()
    for name, datasets in GPU_EXPERIMENTS.items():
        _, exp = load_experiment(name)
        for dataset in datasets:
            for seed in (0, 1, 2):
                expected.update((name, dataset, run, seed) for run in exp["runs"])
    planned = Counter((s.experiment, s.dataset, s.run, s.seed) for s in plan.runs)
    assert planned == expected and len(plan.runs) == sum(expected.values())  # each exactly once
    for spec in plan.runs:
        assert spec.config["device"] == "auto"  # cuda where present; --device cuda insists
        # the set's budget reaches every row, over the experiments' CPU budgets (the generative
        # rows' 3 minutes and 64 users, figure 6's 5 minutes and 256 users)
        assert spec.config["train"]["max_minutes"] is None and spec.config["eval"]["max_users"] is None
        # convergence, not a budget: the experiments' CPU epoch caps and validation spacing undone
        assert spec.config["train"]["epochs"] == 300 and spec.config["train"]["patience"] == 10
        # 10 validations span about the users of 10 epochs of the paper's ML-1m (6,040): every 2
        # epochs of ml-1m-partial's 2,998 users, every epoch of amazon-beauty's
        assert spec.config["train"]["eval_every"] == {"ml-1m-partial": 2, "amazon-beauty": 1}[spec.dataset]
        assert spec.config["data"]["name"] == spec.dataset
    # the experiments' own per-run settings still apply where the set says nothing
    lite = next(s for s in plan.runs if s.run == "Lite-LLM4Rec_sampling" and s.dataset == "amazon-beauty")
    assert lite.config["train"]["weight_decay"] == 0.1 and lite.config["train"]["warmup_ratio"] == 0.1
    p5 = next(s for s in plan.runs if s.run == "P5")
    assert p5.config["train"]["batch_size"] == 32 and p5.config["latency"]["max_batches"] == 30
    figure6 = next(s for s in plan.runs if s.experiment == "figure6_topn_sampled")
    assert figure6.config["eval"]["candidates"] == "sampled" and figure6.config["latency"]["enabled"] is False


def test_runs_go_seed_by_seed():
    """Every run of seed 0 before any of seed 1: a campaign cut short leaves whole tables."""
    seeds = [s.seed for s in plan_runs(set_name="gpu").runs]
    assert seeds == sorted(seeds) and seeds[0] == 0 and seeds[-1] == 2
    first = plan_runs(set_name="gpu").runs[: seeds.count(0)]
    assert {(s.experiment, s.dataset) for s in first} == {(e, d) for e, ds in GPU_EXPERIMENTS.items() for d in ds}
    # within a seed: the priority tiers (Table 3's Lite-LLM4Rec_sampling and SASRec on ml-1m-partial,
    # then on amazon-beauty, then the rest of Table 3), then the set's order
    keys = [s.key for s in first]
    assert keys[:4] == ["table3_overall/ml-1m-partial/Lite-LLM4Rec_sampling/seed0", "table3_overall/ml-1m-partial/SASRec/seed0",
                        "table3_overall/amazon-beauty/Lite-LLM4Rec_sampling/seed0", "table3_overall/amazon-beauty/SASRec/seed0"]
    table3 = [i for i, k in enumerate(keys) if k.startswith("table3_overall/")]
    assert table3 == list(range(len(table3)))  # every Table 3 row before any other
    assert keys.index("table3_overall/ml-1m-partial/MostPopular/seed0") == 4
    assert keys.index("figure4_5_ablations/ml-1m-partial/fixT5/seed0") < keys.index("figure6_topn_sampled/ml-1m-partial/P5/seed0")


def test_cheapest_first_within_a_tier_from_recorded_seconds(tmp_path):
    """Within one seed and priority tier the runs with a record go cheapest first, those without
    one last; tiers and seeds keep their order."""
    from benchmarks.records import record_path, write_record
    from benchmarks.runner import Runner

    plan = plan_runs(set_name="gpu", seeds=[0, 1])
    costs = {"table3_overall/ml-1m-partial/GRU4Rec": 50.0, "table3_overall/ml-1m-partial/NARM": 10.0,
             "table3_overall/ml-1m-partial/SASRec": 5.0}
    for key, seconds in costs.items():
        exp, dataset, run = key.split("/")
        write_record(record_path(tmp_path, exp, dataset, run, 0),
                     {"status": "ok", "training": {"seconds": seconds}, "evaluation": {"seconds": 1.0}})
    runner = Runner(tmp_path, progress=False)
    assert runner.expected_seconds(plan.runs[1]) == 6.0  # SASRec: training + evaluation
    ordered = [s.key for s in plan.cheapest_first(runner.expected_seconds).runs]
    assert ordered[:2] == [s.key for s in plan.runs[:2]]  # the first two tiers hold one run each
    rest_of_table3 = [k for k in ordered if k.startswith("table3_overall/") and k.endswith("seed0")][4:]
    assert rest_of_table3[:2] == ["table3_overall/ml-1m-partial/NARM/seed0", "table3_overall/ml-1m-partial/GRU4Rec/seed0"]
    assert sorted(ordered) == sorted(s.key for s in plan.runs)
    assert max(i for i, k in enumerate(ordered) if k.endswith("seed0")) < min(i for i, k in enumerate(ordered) if k.endswith("seed1"))


def test_set_keeps_an_experiment_to_its_datasets_and_checks_its_keys(tmp_path, monkeypatch):
    from benchmarks import config as cfgmod

    sets = tmp_path / "sets.yaml"
    sets.write_text("narrow:\n  experiments:\n    table3_overall: {}\n"
                    "    figure6_topn_sampled: {datasets: [ml-1m-partial]}\n"
                    "  datasets: [ml-100k, ml-1m-partial]\n  runs: [MostPopular, Lite-LLM4Rec]\n"
                    "typo:\n  experiments: {table3_overall: {dataset: [ml-100k]}}\n"
                    "listed:\n  experiments: [table3_overall]\n  runs: [MostPopular]\n")
    monkeypatch.setattr(cfgmod, "SETS_FILE", sets)
    plan = plan_runs(set_name="narrow")
    assert sorted(s.key for s in plan.runs) == sorted([
        "table3_overall/ml-100k/MostPopular/seed0", "table3_overall/ml-1m-partial/MostPopular/seed0",
        "figure6_topn_sampled/ml-1m-partial/Lite-LLM4Rec/seed0"])
    # the command line's datasets meet the same restriction
    assert [s.key for s in plan_runs(set_name="narrow", datasets=["ml-100k"]).runs] == [
        "table3_overall/ml-100k/MostPopular/seed0"]
    with pytest.raises(ConfigError, match=r"experiment 'table3_overall': unknown key\(s\) \['dataset'\]"):
        plan_runs(set_name="typo")
    assert [s.key for s in plan_runs(set_name="listed").runs] == ["table3_overall/ml-100k/MostPopular/seed0"]


def test_set_per_dataset_budget_sits_over_the_set_config_on_its_dataset_only(tmp_path, monkeypatch):
    from benchmarks import config as cfgmod

    sets = tmp_path / "sets.yaml"
    sets.write_text("spaced:\n  experiments: [table3_overall]\n  runs: [SASRec]\n"
                    "  datasets: [ml-100k, ml-1m-partial]\n"
                    "  config: {train: {epochs: 300, eval_every: 1, patience: 10}}\n"
                    "  per_dataset: {ml-1m-partial: {train: {eval_every: 3}, eval: {max_users: 50}}}\n"
                    "typo:\n  experiments: [table3_overall]\n  per_dataset: {ml-1m-parital: {train: {eval_every: 2}}}\n"
                    "badkey:\n  experiments: [table3_overall]\n  runs: [SASRec]\n"
                    "  per_dataset: {ml-100k: {train: {eval_evry: 2}}}\n")
    monkeypatch.setattr(cfgmod, "SETS_FILE", sets)
    by_dataset = {s.dataset: s for s in plan_runs(set_name="spaced").runs}
    spaced, plain = by_dataset["ml-1m-partial"], by_dataset["ml-100k"]
    assert spaced.config["train"]["eval_every"] == 3 and spaced.config["eval"]["max_users"] == 50
    assert spaced.config["train"]["epochs"] == 300 and spaced.config["train"]["patience"] == 10  # the set's config kept
    assert plain.config["train"]["eval_every"] == 1 and plain.config["eval"]["max_users"] is None
    # the set's per-dataset settings are the set's: they make the run a variant of the set
    assert "train.eval_every" in spaced.set_keys and "eval.max_users" in spaced.set_keys
    # table3_overall's own rule on ml-1m-partial (its CPU runs and tuning trials) has the same span
    own = plan_runs(set_name=None, experiments=["table3_overall"], datasets=["ml-1m-partial", "ml-100k"], runs=["SASRec"]).runs
    assert {s.dataset: s.config["train"]["eval_every"] for s in own} == {"ml-1m-partial": 2, "ml-100k": 1}
    with pytest.raises(ConfigError, match=r"per_dataset: unknown dataset preset\(s\) \['ml-1m-parital'\]"):
        plan_runs(set_name="typo")
    with pytest.raises(ConfigError, match=r"unknown config key 'train.eval_evry' in experiment set"):
        plan_runs(set_name="badkey")


def test_data_root_reads_every_preset_but_the_embedded_one_from_its_folder(tmp_path):
    plan = plan_runs(set_name=None, experiments=["table3_overall"], runs=["MostPopular"],
                     datasets=["ml-100k", "ml-1m-partial", "amazon-beauty"], data_root=str(tmp_path))
    paths = {s.dataset: s.config["data"]["path"] for s in plan.runs}
    assert paths == {"ml-100k": None, "ml-1m-partial": str(tmp_path / "ml-1m-partial"),
                     "amazon-beauty": str(tmp_path / "amazon-beauty")}
    with pytest.raises(ConfigError, match="not both"):
        plan_runs(set_name=None, experiments=["table3_overall"], datasets=["ml-1m-partial"],
                  data_path=str(tmp_path), data_root=str(tmp_path))


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 200])
def test_shards_cover_the_set_exactly_once_balanced_by_expected_cost(count):
    """Greedy longest processing time over the runs' expected seconds (no records: each model
    family's declared estimate): every run in exactly one shard, no shard more than one run's
    cost above another, and the same assignment whichever shard computes it."""
    plan = plan_runs(set_name="gpu")
    assignment = shard_assignment(plan, count, declared_seconds)
    keys = [s.key for s in plan.runs]
    shards = [shard_plan(plan, index, count, assignment).runs for index in range(1, count + 1)]
    merged = [spec.key for shard in shards for spec in shard]
    assert sorted(merged) == sorted(keys) and len(set(merged)) == len(keys)
    loads = [sum(declared_seconds(spec) for spec in shard) for shard in shards]
    assert max(loads) - min(loads) <= max(declared_seconds(spec) for spec in plan.runs)
    for shard in shards:  # within a shard, the plan's order (seeds, priority tiers)
        assert [spec.key for spec in shard] == [k for k in keys if k in {spec.key for spec in shard}]
    assert shard_assignment(plan_runs(set_name="gpu"), count, declared_seconds) == assignment


def test_shards_keep_their_assignment_whatever_records_appear_before_they_start(tmp_path):
    """The first shard to start keeps the assignment in the results folder; a shard that starts
    after another has recorded runs (other costs, which would assign otherwise) takes the part it
    was given, so the shards still run the plan exactly once."""
    from benchmarks.launch import shard_of
    from benchmarks.records import write_record
    from benchmarks.runner import Runner

    plan = plan_runs(set_name="gpu", seeds=[0])
    first = shard_of(plan, Runner(tmp_path, progress=False), "1/3").runs
    assert len(list((tmp_path / ".shards").glob("*.assignment"))) == 1
    runner = Runner(tmp_path, progress=False)
    for spec in first[:6]:  # shard 1 records runs that cost far more than their estimates
        write_record(runner.path(spec), {"status": "ok", "training": {"seconds": 50_000.0 + len(spec.key)}})
    later = Runner(tmp_path, progress=False)
    fresh = shard_assignment(plan, 3, lambda spec: expected_cost(spec, later.expected_seconds))
    assert [spec.key for spec in shard_plan(plan, 1, 3, fresh).runs] != [spec.key for spec in first]
    rest = [shard_of(plan, later, f"{index}/3").runs for index in (2, 3)]
    merged = [spec.key for shard in [first, *rest] for spec in shard]
    assert sorted(merged) == sorted(spec.key for spec in plan.runs) and len(set(merged)) == len(merged)
    # another count of shards is another assignment; listing one (--list) writes none
    shard_of(plan, later, "1/4", write=False)
    assert len(list((tmp_path / ".shards").glob("*.assignment"))) == 1


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "2", "a/b", "-1/3"])
def test_bad_shard_is_a_config_error(text):
    with pytest.raises(ConfigError, match="shards count from 1"):
        parse_shard(text)
    assert parse_shard("3/4") == (3, 4)


def test_gpu_set_runs_at_toy_size_on_cpu_in_two_shards(tmp_path, tiny_bert, monkeypatch, capsys):
    """The same set, shrunk: a toy ml-1m standing in for ml-1m-partial under a data root (as the
    offline bundle lays it out), a tiny BERT standing in for MiniLM, one epoch, a few rows of
    each experiment, two seeds; run as two shards into one results/, then reported, then listed
    as done against a copy of the data in another folder (records merged from a GPU machine).
    The set's budget and these overrides make every record a variant of the experiments' own
    (benchmarks/variants.py): tagged `toy` here, and reported with `--with-variants toy`."""
    import shutil
    from tests.conftest import write_ml1m

    monkeypatch.setenv("MINILM_PATH", tiny_bert)
    monkeypatch.chdir(tmp_path)  # the item-vector and dataset caches go under tmp_path
    write_ml1m(tmp_path / "data_local" / "ml-1m-partial", n_users=40, n_items=60)
    results, reports = tmp_path / "results", tmp_path / "reports"
    rows = ("MostPopular", "SASRec", "Lite-LLM4Rec_sampling", "fixT5", "P5")
    common = ["--set", "gpu", "--dataset", "ml-1m-partial", "--data-root", "data_local", "--device", "cpu",
              "--runs", ",".join(rows), "--seeds", "0,1", "-o", "eval.num_negatives=20",  # 60 toy items
              "-o", "train.epochs=1", "-o", "latency.max_batches=1", "-o", "latency.warmup_batches=0",
              "--results-dir", str(results), "--reports-dir", str(reports), "--quiet", "--tag", "toy"]
    for shard in ("1/2", "2/2"):
        assert run_all.main(common + ["--shard", shard]) == 0
    assert not reports.exists()  # shards leave the report to one build over the merged records
    written = sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json"))
    assert written == sorted(
        [f"table3_overall/ml-1m-partial/{run}__seed{seed}__toy.json" for run in ("MostPopular", "SASRec", "Lite-LLM4Rec_sampling")
         for seed in (0, 1)] + [f"{exp}/ml-1m-partial/{run}__seed{seed}__toy.json" for seed in (0, 1) for exp, run in
                                (("figure4_5_ablations", "fixT5"), ("table1_2_4_5_generative", "P5"),
                                 ("table1_2_4_5_generative", "MostPopular"), ("table1_2_4_5_generative", "SASRec"),
                                 ("figure6_topn_sampled", "P5"))])
    for path in results.rglob("*.json"):
        rec = json.loads(path.read_text())
        assert rec["status"] == "ok" and rec["environment"]["device"] == "cpu"
        assert rec["config"]["train"]["max_minutes"] is None and rec["evaluation"]["users"] == "all"
        assert rec["config"]["data"]["path"] == "data_local/ml-1m-partial"
        assert rec["latency"] is None if "figure6" in path.parts[-3] else rec["latency"]["n_batches"] == 1
    assert run_all.main(["--report-only", "--results-dir", str(results), "--reports-dir", str(reports),
                         "--with-variants", "toy"]) == 0
    table3 = (reports / "table3.md").read_text()
    assert "n=2: 0, 1" in table3 and " ± " in table3  # two seeds: mean and interval
    assert re.search(r"\| SASRec +\| 0\.", table3) and re.search(r"\| BERT4Rec +\| not run", table3)
    assert "fixT5" in (reports / "figure4_5.md").read_text()
    assert "| P5" in (reports / "table4.md").read_text() and "| P5" in (reports / "figure6.md").read_text()

    # here again: the same files in another folder; every merged record counts as done
    shutil.copytree(tmp_path / "data_local", tmp_path / "elsewhere")
    listing = [{"data_local": "elsewhere"}.get(arg, arg) for arg in common] + ["--list"]
    capsys.readouterr()
    assert run_all.main(listing) == 0
    states = [line.split()[-1] for line in capsys.readouterr().out.splitlines() if "/seed" in line]
    assert states == ["done"] * 16
