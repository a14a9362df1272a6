"""Data parallel training: two processes started by `accelerate launch` (gloo, on the CPU) train
the weights one process trains with the same global batch; how a batch is shared; FSDP refused."""
import json
import subprocess

import numpy as np
import pytest
import torch

import run_all
from benchmarks.config import ConfigError
from benchmarks.data_parallel import batch_rows, data_parallel, rows_share
from benchmarks.planning import plan_runs
from benchmarks.runner import Runner
from benchmarks.split import leave_one_out
from tests.benchmarks.scaling_commands import ACCELERATE, accelerate_command
from tests.benchmarks.toy_models import REPO, ToyNextItem, toy_cli, write_toy_experiment
from tests.conftest import write_ml1m


def test_rows_share_splits_rows_and_keeps_shared_entries():
    items, targets, negatives = np.arange(10).reshape(5, 2), np.arange(5), np.arange(7)
    shares = [rows_share((items, targets, negatives), i, 2) for i in range(2)]
    assert [batch_rows(s) for s in shares] == [2, 3]  # uneven: rows*i//n .. rows*(i+1)//n
    assert np.array_equal(np.concatenate([s[0] for s in shares]), items)
    assert all(s[2] is negatives for s in shares)  # another length: shared by every row
    histories = [np.arange(n) for n in range(1, 5)]  # a list of histories (P5's batches)
    assert [len(rows_share((histories, np.arange(4)), i, 2)[0]) for i in range(2)] == [2, 2]
    pairs = torch.arange(12).reshape(6, 2)  # a batch that is one tensor (the toy model's)
    assert torch.equal(torch.cat([rows_share(pairs, i, 3) for i in range(3)]), pairs)
    assert batch_rows(rows_share(pairs[:1], 0, 2)) == 0  # fewer rows than processes: an empty share


def test_hllm_keeps_its_sampled_negatives_whole_whatever_their_count():
    from baselines.hllm.model import HLLM

    inputs, targets, negatives = np.zeros((4, 3)), np.ones((4, 3)), np.arange(4)  # as many negatives as rows
    share = HLLM.shard_batch(None, (inputs, targets, negatives), 1, 2)
    assert share[0].shape == (2, 3) and share[1].shape == (2, 3) and share[2] is negatives


def test_fsdp_is_refused_not_faked(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ConfigError, match="FSDP is not supported"):
        data_parallel()


def test_tuning_is_refused_under_accelerate_launch(tmp_path, toy_ml1m, monkeypatch, capsys):
    """A pruned trial would stop in the main process alone (it alone validates) while the others
    wait for its next step: --tune trains each trial in one process."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    exp = write_toy_experiment(tmp_path)
    assert run_all.main(toy_cli(tmp_path, toy_ml1m, exp) + ["--tune"]) == 2
    assert "without accelerate launch" in capsys.readouterr().err


def test_two_processes_train_the_weights_one_process_trains_with_the_same_global_batch(
        tmp_path, one_thread_children):
    """The README's `accelerate launch --multi_gpu --num_processes 2 run_all.py ...` on the CPU
    (gloo): each process takes half of every global batch (48 toy users give 384 training pairs:
    12 batches of 32 rows, every split even) and the gradients are summed, so the weights match
    one process's training of the same batches; both processes end with the same weights, and
    only the main process writes the record."""
    data = write_ml1m(tmp_path / "toy-ml1m", n_users=48)
    exp = write_toy_experiment(tmp_path, epochs=3)
    command = accelerate_command(ACCELERATE, tmp_path)  # the README's line, in this temporary folder
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("[run] toyexp/ml-1m/Toy/seed0: running") == 1  # the main process speaks
    record = json.loads((tmp_path / "results" / "toyexp" / "ml-1m" / "Toy__seed0.json").read_text())
    assert record["status"] == "ok" and record["training"]["processes"] == 2

    plan = plan_runs(set_name=None, experiments=[str(exp)], datasets=["ml-1m"], runs=["Toy"], data_path=str(data),
                     overrides=[f"data.cache_dir={tmp_path / 'cache'}", "device=cpu"])
    runner = Runner(tmp_path / "alone", progress=False)
    alone = runner.run(plan.runs[0])
    split = leave_one_out(runner.dataset(plan.runs[0].config["data"]))
    rows = [len(batch) for batch in ToyNextItem.training_batches(None, split, 0, np.random.default_rng(0), 32)]
    assert rows == [32] * 12  # even splits (uneven ones: benchmarks/data_parallel.py)
    assert alone["training"]["processes"] == 1 and alone["config_hash"] == record["config_hash"]
    weights = {name: torch.load(tmp_path / f"weights.{name}") for name in ("alone", "rank0", "rank1")}
    for key, value in weights["alone"].items():
        assert torch.equal(weights["rank0"][key], weights["rank1"][key])  # the processes never part
        torch.testing.assert_close(weights["rank0"][key], value, rtol=1e-5, atol=1e-5)
    assert [h["loss"] for h in record["training"]["history"]] == pytest.approx(
        [h["loss"] for h in alone["training"]["history"]], rel=1e-5)
    assert record["metrics"] == pytest.approx(alone["metrics"], abs=1e-6)
