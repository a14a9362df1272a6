"""Leave-one-out split, as in the paper.

For a user with sequence s_1..s_n (n >= 3): s_n is the test target, s_{n-1} the validation
target, s_1..s_{n-2} the training sequence. The validation history is s_1..s_{n-2}; the test
history is s_1..s_{n-1}, so it includes the validation item.

The training samples of the suite's own sequence models come from the training part only, under
two rules: `sampling_samples` (one random segment per user per epoch, POD's sampler, the paper's
`sampling` strategy) and `all_samples` (every training position, the paper's `all`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    # cold start: items held out of training entirely (see hold_out_items); empty otherwise
    held_out_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_users(self) -> int:
        return len(self.train)

    def for_training(self) -> "TrainingSplit":
        """What a model's `fit` and its early stopping may read: no test history, no test target."""
        return TrainingSplit(train=self.train, valid_histories=self.valid_histories,
                             valid_targets=self.valid_targets, n_items=self.n_items,
                             held_out_items=self.held_out_items)


@dataclass(frozen=True)
class TrainingSplit:
    """The split as the runner hands it to `fit`: training sequences and validation only. The
    test part is absent, not hidden, so a model that reached for it would fail, not cheat."""

    train: list[np.ndarray]
    valid_histories: list[np.ndarray]
    valid_targets: np.ndarray
    n_items: int
    held_out_items: np.ndarray

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


def hold_out_items(split: Split, fraction: float, seed: int) -> Split:
    """Cold start (config `split.holdout_items`): a seeded fraction of the items, drawn uniformly,
    held out of training entirely, for any model.

    Their interactions are removed from every training sequence, so they are never a training
    input or target (nor a sampled negative, which models draw from split.train), and from the
    validation histories, which are what the trainer feeds the model. Validation and test targets
    and the test histories stay as they are: a user keeps their targets, a held-out item may be
    the next item to recommend, and at test time it exists like any other item. The runner then
    reports the users whose test target is a held-out item (benchmarks/runner.py)."""
    from .errors import ConfigError

    if not 0.0 < float(fraction) < 1.0:
        raise ConfigError(f"split.holdout_items must be a fraction in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(int(seed))
    count = max(1, int(round(float(fraction) * split.n_items)))
    held = np.sort(rng.choice(np.arange(1, split.n_items + 1), size=count, replace=False)).astype(np.int64)
    drop = lambda seq: seq[~np.isin(seq, held)]  # noqa: E731  (order kept)
    return replace(split, train=[drop(s) for s in split.train],
                   valid_histories=[drop(h) for h in split.valid_histories], held_out_items=held)


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


def sampling_samples(train: list[np.ndarray], window: int, rng: np.random.Generator):
    """POD's sampler (lileipisces/POD, `SeqSampler.sample_seq`), one segment per user: over the
    user's training items t_0..t_{m-1} (the full sequence without its validation and test items),
    start ~ U{0..m-2}, then end ~ U{start+1..m-1} (both inclusive); the segment t_start..t_end,
    cut to its last window + 1 items, is the sample: its last item the target, the rest the input.
    Every training position but the first can be a target, later ones more often, and segments
    vary in length. Users with fewer than 2 training items give no sample (POD needs 4 items).
    Returns (inputs, targets, users)."""
    inputs, targets, users = [], [], []
    for user, seq in enumerate(train):
        m = len(seq)
        if m < 2:
            continue
        start = int(rng.integers(0, m - 1))          # 0 .. m-2
        end = int(rng.integers(start + 1, m))        # start+1 .. m-1
        segment = seq[max(start, end - window):end + 1]
        inputs.append(segment[:-1])
        targets.append(segment[-1])
        users.append(user)
    return inputs, np.array(targets, dtype=np.int64), np.array(users, dtype=np.int64)


def all_samples(train: list[np.ndarray], window: int):
    """Every training position t >= 1 of every user: the previous `window` items -> item t.
    Returns (inputs, targets, users)."""
    inputs, targets, users = [], [], []
    for user, seq in enumerate(train):
        for t in range(1, len(seq)):
            inputs.append(seq[max(0, t - window) : t])
            targets.append(seq[t])
            users.append(user)
    return inputs, np.array(targets, dtype=np.int64), np.array(users, dtype=np.int64)


def next_item_batches(train: list[np.ndarray], strategy: str, window: int, rng: np.random.Generator,
                      batch_size: int, *, padded: bool = True, with_users: bool = False) -> list:
    """One shuffled epoch of (inputs, next items) batches under a strategy ("sampling" | "all"):
    inputs as a padded array (`pad_histories`) or, with padded=False, a list of histories; with
    `with_users`, each batch also holds the samples' user indices (inputs, targets, users)."""
    if strategy == "sampling":
        inputs, targets, users = sampling_samples(train, window, rng)
    elif strategy == "all":
        inputs, targets, users = all_samples(train, window)
    else:
        raise ValueError(f"model.strategy must be 'sampling' or 'all', got {strategy!r}")
    items = pad_histories(inputs, window) if padded else inputs
    order = rng.permutation(len(targets))
    batches = []
    for i in range(0, len(order), batch_size):
        rows = order[i : i + batch_size]
        batch = (items[rows] if padded else [items[j] for j in rows], targets[rows])
        batches.append((*batch, users[rows]) if with_users else batch)
    return batches
