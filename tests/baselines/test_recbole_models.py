"""RecBole's seven classic baselines: trained by RecBole, fed our data and split, scored by our
evaluator and timer, with RecBole's outputs kept out of the working directory."""
import json
import math
import os
import sys

import numpy as np
import pytest
import torch

from baselines.recbole import SUPPORTED_MODELS
from baselines.recbole.checks import recbole_evaluate, recbole_split
from baselines.recbole.data import recbole_config
from benchmarks import config as cfgmod
from benchmarks.config import ConfigError
from benchmarks.data import load_dataset
from benchmarks.data.dataset import SequenceDataset
from benchmarks.evaluate import evaluate, metrics_from_ranks
from benchmarks.latency import measure_latency
from benchmarks.models import build_model
from benchmarks.records import read_per_user, read_record, record_path
from benchmarks.planning import plan_runs
from benchmarks.runner import Runner
from benchmarks.split import leave_one_out
from benchmarks.training import Trainer
from tests.conftest import write_ml1m

# RecBole 1.2.1 trips pandas 2.x deprecation warnings in its own code; they are not ours.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

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
EPOCHS = 2
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


def trainer(epochs=EPOCHS):
    defaults = cfgmod.defaults()
    return Trainer(dict(defaults["train"], epochs=epochs, batch_size=64), defaults["eval"], seed=0,
                   progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The seven models trained once on the toy ml-1m (whose movies have genres), from inside an
    empty working directory; RecBole's own split and evaluator results taken there too."""
    root = tmp_path_factory.mktemp("recbole_models")
    dataset = toy_data(root)
    split = leave_one_out(dataset)
    workdir = root / "cwd"
    workdir.mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead (and noise on busy CPUs)
    out = {"dataset": dataset, "split": split, "workdir": workdir, "runs": root / "runs", "models": {}}
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(workdir)
            for name in SUPPORTED_MODELS:
                model = build_model(params(name, root / "runs"), dataset, torch.device("cpu"))
                info = model.fit(split, trainer())
                out["models"][name] = {
                    "model": model, "info": info,
                    "recbole_split": recbole_split(model),
                    "recbole_metrics": recbole_evaluate(model),
                }
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("name", SUPPORTED_MODELS)
def test_each_model_trains_with_recbole_and_scores_through_our_evaluator(trained, name):
    entry = trained["models"][name]
    model, info, split = entry["model"], entry["info"], trained["split"]
    assert info["epochs"] == EPOCHS and len(info["history"]) == EPOCHS
    assert 1 <= info["best_epoch"] <= EPOCHS and info["stopped_by"] == "epochs"
    assert math.isfinite(info["best_valid"]["recall@10"])
    # everything RecBole wrote lies in this run's folder
    folder = trained["runs"] / os.path.basename(info["run_folder"])
    assert folder.is_dir() and any((folder / "checkpoints").glob(f"{name}-*.pth"))
    assert any((folder / "log_tensorboard").rglob("events.out.tfevents.*"))
    assert "epoch 1 training" in (folder / "recbole.log").read_text()

    result = evaluate(model, split.test_histories, split.test_targets, ks=(10, 20), mask_history=True)
    assert set(result.metrics) == {"recall@10", "ndcg@10", "recall@20", "ndcg@20"}
    # ranks among the items left after masking; the metrics are the per-user values of the ranks, averaged
    left = np.array([trained["dataset"].n_items - len(set(h.tolist()) - {t})
                     for h, t in zip(split.test_histories, split.test_targets)])
    assert (result.ranks >= 1).all() and (result.ranks <= left).all()
    for metric, values in metrics_from_ranks(result.ranks, (10, 20)).items():
        assert result.metrics[metric] == pytest.approx(values.mean(), abs=1e-12)
    assert result.metrics["ndcg@10"] <= result.metrics["recall@10"] <= result.metrics["recall@20"]
    scores = model.score(model.prepare(split.test_histories[:5]))
    assert scores.shape == (5, trained["dataset"].n_items + 1)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    latency = measure_latency(model, split.test_histories, batch_size=32, warmup_batches=1, max_batches=2)
    assert latency["n_batches"] == 2 and latency["ms_per_batch_median"] > 0
    lengths = model.input_length(split.test_histories)
    assert lengths.max() <= 20 and lengths.min() >= 1
    described = model.describe()
    assert described["recbole_model"] == name and described["parameters"] > 0
    assert described["recbole_settings"]["MAX_ITEM_LIST_LENGTH"] == 20
    assert described["recbole_settings"]["learning_rate"] == 0.001  # RecBole's, not train.lr
    json.dumps(described)
    json.dumps(info)
    assert "ray" not in sys.modules  # RecBole's quick_start (which imports ray) is never needed


def test_a_recbole_row_serves_compiled_with_the_same_ranks(trained):
    """latency.settings' compiled setting on a RecBole model (the scores served in inference mode
    by the evaluator and the timer; a nested inference_mode in score failed to compile)."""
    from benchmarks.measurements import measure_inference_settings

    model, split = trained["models"]["SASRec"]["model"], trained["split"]
    eager = evaluate(model, split.test_histories, split.test_targets, ks=(10,), mask_history=True)
    measured = measure_inference_settings(   # the order the experiments declare
        model, split.test_histories, split.test_targets,
        [{"precision": "bf16", "compile": False}, {"precision": "fp32", "compile": True},
         {"precision": "bf16", "compile": True}],
        {"ks": [10], "mask_history": True}, {"batch_size": 8, "warmup_batches": 0, "max_batches": 2})
    assert [m["setting"]["compile"] for m in measured] == [False, True, True]
    assert all(m["latency"]["n_batches"] == 2 for m in measured)
    assert measured[1]["metrics"]["recall@10"] == pytest.approx(eager.metrics["recall@10"], abs=1e-9)


def test_s3rec_pretrains_on_item_attributes_then_fine_tunes(trained):
    entry = trained["models"]["S3Rec"]
    model, info = entry["model"], entry["info"]
    assert info["pretrain"]["epochs"] == 1 and math.isfinite(info["pretrain"]["final_loss"])
    folder = trained["runs"] / os.path.basename(info["run_folder"])
    assert (folder / "checkpoints" / "S3Rec-pretrained-1.pth").is_file()
    assert model.config["train_stage"] == "finetune" and model.config["item_attribute"] == "attributes"
    # the attribute vocabulary of the toy movies: Drama, Comedy, Horror
    assert model.module.n_features == 3


def test_fdsa_reads_the_item_attributes(trained):
    model = trained["models"]["FDSA"]["model"]
    assert model.config["selected_features"] == ["attributes"]
    batch = model.prepare(trained["split"].test_histories[:8])
    before = model.score(batch).clone()
    layer = model.module.feature_embed_layer
    weights = [p for n, p in layer.named_parameters() if "embedding" in n]
    assert weights
    saved = [w.detach().clone() for w in weights]
    with torch.no_grad():
        for w in weights:
            w.add_(torch.randn_like(w))
    try:
        assert not torch.allclose(model.score(batch), before)  # scores depend on the features
    finally:
        with torch.no_grad():
            for w, s in zip(weights, saved):
                w.copy_(s)


@pytest.mark.parametrize("name", SUPPORTED_MODELS)
def test_recbole_split_is_ours_user_by_user(trained, name):
    split, ours = trained["split"], trained["dataset"]
    theirs = trained["models"][name]["recbole_split"]
    n_users = ours.n_users
    # training targets: every position of s_1..s_{n-2} that has a history, in order
    assert sorted(theirs["train"]) == list(range(n_users))
    for user in range(n_users):
        assert theirs["train"][user] == split.train[user][1:].tolist()
    for part, histories, targets in (("valid", split.valid_histories, split.valid_targets),
                                     ("test", split.test_histories, split.test_targets)):
        rows = theirs[part]
        assert sorted(rows["users"].tolist()) == list(range(n_users))
        for user, target, history in zip(rows["users"], rows["targets"], rows["histories"]):
            assert target == targets[user]
            assert history.tolist() == histories[user][-20:].tolist()  # the last 20 items


@pytest.mark.parametrize("name", SUPPORTED_MODELS)
def test_unmasked_metrics_equal_recboles_own_evaluator(trained, name):
    """RecBole's full-sort evaluation of sequential models masks no history (its
    FullSortEvalDataLoader passes history_index=None; only [PAD] gets -inf), so our evaluator
    with mask_history=False must give the same numbers on the same trained model."""
    entry, split = trained["models"][name], trained["split"]
    model, theirs = entry["model"], entry["recbole_metrics"]
    for part, histories, targets in (("valid", split.valid_histories, split.valid_targets),
                                     ("test", split.test_histories, split.test_targets)):
        ours = evaluate(model, histories, targets, ks=(10, 20), mask_history=False).metrics
        for metric, value in ours.items():
            assert value == pytest.approx(theirs[part][metric], abs=1e-9), (part, metric)


def test_history_masking_is_ours_not_recboles(trained):
    """With masking (the protocol's default) ranks can only improve, and they do differ from
    RecBole's unmasked numbers for these models."""
    split = trained["split"]
    differ = False
    for name in SUPPORTED_MODELS:
        model = trained["models"][name]["model"]
        masked = evaluate(model, split.test_histories, split.test_targets, mask_history=True)
        unmasked = evaluate(model, split.test_histories, split.test_targets, mask_history=False)
        assert (masked.ranks <= unmasked.ranks).all()
        differ |= masked.metrics != unmasked.metrics
    assert differ


def test_recbole_leaves_autograd_anomaly_detection_as_it_was(trained):
    # RecBole's SINE module switches it on for the whole process when imported: every later
    # backward pass of any model then runs about twice as slow (recbole_compat fix 7)
    import torch
    import recbole.model.sequential_recommender  # noqa: F401  (the trained fixture imported it already)

    assert trained and not torch.is_anomaly_enabled()


def test_nothing_is_written_to_the_working_directory(trained):
    leftovers = sorted(p.name for p in trained["workdir"].iterdir())
    assert not set(leftovers) & set(RUNTIME_FOLDERS)
    assert leftovers == []


def test_time_budget_stops_after_the_validation_that_crosses_it(tmp_path):
    dataset = toy_data(tmp_path)
    model = build_model(params("STAMP", tmp_path / "runs"), dataset, torch.device("cpu"))
    budget = trainer(epochs=3)
    budget.cfg["max_minutes"] = 1e-6
    info = model.fit(leave_one_out(dataset), budget)
    assert info["stopped_by"] == "time_budget" and info["epochs"] == 1 and info["best_epoch"] == 1
    assert model.score(model.prepare([np.array([1, 2, 3])])).shape == (1, dataset.n_items + 1)


# ----------------------------------------------------------------------------- bad configuration


def attribute_free_dataset(n_users=12, n_items=10, with_attributes=False, length=6):
    rng = np.random.default_rng(0)
    sequences = [rng.permutation(np.arange(1, n_items + 1))[:length] for _ in range(n_users)]
    attributes = [[]] + [[f"g{i % 2}"] for i in range(1, n_items + 1)] if with_attributes else None
    return SequenceDataset(
        name="plain", source="test", sequences=sequences, user_ids=[str(u) for u in range(n_users)],
        item_ids=["[PAD]"] + [str(i) for i in range(1, n_items + 1)],
        item_texts=[""] + [f"item {i}" for i in range(1, n_items + 1)], item_attributes=attributes,
        stats={}, source_hash="x", settings={},
    )


def test_bad_configs_fail_before_any_training(tmp_path, monkeypatch):
    from baselines.recbole import model as recbole_models

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(recbole_models.RecBoleModel, "fit", no_training)
    runs = tmp_path / "runs"
    plain = attribute_free_dataset()
    cpu = torch.device("cpu")

    with pytest.raises(ConfigError, match="'Caser' is not supported; supported RecBole models: GRU4Rec, SASRec"):
        build_model({"name": "recbole", "recbole_model": "Caser", "run_dir": str(runs)}, plain, cpu)
    with pytest.raises(ConfigError, match="not supported"):
        build_model({"name": "recbole", "run_dir": str(runs)}, plain, cpu)  # no model named
    for name in ("FDSA", "S3Rec"):
        with pytest.raises(ConfigError, match=f"{name} needs item features .* has no item attributes"):
            build_model(params(name, runs), plain, cpu)
    empty = attribute_free_dataset(with_attributes=True)
    empty.item_attributes = [[] for _ in empty.item_attributes]
    with pytest.raises(ConfigError, match="no item attributes"):
        build_model(params("FDSA", runs), empty, cpu)
    with pytest.raises(ConfigError, match="does not know for SASRec: hidden_sise"):
        build_model(params("SASRec", runs, recbole_config={"hidden_sise": 16}), plain, cpu)
    with pytest.raises(ConfigError, match="does not know for GRU4Rec: n_heads"):  # SASRec's key
        build_model(params("GRU4Rec", runs, recbole_config={"n_heads": 2}), plain, cpu)
    with pytest.raises(ConfigError, match=r"epochs \(set train.epochs\)"):
        build_model(params("SASRec", runs, recbole_config={"epochs": 3}), plain, cpu)
    with pytest.raises(ConfigError, match="eval_args"):
        build_model(params("SASRec", runs, recbole_config={"eval_args": {}}), plain, cpu)
    with pytest.raises(ConfigError, match="pretrain_epochs is for S3Rec only"):
        build_model(params("SASRec", runs, pretrain_epochs=3), plain, cpu)
    with pytest.raises(ConfigError, match="loss_type"):
        build_model(params("NARM", runs, loss_type="BCE"), plain, cpu)
    short = attribute_free_dataset(length=3)
    with pytest.raises(ConfigError, match="fewer than 4 interactions"):
        build_model(params("SASRec", runs), short, cpu)
    # a good config builds (nothing trains until fit) and writes nothing
    build_model(params("FDSA", runs), attribute_free_dataset(with_attributes=True), cpu)
    assert not runs.exists()


def test_recbole_config_ignores_the_command_line_and_keeps_cuda_visibility(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--epochs=7", "--results-dir=/x"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    config = recbole_config("SASRec", tmp_path, "toy")
    assert config["epochs"] == 300 and "results-dir" not in config.final_config_dict
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert sys.argv[1] == "--epochs=7"


def test_run_path_end_to_end_through_the_runner(tmp_path, toy_ml1m, monkeypatch):
    """One classic model through plan -> Runner -> record, with the default run folder under
    .cache/ of the working directory and nothing else written there."""
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "classic.yaml"
    exp.write_text(
        "paper_table: null\n"
        "runs:\n"
        "  STAMP:\n"
        "    model: {name: recbole, recbole_model: STAMP, recbole_config: {embedding_size: 16}}\n"
    )
    plan = plan_runs(set_name=None, experiments=[str(exp)], datasets=["ml-1m"], data_path=str(toy_ml1m),
                     overrides=["data.cache_dir=" + str(tmp_path / "datacache"), "train.epochs=1",
                                "latency.max_batches=2", "latency.warmup_batches=1", "num_threads=1"])
    (spec,) = plan.runs
    assert spec.config["model"]["max_seq_length"] == 20 and spec.config["model"]["loss_type"] == "CE"
    threads = torch.get_num_threads()
    try:
        record = Runner(tmp_path / "results", progress=False).run(spec)
    finally:
        torch.set_num_threads(threads)  # the runner applies num_threads process-wide
    assert record["status"] == "ok" and record["model"] == "recbole"
    assert record["training"]["epochs"] == 1 and record["model_info"]["recbole_model"] == "STAMP"
    assert record["latency"]["n_batches"] == 2 and record["evaluation"]["mask_history"] is True
    # the record's metrics are the mean per-user values of the ranks kept beside it, for all 60 users
    per_user = read_per_user(Runner(tmp_path / "results").path(spec))
    assert len(per_user["rank"]) == 60 and record["evaluation"]["n_users"] == 60
    for metric in ("recall@10", "ndcg@10", "recall@20", "ndcg@20"):
        assert record["metrics"][metric] == pytest.approx(per_user[metric].mean(), abs=1e-12)
    unmasked = record["protocol_variants"]["history masking off"]["metrics"]
    assert all(unmasked[m] <= record["metrics"][m] for m in unmasked)  # masking can only help the target
    assert set(os.listdir(tmp_path)) <= {".cache", "results", "datacache", "classic.yaml", "toy-ml1m"}
    assert list((tmp_path / ".cache" / "recbole_runs").iterdir())
    assert not set(os.listdir(tmp_path)) & set(RUNTIME_FOLDERS)


def test_table3_has_every_classic_row_and_the_default_set_only_converged_rows():
    plan = plan_runs(set_name=None, experiments=["table3_overall"])
    runs = {spec.run: spec.config["model"] for spec in plan.runs}
    assert {"MostPopular", *SUPPORTED_MODELS} <= set(runs)
    default = {spec.run for spec in plan_runs(set_name="default").runs}
    assert {"MostPopular", "GRU4Rec", "SASRec"} == default
    # the committed records of the default set's trained rows stopped by patience (issue 15)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for spec in plan_runs(set_name="default").runs:
        record = read_record(record_path(os.path.join(repo, "results"), spec.experiment,
                                         spec.dataset, spec.run, spec.seed))
        assert record is not None, spec.run
        if spec.run != "MostPopular":
            assert record["training"]["stopped_by"] == "early_stopping", spec.run
    for name in SUPPORTED_MODELS:
        assert runs[name]["name"] == "recbole" and runs[name]["recbole_model"] == name
    assert runs["S3Rec"]["pretrain_epochs"] >= 1


def _snapshot_weights(model):
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def _spy_validation(monkeypatch, script=None):
    """Wrap the suite's validation: keep, per validation, the suite's (masked) metrics, what
    RecBole's own evaluator would see (unmasked), and the weights validated. With `script`, the
    suite's recall@10 is replaced by the scripted values, one per validation."""
    seen, real = [], Trainer.validate

    def spy(self, model, split):
        metrics = dict(real(self, model, split))
        unmasked = evaluate(model, split.valid_histories, split.valid_targets, ks=(10, 20), mask_history=False)
        if script is not None:
            metrics["recall@10"] = script[len(seen)]
        seen.append({"masked": metrics["recall@10"], "unmasked": unmasked.metrics["recall@10"],
                     "weights": _snapshot_weights(model)})
        return metrics

    monkeypatch.setattr(Trainer, "validate", spy)
    return seen


def test_recbole_early_stopping_follows_the_suites_masked_validation(tmp_path, monkeypatch, one_thread):
    """GRU4Rec at RecBole's learning rate on the toy data: the suite's masked validation peaks
    first at an epoch where RecBole's own rule (unmasked, a tie counts as a gain) would not have
    kept its checkpoint. The row's best epoch and restored weights are the suite's choice."""
    dataset = toy_data(tmp_path)
    split = leave_one_out(dataset).for_training()
    seen = _spy_validation(monkeypatch)
    model = build_model(params("GRU4Rec", tmp_path / "runs"), dataset, torch.device("cpu"))
    defaults = cfgmod.defaults()
    info = model.fit(split, Trainer(dict(defaults["train"], epochs=10, batch_size=64, patience=10),
                                    defaults["eval"], seed=0, progress=False))
    masked = np.array([v["masked"] for v in seen])
    unmasked = np.array([v["unmasked"] for v in seen])
    suite_best = int(np.argmax(masked))  # the first maximum: a tie is no gain
    recbole_best = len(unmasked) - 1 - int(np.argmax(unmasked[::-1]))  # RecBole: >= keeps the last
    assert suite_best != recbole_best  # the two evaluators disagree about the best epoch here
    assert info["best_epoch"] == suite_best + 1 and info["stopped_by"] == "epochs"
    assert [h["valid"]["recall@10"] for h in info["history"]] == masked.tolist()
    assert info["best_valid"]["recall@10"] == masked[suite_best]
    restored = _snapshot_weights(model)
    assert all(torch.equal(restored[k], seen[suite_best]["weights"][k]) for k in restored)


def test_recbole_rows_stop_by_the_suites_patience_and_ties_are_no_gain(tmp_path, monkeypatch, one_thread):
    dataset = toy_data(tmp_path)
    split = leave_one_out(dataset).for_training()
    # gains at validations 1 and 2; validation 4 only ties the best; 3 validations without a gain
    # after the 2nd stop the run at the 5th
    seen = _spy_validation(monkeypatch, script=[0.2, 0.5, 0.3, 0.5, 0.4, 0.9, 0.9])
    model = build_model(params("SASRec", tmp_path / "runs"), dataset, torch.device("cpu"))
    defaults = cfgmod.defaults()
    info = model.fit(split, Trainer(dict(defaults["train"], epochs=7, batch_size=64, patience=3),
                                    defaults["eval"], seed=0, progress=False))
    assert len(seen) == 5 and info["epochs"] == 5 and info["stopped_by"] == "early_stopping"
    assert info["best_epoch"] == 2 and info["best_valid"]["recall@10"] == 0.5
    restored = _snapshot_weights(model)
    assert all(torch.equal(restored[k], seen[1]["weights"][k]) for k in restored)
    assert not all(torch.equal(restored[k], seen[3]["weights"][k]) for k in restored)


# ----------------------------------------------------------------------------- tuning


class _Trial:
    """Stands for an Optuna trial: keeps what is reported, prunes after `prune_after` reports."""

    def __init__(self, prune_after=None):
        self.reported, self.prune_after = [], prune_after

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return self.prune_after is not None and len(self.reported) >= self.prune_after


def test_recbole_validations_reach_the_tuning_hook_and_a_pruned_trial_stops(tmp_path, one_thread):
    import optuna

    from benchmarks.tuning.search import PruningReporter

    dataset = toy_data(tmp_path)
    split = leave_one_out(dataset).for_training()
    defaults = cfgmod.defaults()
    train = dict(defaults["train"], epochs=3, batch_size=64)
    trial = _Trial()
    model = build_model(params("STAMP", tmp_path / "runs"), dataset, torch.device("cpu"))
    info = model.fit(split, Trainer(train, defaults["eval"], seed=0, progress=False,
                                    on_validation=PruningReporter(trial, "recall@10")))
    assert [value for _, value in trial.reported] == [h["valid"]["recall@10"] for h in info["history"]]
    assert [step for step, _ in trial.reported] == [0, 1, 2]
    trial = _Trial(prune_after=2)
    model = build_model(params("STAMP", tmp_path / "runs"), dataset, torch.device("cpu"))
    with pytest.raises(optuna.TrialPruned):
        model.fit(split, Trainer(train, defaults["eval"], seed=0, progress=False,
                                 on_validation=PruningReporter(trial, "recall@10")))
    assert len(trial.reported) == 2


@pytest.mark.parametrize("name", SUPPORTED_MODELS)
def test_recbole_accepts_every_setting_of_the_default_search_space(tmp_path, name):
    from baselines.recbole.settings import default_search_space
    from benchmarks.tuning.spec import parse_space, space_layer

    sampled = {p.key: p.choices[-1] if p.type == "categorical" else p.high for p in
               parse_space(name, default_search_space(name))}
    extra = space_layer(sampled)["model"]["recbole_config"]
    model = build_model(params(name, tmp_path / "runs", recbole_config={**SMALL[name], **extra}),
                        toy_data(tmp_path), torch.device("cpu"))  # RecBole checks the keys here
    assert model.extra == {**SMALL[name], **extra}
    if name == "NARM":
        assert extra["dropout_probs"] == [0.5, 0.5]
