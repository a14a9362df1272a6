"""Models scoring from a fixed random table, and a brute-force rank: the evaluator tests'
references (test_evaluate*.py)."""
import numpy as np
import torch


def random_histories(rng, n_users, n_items, max_len=8):
    return [rng.choice(np.arange(1, n_items + 1), size=rng.integers(1, max_len + 1), replace=False)
            .astype(np.int64) for _ in range(n_users)]


def brute_force_rank(row, target, excluded):
    """Pure-Python reference: 1 + other non-excluded items (never padding) scoring >= target."""
    rank = 1
    for item in range(1, len(row)):
        if item == target or item in excluded:
            continue
        if row[item] >= row[target]:
            rank += 1
    return rank


class TableScores:
    """A 'scores' model: a user's scores are a fixed random row picked by their last item."""

    output = "scores"

    def __init__(self, n_items, seed=0, integer=False):
        g = torch.Generator().manual_seed(seed)
        self.n_items = n_items
        self.device = torch.device("cpu")
        shape = (n_items + 1, n_items + 1)
        self.table = (torch.randint(0, 4, shape, generator=g).float() if integer
                      else torch.rand(shape, generator=g))

    def prepare(self, histories):
        return torch.tensor([h[-1] for h in histories])

    def score(self, batch):
        return self.table[batch]

    def input_length(self, histories):
        return np.array([len(h) for h in histories], dtype=np.float64)


class TableTopk(TableScores):
    """A 'topk' model listing items by the same table, history items included."""

    output = "topk"

    def recommend(self, batch, k, candidates=None):
        scores = self.table[batch].clone()
        scores[:, 0] = -np.inf
        if candidates is not None:  # list only the candidates: the rest scored below them all
            keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, candidates, True)
            scores = scores.masked_fill(~keep, -np.inf)
        return torch.topk(scores, k, dim=1).indices


class FilteredTopk(TableTopk):
    """A top-k model that ignores the candidates it is handed (lists its catalogue-wide top k)."""

    def recommend(self, batch, k, candidates=None):
        return super().recommend(batch, k)
