"""RecBole's seven classic baselines: trained by RecBole, fed our data and split, scored by our
evaluator and timer, with RecBole's outputs kept out of the working directory. RecBole rows as the
suite configures, runs, stops and tunes them: test_recbole_runs.py."""
import json
import math
import os
import sys

import numpy as np
import pytest
import torch

from baselines.recbole import SUPPORTED_MODELS
from baselines.recbole.checks import recbole_evaluate, recbole_split
from benchmarks import config as cfgmod
from benchmarks.evaluate import evaluate, metrics_from_ranks
from benchmarks.latency import measure_latency
from benchmarks.models import build_model
from benchmarks.split import leave_one_out
from benchmarks.training import Trainer
from tests.baselines.recbole_toy import RUNTIME_FOLDERS, params, toy_data

# RecBole 1.2.1 trips pandas 2.x deprecation warnings in its own code; they are not ours.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

EPOCHS = 2


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
    # training throughput as the suite's loop records it: every prefix of a training sequence is a
    # row (RecBole's augmentation), in batches of 64, EPOCHS times; the first step's work counted
    rows = sum(len(seq) - 1 for seq in split.train)
    throughput = info["throughput"]
    assert throughput["rows_per_second"] / throughput["steps_per_second"] == pytest.approx(
        rows / math.ceil(rows / 64))
    assert throughput["gflop_per_step"] > 0 and throughput["peak"]["dtype"] == "float32"
    assert throughput["share_of_peak"] == pytest.approx(throughput["achieved_tflops"] / throughput["peak"]["tflops"])


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
