"""The seed a run is given reaches everything random in it: the same seed repeats a run exactly,
and another seed trains another model (another initialisation and another batch order)."""
import numpy as np
import torch

from benchmarks.models import register
from benchmarks.planning import plan_runs
from benchmarks.runner import Runner
from tests.benchmarks.toy_models import ToyNextItem


@register("toy_that_shows_its_randomness")
class ToyThatShowsItsRandomness(ToyNextItem):
    """The toy model, keeping per run its initial weights (torch's global RNG, seeded by the
    runner) and its first epoch's batches (the trainer's generator, seeded from the run's seed)."""

    seen: list = []

    def __init__(self, params, dataset, device):
        super().__init__(params, dataset, device)
        self.seen.append({"initial": self.module.weight.detach().clone(), "batches": None})

    def training_batches(self, split, epoch, rng, batch_size):
        batches = super().training_batches(split, epoch, rng, batch_size)
        if self.seen[-1]["batches"] is None:
            self.seen[-1]["batches"] = torch.cat(batches)
        return batches

CHEAP = ["train.epochs=2", "train.patience=2", "latency.enabled=false", "eval.protocol_controls=[]"]


def toy_runs(tmp_path, toy_ml1m, seeds):
    exp = tmp_path / "seeds.yaml"
    exp.write_text("paper_table: null\ndatasets: [ml-1m]\nconfig: {train: {lr: 0.05}}\n"
                   "runs:\n  Toy: {model: {name: toy_that_shows_its_randomness, dim: 8}}\n")
    plan = plan_runs(set_name=None, experiments=[str(exp)], datasets=["ml-1m"], seeds=seeds,
                     overrides=[f"data.cache_dir={tmp_path / 'cache'}", *CHEAP], data_path=str(toy_ml1m))
    return {spec.seed: spec for spec in plan.runs}


def losses(record):
    return [entry["loss"] for entry in record["training"]["history"] if entry["epoch"] > 0]


def test_another_seed_trains_another_model_and_the_same_seed_repeats(tmp_path, toy_ml1m, one_thread):
    ToyThatShowsItsRandomness.seen = []
    specs = toy_runs(tmp_path, toy_ml1m, [0, 1])
    assert sorted(specs) == [0, 1] and specs[1].config["seed"] == 1
    # seed 0, seed 1, then seed 0 again in the same process: the global RNGs have moved on by
    # then, so the repeat only matches when the runner re-seeds them from the run's seed
    first = Runner(tmp_path / "a", progress=False).run(specs[0])
    other = Runner(tmp_path / "b", progress=False).run(specs[1])
    again = Runner(tmp_path / "c", progress=False).run(specs[0])
    assert first["seed"] == 0 and other["seed"] == 1 and other["config"]["seed"] == 1
    assert len(losses(first)) == len(losses(other)) == 2
    assert losses(again) == losses(first) and again["metrics"] == first["metrics"]
    (seed0, seed1, seed0_again) = ToyThatShowsItsRandomness.seen
    assert torch.equal(seed0["initial"], seed0_again["initial"])
    assert torch.equal(seed0["batches"], seed0_again["batches"])
    # another seed: another initialisation, another batch order, so every epoch's loss differs
    assert not torch.equal(seed0["initial"], seed1["initial"])
    assert seed0["batches"].shape == seed1["batches"].shape and not torch.equal(seed0["batches"], seed1["batches"])
    assert all(not np.isclose(a, b, rtol=0, atol=1e-9) for a, b in zip(losses(first), losses(other)))
