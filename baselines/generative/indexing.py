"""Item ids as text for the generative models: random numbers (the paper's), sequential numbers
(which leak the order of a user's items into the ids: a control), LightLM's collaborative ids
(hierarchical spectral clustering of the item co-occurrence graph), and their tokens."""
from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import scipy.sparse as sp
import torch


def random_indexing(n_items: int, seed: int) -> list[str]:
    """Each item gets a random distinct number (the paper's setting)."""
    numbers = np.random.default_rng(seed).permutation(n_items) + 1
    return [""] + [f"item_{n}" for n in numbers]


def sequential_indexing(train: list[np.ndarray], n_items: int) -> list[str]:
    """Items numbered in order of first appearance, user after user. Leaks the target: a user's
    consecutive items get consecutive numbers, so the next id is guessable from the last one."""
    warnings.warn("sequential item indexing leaks the target (consecutive items get consecutive "
                  "ids); use it only to measure that leak", stacklevel=2)
    number = np.zeros(n_items + 1, dtype=np.int64)
    next_number = 1
    for seq in train:
        for item in seq:
            if number[item] == 0:
                number[item] = next_number
                next_number += 1
    for item in range(1, n_items + 1):  # items only ever seen as validation or test targets
        if number[item] == 0:
            number[item] = next_number
            next_number += 1
    return [""] + [f"item_{number[i]}" for i in range(1, n_items + 1)]


def co_occurrence(train: list[np.ndarray], n_items: int, window: int = 2) -> sp.csr_matrix:
    """Symmetric counts of items appearing within `window` positions of each other in training."""
    rows, cols = [], []
    for seq in train:
        for gap in range(1, window + 1):
            rows.append(seq[:-gap])
            cols.append(seq[gap:])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    m = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(n_items + 1, n_items + 1)).tocsr()
    return m + m.T


def _spectral_clusters(graph: sp.csr_matrix, n_clusters: int, seed: int) -> np.ndarray:
    """Cluster labels of a graph's nodes: k-means on the top eigenvectors of the normalised
    adjacency (spectral clustering); an even split along the leading eigenvector when k-means
    puts everything in one cluster."""
    from scipy.cluster.vq import kmeans2
    from scipy.sparse.linalg import eigsh

    n = graph.shape[0]
    degree = np.asarray(graph.sum(1)).ravel() + 1e-9
    scale = sp.diags(1.0 / np.sqrt(degree))
    norm_adj = scale @ (graph + sp.identity(n) * 1e-6) @ scale
    dims = min(n_clusters, n - 2)
    if n <= 200:
        _, vectors = np.linalg.eigh(norm_adj.toarray())
        vectors = vectors[:, -dims:]
    else:
        v0 = np.random.default_rng(seed).standard_normal(n)
        _, vectors = eigsh(norm_adj, k=dims, which="LA", v0=v0)
    vectors = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    _, labels = kmeans2(vectors, n_clusters, minit="++", seed=seed)
    if len(np.unique(labels)) < 2:
        order = np.argsort(vectors[:, -1], kind="stable")
        labels = np.empty(n, dtype=np.int64)
        labels[order] = np.arange(n) * n_clusters // n
    return labels


def collaborative_indexing(train: list[np.ndarray], n_items: int, n_clusters: int = 16,
                           leaf_size: int = 16, seed: int = 0) -> list[str]:
    """Hierarchical ids "a-b-c": spectral clusters of the co-occurrence graph, split again until a
    cluster holds at most `leaf_size` items; the last number tells the items of a leaf apart.
    Items that occur together share prefixes, so the decoder's early tokens carry meaning."""
    graph = co_occurrence(train, n_items)
    codes: dict[int, list[int]] = {}

    def split(items: np.ndarray, prefix: list[int]) -> None:
        if len(items) <= leaf_size or len(items) < 3:
            for position, item in enumerate(items):
                codes[int(item)] = prefix + [position]
            return
        labels = _spectral_clusters(graph[items][:, items], min(n_clusters, len(items) - 1), seed)
        for label in np.unique(labels):
            split(items[labels == label], prefix + [int(label)])

    split(np.arange(1, n_items + 1), [])
    return [""] + ["-".join(str(c) for c in codes[i]) for i in range(1, n_items + 1)]


class ItemIdTokens:
    """Item text ids as token sequences, the map back from tokens to items, and the prefix trie
    for constrained decoding (with per-user exclusion of history items)."""

    def __init__(self, strings: list[str], tokenizer, eos_id: int):
        self.strings = strings
        self.eos_id = eos_id
        self.tokens = [tuple(tokenizer(s, add_special_tokens=False)["input_ids"]) if i else ()
                       for i, s in enumerate(strings)]
        self.item_of = {t: i for i, t in enumerate(self.tokens) if i}
        if len(self.item_of) != len(strings) - 1:
            raise ValueError("two items have the same id tokens; choose another item indexing")
        # trie: prefix (tuple of tokens, eos included at the end) -> allowed next tokens;
        # items_under[prefix]: how many items complete that prefix (for history exclusion)
        self.children: dict[tuple, set] = {}
        self.items_under: Counter = Counter()
        for toks in self.item_of:
            full = toks + (eos_id,)
            for j in range(len(full)):
                self.children.setdefault(full[:j], set()).add(full[j])
                self.items_under[full[: j + 1]] += 1
        self.children = {k: sorted(v) for k, v in self.children.items()}
        self.max_length = max(len(t) for t in self.item_of) + 1  # + end of id

    def labels(self, items: np.ndarray) -> torch.Tensor:
        """Teacher-forcing targets: id tokens + end of id, padded with -100 (ignored)."""
        seqs = [self.tokens[i] + (self.eos_id,) for i in items]
        out = torch.full((len(seqs), max(map(len, seqs))), -100, dtype=torch.long)
        for row, s in enumerate(seqs):
            out[row, : len(s)] = torch.tensor(s)
        return out

    def prefix_counts(self, items) -> Counter:
        """How many of the given (distinct) items complete each trie prefix."""
        counts: Counter = Counter()
        for item in np.unique(np.asarray(items, dtype=np.int64)):
            full = self.tokens[item] + (self.eos_id,)
            for j in range(1, len(full) + 1):
                counts[full[:j]] += 1
        return counts
