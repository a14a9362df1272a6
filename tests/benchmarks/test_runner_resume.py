"""Runs done and resumed: a record counts as done wherever the same source files lie, when made
before a neutral key existed, under a setting the run never reads, or on another device or thread
count, and not under any other setting; an interrupted training resumes from its checkpoint (after
an epoch, or mid-epoch at its step) and ends as one sitting."""
import pytest

from benchmarks.planning import plan_runs
from benchmarks.records import read_record, write_record
from benchmarks.runner import Runner
from benchmarks.training import Trainer
import tests.benchmarks.toy_models  # noqa: F401  (registers toy_next_item)
from tests.benchmarks.runner_experiment import toy_plan, write_experiment


def test_a_record_is_done_wherever_the_same_source_files_lie(tmp_path, toy_ml1m):
    """Records made from a copied data folder (a GPU machine's) count as done here; different
    bytes under the same preset, or no files to compare, do not."""
    import shutil

    exp = write_experiment(tmp_path)
    cache = "data.cache_dir=" + str(tmp_path / "cache")

    def popularity_at(folder):
        plan = plan_runs(set_name=None, experiments=[str(exp)], datasets=["ml-1m"], overrides=[cache],
                         data_path=str(folder), runs=["MostPopular"])
        return plan.runs[0]

    Runner(tmp_path / "results", progress=False).run(popularity_at(toy_ml1m))
    copy = shutil.copytree(toy_ml1m, tmp_path / "copy")
    assert Runner(tmp_path / "results", progress=False).is_done(popularity_at(copy))
    edited = shutil.copytree(toy_ml1m, tmp_path / "edited")
    with open(edited / "ratings.dat", "a", encoding="latin-1") as handle:
        handle.write("1::3::5::978309999\n")
    assert not Runner(tmp_path / "results", progress=False).is_done(popularity_at(edited))
    assert not Runner(tmp_path / "results", progress=False).is_done(popularity_at(tmp_path / "nowhere"))
    # another setting is another run, wherever the files are
    other = popularity_at(copy)
    other.config["eval"]["ks"] = [5, 10]
    assert not Runner(tmp_path / "results", progress=False).is_done(other)


def _recorded_most_popular(tmp_path, toy_ml1m):
    """The toy experiment's MostPopular run recorded: (runner, spec, record path, record)."""
    exp = write_experiment(tmp_path)
    plan = toy_plan(tmp_path, toy_ml1m, exp)
    spec = next(s for s in plan.runs if s.run == "MostPopular")
    runner = Runner(tmp_path / "results", progress=False)
    runner.run(spec)
    return runner, spec, runner.path(spec), read_record(runner.path(spec))


def test_a_record_made_before_a_neutral_key_existed_is_still_the_same_run(tmp_path, toy_ml1m):
    """train.warmup_steps was added with a default (null) that reproduces what earlier records did:
    a record without it is done; a record that differs in a key that changes a run is not."""
    runner, spec, path, old = _recorded_most_popular(tmp_path, toy_ml1m)
    del old["config"]["train"]["warmup_steps"]
    old["config_hash"] = "an older hash"
    write_record(path, old)
    assert runner.is_done(spec)
    old["config"]["train"]["warmup_ratio"] = 0.5
    write_record(path, old)
    assert not runner.is_done(spec)


def test_a_models_own_neutral_key_fills_only_that_models_records():
    """lite_llm4rec's stage2_lr came after records existed; null reproduces them (the second
    stage at train.lr). Another model's recorded settings are left as they were."""
    from benchmarks.config import NEUTRAL_NEW_MODEL_KEYS, with_new_defaults

    assert NEUTRAL_NEW_MODEL_KEYS["lite_llm4rec"] == {"stage2_lr": None}
    lite = with_new_defaults({"model": {"name": "lite_llm4rec", "dropout": 0.1}, "train": {}})
    assert lite["model"] == {"name": "lite_llm4rec", "dropout": 0.1, "stage2_lr": None}
    other = with_new_defaults({"model": {"name": "recbole"}, "train": {}})
    assert other["model"] == {"name": "recbole"}
    kept = with_new_defaults({"model": {"name": "lite_llm4rec", "stage2_lr": 1e-4}})
    assert kept["model"]["stage2_lr"] == 1e-4


def test_a_setting_the_run_never_reads_does_not_make_it_another_run():
    """Lite-LLM4Rec's second-stage settings are not read when no second stage runs: a first-stage
    record made under another stage2_lr is the same run; a two-stage one is not."""
    from benchmarks.config import identity_hash
    from benchmarks.models import resolve_model_params

    def config(**model):
        return {"model": resolve_model_params({"name": "lite_llm4rec", **model}), "data": {}, "train": {}}

    first_stage = dict(finetune_item_vectors=False)
    assert identity_hash(config(**first_stage, stage2_lr=None)) == identity_hash(config(**first_stage, stage2_lr=1e-4))
    assert identity_hash(config(**first_stage, dropout=0.0)) != identity_hash(config(**first_stage))
    assert identity_hash(config(stage2_lr=None)) != identity_hash(config(stage2_lr=1e-4))


def test_a_record_made_on_another_device_or_thread_count_is_the_same_run(tmp_path, toy_ml1m):
    """Where a run ran (device, num_threads: -o num_threads=1 on a shared machine, a GPU) is not
    what it is: its record is done for the experiment's own run; any other setting is not."""
    runner, spec, path, record = _recorded_most_popular(tmp_path, toy_ml1m)
    record["config"].update(num_threads=1, device="cuda")
    record["config_hash"] = "made elsewhere"
    write_record(path, record)
    assert runner.is_done(spec)
    record["config"]["seed"] = 5
    write_record(path, record)
    assert not runner.is_done(spec)


def test_an_interrupted_training_resumes_from_its_checkpoint_and_ends_as_one_sitting(tmp_path, toy_ml1m, monkeypatch):
    """A run cut after its third epoch (checkpoints every epoch) is resumed by the next call: it
    trains only the epochs left and ends with the same weights, curve and metrics as a run that
    was never cut; its checkpoints are gone once the record is written."""
    import benchmarks.training as training

    exp = write_experiment(tmp_path, "datasets: [ml-1m]\nconfig: {train: {epochs: 6, patience: 10, lr: 0.05},"
                                     " latency: {enabled: false}}\nruns:\n  Toy: {model: {name: toy_next_item, dim: 8}}\n")
    plan = toy_plan(tmp_path, toy_ml1m, exp)
    spec = plan.runs[0]
    whole = Runner(tmp_path / "whole", progress=False).run(spec)

    epochs_trained, real_validate = [], Trainer.validate

    def cut_after_three(self, model, split):
        epochs_trained.append(1)
        if len(epochs_trained) == 4:
            raise KeyboardInterrupt  # the fourth validation never happens: a killed sitting
        return real_validate(self, model, split)

    runner = Runner(tmp_path / "cut", progress=False, checkpoint_minutes=0, checkpoint_dir=tmp_path / "ckpt")
    monkeypatch.setattr(training.Trainer, "validate", cut_after_three)
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec)
    assert not runner.is_done(spec) and len(list((tmp_path / "ckpt").glob("*.pt"))) == 1
    monkeypatch.setattr(training.Trainer, "validate", real_validate)
    seen = []
    monkeypatch.setattr(training.Trainer, "validate", lambda self, m, s: seen.append(1) or real_validate(self, m, s))
    resumed = runner.run(spec)
    assert len(seen) == 3  # epochs 4, 5 and 6 only
    assert resumed["training"]["resumed"] == 1 and resumed["training"]["epochs"] == 6
    assert [h["loss"] for h in resumed["training"]["history"]] == pytest.approx([h["loss"] for h in whole["training"]["history"]])
    assert resumed["metrics"] == pytest.approx(whole["metrics"])
    assert not list((tmp_path / "ckpt").glob("*"))


def test_a_training_cut_mid_epoch_resumes_at_its_step_and_ends_as_one_sitting(tmp_path, toy_ml1m, monkeypatch):
    """Checkpoints after every step (checkpoint_minutes 0): a sitting killed a few steps into its
    second epoch is resumed at that step, with that epoch's batches and the dropout generator as
    they were, and ends with the same curve and metrics as a run never cut."""
    import torch

    exp = write_experiment(tmp_path, "datasets: [ml-1m]\nconfig: {train: {epochs: 3, patience: 10, lr: 0.05, batch_size: 8},"
                                     " latency: {enabled: false}}\nruns:\n  Toy: {model: {name: toy_next_item, dim: 8}}\n")
    spec = toy_plan(tmp_path, toy_ml1m, exp).runs[0]
    calls = []

    def dropout_loss(self, batch, cut_at=None):  # draws from torch's generator, as dropout does
        calls.append(1)
        if len(calls) == cut_at:
            raise KeyboardInterrupt  # a killed sitting, mid-step
        hidden = torch.nn.functional.dropout(self.module(batch[:, 0]), 0.5, training=True)
        return torch.nn.functional.cross_entropy(hidden @ self.module.weight.T, batch[:, 1])

    monkeypatch.setattr(tests.benchmarks.toy_models.ToyNextItem, "loss", dropout_loss)
    whole = Runner(tmp_path / "whole", progress=False).run(spec)
    per_epoch = len(calls) // 3
    assert per_epoch >= 4
    calls.clear()
    cut_at = per_epoch + 3  # two steps of epoch 2 done, the third killed
    monkeypatch.setattr(tests.benchmarks.toy_models.ToyNextItem, "loss",
                        lambda self, batch: dropout_loss(self, batch, cut_at))
    runner = Runner(tmp_path / "cut", progress=False, checkpoint_minutes=0, checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec)
    monkeypatch.setattr(tests.benchmarks.toy_models.ToyNextItem, "loss", dropout_loss)
    calls.clear()
    resumed = runner.run(spec)
    assert len(calls) == 3 * per_epoch - (per_epoch + 2)  # only the steps not done before the cut
    assert resumed["training"]["resumed"] == 1
    assert [h["loss"] for h in resumed["training"]["history"]] == pytest.approx([h["loss"] for h in whole["training"]["history"]])
    assert resumed["metrics"] == pytest.approx(whole["metrics"])
