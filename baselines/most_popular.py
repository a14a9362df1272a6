"""MostPopular: every user gets the same scores, the items' popularity in the training split.

The sanity floor for every table: a model that does not beat it has learned nothing about the
user. Popularity counts only training positions (never validation or test targets), so it leaks
nothing from the targets it is evaluated on.
"""
from __future__ import annotations

import numpy as np
import torch

from benchmarks.models import Recommender


class MostPopular(Recommender):
    """No hyper-parameters."""

    def fit(self, split, trainer) -> dict:
        counts = np.bincount(np.concatenate(split.train), minlength=self.n_items + 1).astype(np.float32)
        counts[0] = 0.0
        self.popularity = torch.from_numpy(counts).to(self.device)
        return {"epochs": 0}

    def prepare(self, histories):
        return len(histories)

    def score(self, batch_size: int) -> torch.Tensor:
        return self.popularity.unsqueeze(0).expand(batch_size, -1)

    def input_length(self, histories) -> np.ndarray:
        return np.zeros(len(histories))  # reads nothing of the user

    def describe(self) -> dict:
        return {"parameters": 0, "trainable_parameters": 0}
