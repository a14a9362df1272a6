"""The runner end to end on a toy dataset: records, resume, determinism, skips, reports; what
fit and early stopping see. Which records count as done, and training resumed from checkpoints:
test_runner_resume.py; throughput, inference settings and bf16: test_runner_speed.py."""
import json

import numpy as np
import pytest

import run_all
from benchmarks import records as recmod
from benchmarks.records import read_per_user, read_record
from benchmarks.config import load_experiment, resolve_run, parse_override
from benchmarks.planning import plan_runs
from benchmarks.runner import Runner, SkipRun
from benchmarks.split import leave_one_out
from benchmarks.training import Trainer
from benchmarks.models import build_model, register, Recommender
import tests.benchmarks.toy_models  # noqa: F401  (registers toy_next_item)
from tests.benchmarks.runner_experiment import _toy_config, toy_plan, write_experiment


@register("skips_until_weights_arrive")
class SkipsUntilWeightsArrive(Recommender):
    weights_here = False

    def fit(self, split, trainer):
        if not SkipsUntilWeightsArrive.weights_here:
            raise SkipRun("weights for 'late-llm' not found:\n  fetch them first")  # two lines, as real reasons are

    def score(self, batch):
        import torch
        return torch.zeros(len(batch), self.n_items + 1)

    def prepare(self, histories):
        return histories


def cli(tmp_path, data, exp, *extra):
    return [
        "--experiments", str(exp), "--dataset", "ml-1m", "--data-path", str(data),
        "--results-dir", str(tmp_path / "results"), "--reports-dir", str(tmp_path / "reports"),
        "-o", f"data.cache_dir={tmp_path / 'cache'}", "--quiet", *extra,
    ]


def test_run_all_end_to_end_records_resume_and_report(tmp_path, toy_ml1m):
    exp = write_experiment(tmp_path)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp)) == 0
    folder = tmp_path / "results" / "toyexp" / "ml-1m"
    rec = json.loads((folder / "Toy__seed0.json").read_text())
    # everything needed to repeat and audit the number
    assert rec["status"] == "ok" and rec["seed"] == 0
    assert rec["config"]["model"] == {"name": "toy_next_item", "dim": 8}
    assert rec["config"]["eval"]["mask_history"] is True and rec["evaluation"]["mask_history"] is True
    assert len(rec["data"]["content_hash"]) == 64 and len(rec["data"]["source_hash"]) == 64
    assert rec["data"]["stats"]["users"] == 60
    assert rec["environment"]["device"] == "cpu" and rec["environment"]["libraries"]["torch"]
    assert "commit" in rec["environment"]["git"]
    assert set(rec["metrics"]) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    assert rec["latency"]["n_batches"] == 2 and rec["latency"]["batch_size"] == 8
    assert rec["training"]["epochs"] >= 1 and rec["training"]["history"]
    per_user = recmod.read_per_user(folder / "Toy__seed0.json")
    assert per_user["rank"].shape == (60,)
    assert np.isclose(per_user["recall@10"].mean(), rec["metrics"]["recall@10"])
    valid = recmod.read_per_user(folder / "Toy__seed0.json", "valid")  # the kept weights on the validation users
    assert valid["user_index"].tolist() == list(range(60))
    assert np.isclose(valid["recall@10"].mean(), rec["valid_metrics"]["recall@10"])
    # protocol controls: the same trained model evaluated again with one choice flipped. Without
    # masking a target can only rank lower; among 1+99 candidates it can only rank higher
    controls = rec["protocol_variants"]
    assert set(controls) == {"history masking off", "1+20 sampled candidates"}
    off, sampled = controls["history masking off"], controls["1+20 sampled candidates"]
    assert off["evaluation"]["mask_history"] is False and sampled["evaluation"]["candidates"] == "sampled"
    for k in ("recall@10", "ndcg@20"):
        assert off["metrics"][k] <= rec["metrics"][k] <= sampled["metrics"][k]
    assert sampled["metrics"]["recall@10"] > rec["metrics"]["recall@10"] or rec["metrics"]["recall@10"] == 1.0
    # the toy model learns the cycle; popularity cannot
    mp_record = (folder / "MostPopular__seed0.json").read_bytes()
    pop = json.loads(mp_record)
    assert rec["metrics"]["recall@10"] > pop["metrics"]["recall@10"] + 0.3
    # popularity is one ranking for every user; the toy model's depends on the user
    assert pop["evaluation"]["user_spread"] == 0.0 < 0.01 < rec["evaluation"]["user_spread"]
    skipped = json.loads((folder / "Imaginary__seed0.json").read_text())
    assert skipped["status"] == "skipped" and "imaginary-llm" in skipped["skip_reason"]
    page = (tmp_path / "reports" / "table3.md").read_text()  # toyexp feeds Table 3 (its paper_table)
    assert "| Toy" in page and "MostPopular" in page
    assert "skipped: weights for 'imaginary-llm'" in page
    assert "The paper's numbers are not shown" in page  # toy data is not the paper's ml-1m
    # resume: a second run redoes nothing
    stamps = written(folder)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp)) == 0
    assert written(folder) == stamps
    # a changed config re-runs only what changed: Toy's row, not MostPopular (nor the skip)
    write_experiment(tmp_path, exp.read_text().replace("dim: 8}", "dim: 12}"))
    assert run_all.main(cli(tmp_path, toy_ml1m, exp)) == 0
    after = written(folder)
    assert {p.name for p in after if after[p] != stamps[p]} == {"Toy__seed0.json", "Toy__seed0.per_user.safetensors"}
    assert set(after) == set(stamps)
    assert json.loads((folder / "Toy__seed0.json").read_text())["config"]["model"] == {"name": "toy_next_item", "dim": 12}
    assert (folder / "MostPopular__seed0.json").read_bytes() == mp_record
    # --force re-runs everything: every finished record is written anew (the skip is retried,
    # skipped again for the same reason, and its record stands)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--force")) == 0
    forced = written(folder)
    assert {p.name for p in forced if forced[p] == after[p]} == {"Imaginary__seed0.json"}


def written(folder):
    """Each file's (inode, mtime): a record rewritten through a temporary file gets a new inode."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_same_seed_same_metrics_and_interrupted_run_leaves_no_record(tmp_path, toy_ml1m, monkeypatch):
    exp = write_experiment(tmp_path)
    args = ["-o", "data.cache_dir=" + str(tmp_path / "cache")]
    plan = plan_runs(set_name=None, experiments=[str(exp)], datasets=["ml-1m"],
                     overrides=[a for a in args if a != "-o"], data_path=str(toy_ml1m))
    toy = [s for s in plan.runs if s.run == "Toy"][0]
    first = Runner(tmp_path / "r1", progress=False).run(toy)
    second = Runner(tmp_path / "r2", progress=False).run(toy)
    assert first["metrics"] == second["metrics"]
    assert first["training"]["history"][-1]["loss"] == second["training"]["history"][-1]["loss"]

    import benchmarks.latency as latency_mod

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(latency_mod, "measure_latency", boom)  # measurements.measure_timing calls it
    runner = Runner(tmp_path / "r3", progress=False)
    with pytest.raises(KeyboardInterrupt):
        runner.run(toy)
    assert not list((tmp_path / "r3").rglob("*.json")) and not runner.is_done(toy)


def test_training_loop_lowers_loss_stops_early_and_restores_best(tmp_path, toy_dataset):
    dataset = toy_dataset
    split = leave_one_out(dataset)
    name, exp = load_experiment(str(write_experiment(tmp_path)))
    cfg = resolve_run(name, exp, "Toy", "ml-1m", 0, cli_overrides=[parse_override("train.epochs=40"),
                      parse_override("train.patience=2"), parse_override("train.lr=0.05")]).config
    model = build_model(cfg["model"], dataset, __import__("torch").device("cpu"))
    result = Trainer(cfg["train"], cfg["eval"], seed=0, progress=False).fit(model, split)
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < losses[0] * 0.7
    assert result["stopped_by"] == "early_stopping" and result["epochs"] < 40
    assert result["epochs"] - result["best_epoch"] == 2
    # best weights restored: validating again gives the best validation value, not the last one
    again = Trainer(cfg["train"], cfg["eval"], seed=0, progress=False).validate(model, split)
    assert again["recall@10"] == pytest.approx(result["best_valid"]["recall@10"])


def test_most_popular_counts_training_positions_only(tmp_path, toy_dataset):
    dataset = toy_dataset
    split = leave_one_out(dataset)
    import torch

    model = build_model({"name": "most_popular"}, dataset, torch.device("cpu"))
    model.fit(split, None)
    scores = model.score(model.prepare(split.test_histories[:3]))
    expected = np.bincount(np.concatenate(split.train), minlength=dataset.n_items + 1)
    assert scores.shape == (3, dataset.n_items + 1)
    assert np.array_equal(scores[0, 1:].numpy(), expected[1:].astype(np.float32))


def test_list_shows_plan_without_running(tmp_path, toy_ml1m, capsys):
    exp = write_experiment(tmp_path)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--list")) == 0
    out = capsys.readouterr().out
    assert "toyexp/ml-1m/Toy/seed0" in out and "to run" in out
    assert not (tmp_path / "results").exists()


def test_list_marks_a_cost_read_from_a_record_of_other_settings(tmp_path, toy_ml1m, capsys):
    body = ("description: d\npaper_table: null\ndatasets: [ml-1m]\n"
            "config: {train: {epochs: 2}, latency: {enabled: false}, eval: {protocol_controls: []}}\n"
            "runs: {Toy: {model: {name: toy_next_item, dim: DIM}}}\n")
    exp = write_experiment(tmp_path, body.replace("DIM", "8"))
    assert run_all.main(cli(tmp_path, toy_ml1m, exp)) == 0
    capsys.readouterr()
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--list")) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("toyexp/ml-1m/Toy/seed0")]
    assert line.endswith("done") and " s " in line and "*" not in line
    write_experiment(tmp_path, body.replace("DIM", "16"))  # the record is now of other settings
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--list")) == 0
    out = capsys.readouterr().out
    [line] = [x for x in out.splitlines() if x.startswith("toyexp/ml-1m/Toy/seed0")]
    assert line.endswith("to run") and " s* " in line and "*: from a record of other settings" in out


def test_list_says_when_bf16_rows_would_be_emulated_on_this_cpu(tmp_path, toy_ml1m, capsys, monkeypatch):
    from benchmarks import listing
    exp = write_experiment(tmp_path)
    note = "this CPU has no bf16 instructions: the 1 run(s) to run that train in bf16 here (toyexp/ml-1m/Toy/seed0)"
    for native, bf16, shown in [(False, True, True), (True, True, False), (False, False, False)]:
        monkeypatch.setattr(listing, "cpu_has_native_bf16", lambda native=native: native)
        extra = ["-o", "train.precision=bf16", "-o", "device=cpu"] if bf16 else []
        assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--list", "--runs", "Toy", *extra)) == 0
        assert (note in capsys.readouterr().out) is shown, (native, bf16)


def test_bad_config_exits_with_clear_error(tmp_path, toy_ml1m, capsys):
    exp = write_experiment(tmp_path)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "-o", "train.lrr=1")) == 2
    assert "unknown config key 'train.lrr'" in capsys.readouterr().err


def test_unavailable_backbone_is_recorded_as_skipped(tmp_path, toy_ml1m, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["--experiments", "table7_rec_llm", "--runs", "t5-large", "--dataset", "ml-1m",
            "--data-path", str(toy_ml1m), "--results-dir", str(tmp_path / "results"),
            "--reports-dir", str(tmp_path / "reports"), "-o", f"data.cache_dir={tmp_path / 'cache'}", "--quiet"]
    assert run_all.main(args) == 0
    records = list((tmp_path / "results").rglob("*.json"))
    assert [p.name for p in records] == ["t5-large__seed0.json"]  # --runs kept one row
    rec = json.loads(records[0].read_text())
    assert rec["status"] == "skipped" and "t5-small" in rec["skip_reason"]  # its Item LLM
    page = (tmp_path / "reports" / "table7.md").read_text()
    assert "skipped: backbone 't5-small'" in page and "| t5-base" in page and "not run" in page


def test_a_skipped_run_is_retried_and_runs_once_its_weights_are_here(tmp_path, toy_ml1m, capsys, monkeypatch):
    exp = write_experiment(tmp_path, "description: d\npaper_table: null\ndatasets: [ml-1m]\n"
                           "config: {latency: {enabled: false}, eval: {protocol_controls: []}}\n"
                           "runs: {Late: {model: {name: skips_until_weights_arrive}}}\n")
    monkeypatch.setattr(SkipsUntilWeightsArrive, "weights_here", False)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp)) == 0
    record = tmp_path / "results" / "toyexp" / "ml-1m" / "Late__seed0.json"
    assert json.loads(record.read_text())["status"] == "skipped"
    capsys.readouterr()
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--list")) == 0
    assert "to retry (skipped: weights for 'late-llm' not found: fetch them first)" in capsys.readouterr().out
    monkeypatch.setattr(SkipsUntilWeightsArrive, "weights_here", True)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp)) == 0
    assert json.loads(record.read_text())["status"] == "ok"


def test_unknown_run_name_is_an_error(tmp_path, toy_ml1m, capsys):
    exp = write_experiment(tmp_path)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--runs", "Nope")) == 2
    assert "unknown run(s) ['Nope']" in capsys.readouterr().err


def test_protocol_controls_skip_what_cannot_change_and_reject_unknown_names(tmp_path, toy_dataset):
    torch = __import__("torch")
    from benchmarks.config import ConfigError
    from benchmarks.runner import measure_protocol_controls

    split = leave_one_out(toy_dataset)
    cfg = _toy_config(tmp_path, "eval.candidates=sampled")
    model = build_model(cfg["model"], toy_dataset, torch.device("cpu"))
    kwargs = dict(ks=[10], mask_history=True, candidates="sampled", num_negatives=20, negative_seed=1, batch_size=16)
    out = measure_protocol_controls(model, split.test_histories, split.test_targets,
                                    ["history_masking", "candidates"], kwargs)
    assert "skipped" in out["history masking off"]  # sampled candidates exclude history anyway
    assert out["full ranking"]["evaluation"]["candidates"] == "full"
    too_many = measure_protocol_controls(model, split.test_histories, split.test_targets, ["candidates"],
                                         {**kwargs, "candidates": "full", "num_negatives": 10_000})
    assert "fewer than num_negatives" in too_many["1+10000 sampled candidates"]["skipped"]
    model.never_lists_history = True
    out = measure_protocol_controls(model, split.test_histories, split.test_targets, ["history_masking"],
                                    {**kwargs, "candidates": "full"})
    assert "never lists history" in out["history masking off"]["skipped"]
    with pytest.raises(ConfigError, match="protocol_controls"):
        _toy_config(tmp_path, "eval.protocol_controls=[masking]")


def test_bf16_training_trains_and_unknown_precision_fails_before_work(tmp_path, toy_dataset):
    torch = __import__("torch")
    split = leave_one_out(toy_dataset)
    cfg = _toy_config(tmp_path, "train.epochs=5", "train.lr=0.05", "train.precision=bf16")
    model = build_model(cfg["model"], toy_dataset, torch.device("cpu"))
    result = Trainer(cfg["train"], cfg["eval"], seed=0, progress=False).fit(model, split)
    losses = [h["loss"] for h in result["history"]]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    # weights stay fp32: autocast changes the forward's matmuls only
    assert all(p.dtype == torch.float32 for p in model.module.parameters())
    with pytest.raises(ValueError, match="train.precision"):
        Trainer({**cfg["train"], "precision": "fp8"}, cfg["eval"], seed=0)


def test_validation_uses_the_seeded_user_subset(tmp_path, toy_dataset, monkeypatch):
    import benchmarks.training as training_mod
    from benchmarks.evaluate import user_subset

    split = leave_one_out(toy_dataset)
    cfg = _toy_config(tmp_path, "eval.max_users=7", "eval.user_subset_seed=3")
    model = build_model(cfg["model"], toy_dataset, __import__("torch").device("cpu"))
    seen = {}
    real = training_mod.evaluate

    def spy(model, histories, targets, **kw):
        seen["targets"] = np.asarray(targets)
        return real(model, histories, targets, **kw)

    monkeypatch.setattr(training_mod, "evaluate", spy)
    Trainer(cfg["train"], cfg["eval"], seed=0, progress=False).validate(model, split)
    users = user_subset(split.n_users, 7, 3)
    assert len(users) == 7 and np.array_equal(seen["targets"], split.valid_targets[users])


def test_validation_may_read_its_own_subset_while_the_test_reads_every_user(tmp_path, toy_dataset, monkeypatch):
    import benchmarks.training as training_mod
    from benchmarks.evaluate import user_subset, validation_users

    split = leave_one_out(toy_dataset)
    cfg = _toy_config(tmp_path, "eval.valid_max_users=5", "eval.user_subset_seed=3")
    assert cfg["eval"]["max_users"] is None
    model = build_model(cfg["model"], toy_dataset, __import__("torch").device("cpu"))
    seen = {}
    real = training_mod.evaluate

    def spy(model, histories, targets, **kw):
        seen["targets"], seen["users"] = np.asarray(targets), np.asarray(kw["users"])
        return real(model, histories, targets, **kw)

    monkeypatch.setattr(training_mod, "evaluate", spy)
    Trainer(cfg["train"], cfg["eval"], seed=0, progress=False).validate(model, split)
    users = user_subset(split.n_users, 5, 3)
    assert len(users) == 5 < split.n_users
    assert np.array_equal(seen["users"], users) and np.array_equal(seen["targets"], split.valid_targets[users])
    assert np.array_equal(validation_users(split.n_users, {"max_users": 7, "user_subset_seed": 3}),
                          user_subset(split.n_users, 7, 3))  # unset: the test's users
    with pytest.raises(ValueError, match="valid_max_users"):
        validation_users(split.n_users, {"valid_max_users": 0})


def test_time_budget_stops_mid_epoch_and_validates_what_it_trained(tmp_path, toy_dataset, monkeypatch):
    import benchmarks.training as training_mod

    split = leave_one_out(toy_dataset)
    cfg = _toy_config(tmp_path, "train.epochs=50", "train.batch_size=4", "train.max_minutes=1")
    model = build_model(cfg["model"], toy_dataset, __import__("torch").device("cpu"))
    clock = iter(range(0, 10_000, 7))  # a fake clock: 7 s per reading, so 60 s pass within one epoch
    monkeypatch.setattr(training_mod.time, "perf_counter", lambda: float(next(clock)))
    result = Trainer(cfg["train"], cfg["eval"], seed=0, progress=False).fit(model, split)
    last = result["history"][-1]
    assert result["stopped_by"] == "time_budget" and result["epochs"] == 1
    done, of = (int(x) for x in last["batches"].split(" of "))
    assert 0 < done < of and "valid" in last and result["best_epoch"] == 1


@register("records_what_fit_sees")
class RecordsWhatFitSees(tests.benchmarks.toy_models.ToyNextItem):
    """The toy model, keeping the split its fit was handed and every target it validated on."""

    seen: dict = {}

    def fit(self, split, trainer):
        import benchmarks.training as training

        validated, real = [], training.evaluate

        def spy(model, histories, targets, **kwargs):
            validated.append(np.asarray(targets).copy())
            return real(model, histories, targets, **kwargs)

        training.evaluate = spy
        try:
            info = super().fit(split, trainer)
        finally:
            training.evaluate = real
        RecordsWhatFitSees.seen = {"split": split, "validated": validated}
        return info


def test_runner_never_hands_test_targets_to_fit_or_early_stopping(tmp_path, toy_ml1m):
    exp = write_experiment(tmp_path, "datasets: [ml-1m]\nconfig: {train: {epochs: 3}, latency: {enabled: false}}\n"
                                     "runs:\n  Spy: {model: {name: records_what_fit_sees}}\n")
    plan = toy_plan(tmp_path, toy_ml1m, exp)
    runner = Runner(tmp_path / "results", progress=False)
    runner.run(plan.runs[0])
    full = leave_one_out(runner.dataset(plan.runs[0].config["data"]))
    split, validated = RecordsWhatFitSees.seen["split"], RecordsWhatFitSees.seen["validated"]
    assert not hasattr(split, "test_targets") and not hasattr(split, "test_histories")
    assert len(validated) == 3  # one validation an epoch, each on the validation targets only
    assert all(np.array_equal(v, full.valid_targets) for v in validated)
    # the training sequences end before the validation item: no target of the test reaches training
    for user, train in enumerate(split.train):
        assert np.array_equal(train, full.test_histories[user][:-1])
        assert full.test_targets[user] not in train and full.valid_targets[user] not in train


def test_a_validation_subset_serves_early_stopping_and_the_record_while_the_test_reads_all(tmp_path, toy_ml1m):
    from benchmarks.evaluate import user_subset

    exp = write_experiment(tmp_path, "datasets: [ml-1m]\nconfig: {train: {epochs: 2}, latency: {enabled: false},"
                                     " eval: {valid_max_users: 4, user_subset_seed: 1}}\n"
                                     "runs:\n  Spy: {model: {name: records_what_fit_sees}}\n")
    plan = toy_plan(tmp_path, toy_ml1m, exp)
    runner = Runner(tmp_path / "results", progress=False)
    runner.run(plan.runs[0])
    full = leave_one_out(runner.dataset(plan.runs[0].config["data"]))
    subset = user_subset(full.n_users, 4, 1)
    assert len(subset) == 4 < full.n_users
    assert [v.tolist() for v in RecordsWhatFitSees.seen["validated"]] == [full.valid_targets[subset].tolist()] * 2
    record = read_record(runner.path(plan.runs[0]))
    assert record["evaluation"]["users"] == "all" and record["evaluation"]["n_users"] == full.n_users
    assert record["evaluation"]["valid_users"] == f"seeded subset of 4 of {full.n_users}"
    assert len(read_per_user(runner.path(plan.runs[0]))["rank"]) == full.n_users
    valid = read_per_user(runner.path(plan.runs[0]), "valid")
    assert valid["user_index"].tolist() == subset.tolist()  # the validation ranks keep their own users
    assert np.isclose(valid["ndcg@20"].mean(), record["valid_metrics"]["ndcg@20"])
