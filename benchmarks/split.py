"""Leave-one-out split, as in the paper.

For a user with sequence s_1..s_n (n >= 3): s_n is the test target, s_{n-1} the validation
target, s_1..s_{n-2} the training sequence. The validation history is s_1..s_{n-2}; the test
history is s_1..s_{n-1}, so it includes the validation item.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data.dataset import MIN_USER_INTERACTIONS, SequenceDataset


@dataclass
class Split:
    train: list[np.ndarray]  # per user: items whose positions may serve as training targets
    valid_histories: list[np.ndarray]
    valid_targets: np.ndarray
    test_histories: list[np.ndarray]
    test_targets: np.ndarray
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.train)


def leave_one_out(dataset: SequenceDataset) -> Split:
    short = [u for u, s in enumerate(dataset.sequences) if len(s) < MIN_USER_INTERACTIONS]
    if short:
        raise ValueError(
            f"{len(short)} users have fewer than {MIN_USER_INTERACTIONS} interactions "
            "(leave-one-out needs train, validation and test items)"
        )
    return Split(
        train=[s[:-2] for s in dataset.sequences],
        valid_histories=[s[:-2] for s in dataset.sequences],
        valid_targets=np.array([s[-2] for s in dataset.sequences], dtype=np.int64),
        test_histories=[s[:-1] for s in dataset.sequences],
        test_targets=np.array([s[-1] for s in dataset.sequences], dtype=np.int64),
        n_items=dataset.n_items,
    )


def pad_histories(histories: list[np.ndarray], max_len: int | None = None) -> np.ndarray:
    """Histories as an int64 array (batch, length): left-aligned, 0-padded on the right, keeping
    each user's *last* max_len items."""
    if max_len is not None:
        histories = [h[-max_len:] for h in histories]
    width = max(1, max((len(h) for h in histories), default=1))
    out = np.zeros((len(histories), width), dtype=np.int64)
    for row, h in enumerate(histories):
        out[row, : len(h)] = h
    return out
