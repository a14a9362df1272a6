"""RecBole rows as the suite configures, runs, stops and tunes them: bad configs refused before any
training, RecBole's config kept from the command line and CUDA visibility, the run path through the
runner, Table 3's rows, early stopping and patience by the suite's masked validation, and the tuning
hook and the default search space."""
import os
import sys

import numpy as np
import pytest
import torch

from baselines.recbole import SUPPORTED_MODELS
from baselines.recbole.data import recbole_config
from baselines.recbole.trainer import suite_validated
from benchmarks import config as cfgmod
from benchmarks.config import ConfigError
from benchmarks.data.dataset import SequenceDataset
from benchmarks.evaluate import evaluate
from benchmarks.models import build_model
from benchmarks.records import read_per_user, read_record, record_path
from benchmarks.planning import plan_runs
from benchmarks.runner import Runner
from benchmarks.split import leave_one_out
from benchmarks.training import Trainer
from tests.baselines.recbole_toy import RUNTIME_FOLDERS, SMALL, params, toy_data

# RecBole 1.2.1 trips pandas 2.x deprecation warnings in its own code; they are not ours.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


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
    assert record["training"]["throughput"]["gflop_per_step"] > 0  # as the suite's own loop records
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


# ----------------------------------------------------------------------------- throughput


def test_the_first_training_step_is_counted_forward_and_backward_once():
    """The count opens at the first loss and closes at the optimiser's step, so it holds the
    backward pass too (against FlopCounterMode around one explicit step), and later steps and
    epochs add rows and steps but no new count; the updates are those of the plain trainer."""
    from torch.utils.flop_counter import FlopCounterMode

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.layers = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))

        def calculate_loss(self, batch):
            return self.layers(batch).pow(2).mean()

    class RecBoleLikeTrainer:  # RecBole's _train_epoch reduced to what the count rests on
        def __init__(self, model):
            self.model, self.optimizer = model, torch.optim.SGD(model.parameters(), lr=0.1)

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            loss_func = loss_func or self.model.calculate_loss
            for batch in train_data:
                self.optimizer.zero_grad()
                loss_func(batch).backward()
                self.optimizer.step()

    batches = [torch.randn(5, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    reference = Model()
    with FlopCounterMode(display=False) as one_step:
        reference.calculate_loss(batches[0]).backward()
    plain, counted = RecBoleLikeTrainer(Model()), suite_validated(RecBoleLikeTrainer)(Model())
    for epoch in range(2):
        plain._train_epoch(batches, epoch)
        counted._train_epoch(batches, epoch)
    assert counted.step_flops == one_step.get_total_flops() > 2 * 5 * (8 * 6 + 6 * 3)  # more than the forward
    assert (counted.steps, counted.rows) == (6, 30) and counted.training_started is not None
    for a, b in zip(plain.model.parameters(), counted.model.parameters()):
        assert torch.equal(a, b)
