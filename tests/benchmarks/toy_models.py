"""A tiny neural next-item model for testing the shared runner and training loop, and a toy
experiment around it for the tests that start other processes (jobs, `accelerate launch`)."""
import os
from pathlib import Path

import numpy as np
import torch

from benchmarks.models import register
from benchmarks.training import NeuralRecommender


@register("toy_next_item")
class ToyNextItem(NeuralRecommender):
    """Scores items by the dot product of the last item's embedding with every item's."""

    defaults = {"dim": 16}

    def __init__(self, params, dataset, device):
        super().__init__(params, dataset, device)
        self.module = torch.nn.Embedding(self.n_items + 1, int(params["dim"]), padding_idx=0).to(device)

    def training_batches(self, split, epoch, rng, batch_size):
        pairs = [(seq[i - 1], seq[i]) for seq in split.train for i in range(1, len(seq))]
        order = rng.permutation(len(pairs))
        pairs = np.array(pairs, dtype=np.int64)[order]
        return [torch.from_numpy(pairs[i : i + batch_size]) for i in range(0, len(pairs), batch_size)]

    def loss(self, batch):
        batch = batch.to(self.device)
        logits = self.module(batch[:, 0]) @ self.module.weight.T
        return torch.nn.functional.cross_entropy(logits, batch[:, 1])

    def prepare(self, histories):
        return torch.from_numpy(np.array([h[-1] for h in histories], dtype=np.int64)).to(self.device)

    def score(self, last_items):
        return self.module(last_items) @ self.module.weight.T


class ToyNextItemKeepsWeights(ToyNextItem):
    """The toy model, saving its trained weights to `weights_file` with the suffix `.rank<R>` (its
    process's rank under data parallel training) or `.alone`. Not registered: named by its path
    (tests.benchmarks.toy_models:ToyNextItemKeepsWeights), so that a process started by
    `accelerate launch run_all.py` finds it."""

    defaults = {"dim": 16, "weights_file": ""}

    def fit(self, split, trainer):
        info = super().fit(split, trainer)
        if self.params["weights_file"]:
            suffix = f".rank{os.environ['RANK']}" if "RANK" in os.environ else ".alone"
            torch.save(self.module.state_dict(), self.params["weights_file"] + suffix)
        return info


REPO = Path(__file__).resolve().parents[2]
KEEPS_WEIGHTS = "tests.benchmarks.toy_models:ToyNextItemKeepsWeights"  # other processes import it by its path


def write_toy_experiment(folder: Path, epochs: int = 2, batch_size: int = 32) -> Path:
    """toyexp.yaml: MostPopular and the toy model (keeping its weights under `folder`), a few
    epochs, no latency timing nor protocol controls (the tests that use it time processes)."""
    path = folder / "toyexp.yaml"
    path.write_text(
        "description: toy experiment\npaper_table: table3_overall\ndatasets: [ml-1m]\n"
        f"config: {{train: {{epochs: {epochs}, patience: 10, lr: 0.05, batch_size: {batch_size}}}, "
        "eval: {num_negatives: 20, protocol_controls: []}, latency: {enabled: false}}\n"
        "runs:\n  MostPopular: {model: {name: most_popular}}\n"
        f"  Toy: {{model: {{name: '{KEEPS_WEIGHTS}', dim: 8, weights_file: '{folder / 'weights'}'}}}}\n")
    return path


def toy_folders(folder: Path) -> list[str]:
    """Where a test's run writes: results, reports and the data cache under its temporary folder."""
    return ["--results-dir", str(folder / "results"), "--reports-dir", str(folder / "reports"),
            "-o", f"data.cache_dir={folder / 'cache'}"]


def toy_cli(folder: Path, data: Path, exp: Path) -> list[str]:
    """The command line of the toy experiment on a toy ml-1m, every folder under `folder`."""
    return ["--experiments", str(exp), "--dataset", "ml-1m", "--data-path", str(data), "--quiet", *toy_folders(folder)]
