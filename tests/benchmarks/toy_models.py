"""A tiny neural next-item model for testing the shared runner and training loop."""
import numpy as np
import torch

from benchmarks.models import register
from benchmarks.split import pad_histories
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
