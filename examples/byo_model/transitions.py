"""A model of your own, in one file: item-to-item transitions (a first-order Markov chain).

It scores every item by how often it followed the user's last items in the training sequences,
the most recent item's vote counting most. Nothing in the suite changes to run it: the class
implements the `Recommender` interface (fit, prepare, score) and declares its settings in a
`Params` dataclass, and a config names it by its path. From the repository root:

    python run_all.py --model examples.byo_model.transitions:Transitions --dataset ml-100k
    python run_all.py --experiments examples/byo_model/byo_example.yaml   # beside the baselines

The suite trains it (`fit` on the training sequences only), evaluates it with the one evaluator
(full ranking, history masked), times it with the one timer, and writes its records; the
experiment file names it as the proposed row, so its page tests it against the best baseline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch

from benchmarks.models import ModelParams, Recommender


class Transitions(Recommender):
    """Scores: the rows of the item-to-item transition counts of the user's last items, summed
    with weights decay**age (age 0 = the last item)."""

    @dataclass
    class Params(ModelParams):
        last_items: int = 3     # how many of the user's most recent items vote
        decay: float = 0.5      # an item's vote counts this much of the vote of the item after it

        def validate(self) -> None:  # checked once, when the config is resolved
            self.positive_int("last_items")
            self.fraction("decay")

    def fit(self, split, trainer) -> dict:
        """Count how often item j followed item i in the training sequences (never a test target)."""
        pairs = np.concatenate([np.stack([seq[:-1], seq[1:]], axis=1) for seq in split.train if len(seq) > 1])
        size = (self.n_items + 1, self.n_items + 1)  # row and column 0: padding, never counted
        self.follows = scipy.sparse.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=size)
        return {"epochs": 0}  # nothing iterative to train: the record says "not trained"

    def prepare(self, histories: list[np.ndarray]):
        """Each user's last items and their weights, as one sparse row (not timed: a data loader's work)."""
        rows, items, weights = [], [], []
        for row, history in enumerate(histories):
            for age, item in enumerate(history[::-1][: self.params.last_items]):
                rows.append(row)
                items.append(item)
                weights.append(self.params.decay ** age)
        return scipy.sparse.csr_matrix((weights, (rows, items)), shape=(len(histories), self.n_items + 1))

    def score(self, recent) -> torch.Tensor:
        """(users, items + 1) scores: the weighted transition counts out of each user's last items."""
        return torch.from_numpy((recent @ self.follows).toarray()).float()

    def describe(self) -> dict:
        return {"transitions_counted": int(self.follows.sum())}
