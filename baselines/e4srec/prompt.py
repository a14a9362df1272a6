"""E4SRec's prompt, and every prefix of a user's items in one pass of a causal LLM.

A prompt is [instruction tokens][projected item IDs][response tokens]; the hidden state of its last
token scores the next item. E4SRec trains on every prefix of a user's sequence, one prompt each.
On a causal decoder the same computations fit in one sequence per user:

    [instruction][x_1 .. x_n][response | copy 1][response | copy 2] ... [response | copy n]

where copy t attends to the instruction, x_1..x_t and its own earlier tokens only, and sits at the
positions it would have in the prompt of prefix t (position ids I + t + r). Each copy's last
hidden state is then exactly the prompt-of-prefix-t's last hidden state (tests/baselines check
this against one pass per prefix), for about (I + n + nR) positions instead of n(I + n/2 + R).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch


@dataclass(frozen=True)
class PrefixLayout:
    """The one-pass layout of a row with n input items, for I instruction and R response tokens
    and item slots of width W in the source [instruction | items | response]."""

    source: np.ndarray      # (T,) index of each position's embedding in the source
    positions: np.ndarray   # (T,) position ids
    allowed: np.ndarray     # (T, T) which keys each query may attend to
    readout: np.ndarray     # (n,) the position whose state predicts the item after prefix t


@lru_cache(maxsize=None)
def prefix_layout(n: int, instruction: int, response: int, width: int) -> PrefixLayout:
    I, R = instruction, response
    body = I + n
    total = body + n * R
    source = np.zeros(total, dtype=np.int64)
    positions = np.zeros(total, dtype=np.int64)
    allowed = np.zeros((total, total), dtype=bool)
    source[:I] = np.arange(I)
    source[I:body] = I + np.arange(n)
    positions[:body] = np.arange(body)
    allowed[:body, :body] = np.tril(np.ones((body, body), dtype=bool))  # instruction and items: causal
    readout = np.zeros(n, dtype=np.int64)
    for t in range(1, n + 1):
        start = body + (t - 1) * R
        for r in range(R):
            q = start + r
            source[q] = I + width + r
            positions[q] = I + t + r
            allowed[q, :I + t] = True          # the instruction and x_1..x_t
            allowed[q, start:q + 1] = True     # its own copy, causally
        readout[t - 1] = start + R - 1 if R else I + t - 1
    return PrefixLayout(source, positions, allowed, readout)


def prefix_batch(lengths: list[int], instruction: int, response: int, width: int, device) -> dict[str, torch.Tensor]:
    """The layouts of a batch of rows, padded to the longest: source indices and position ids
    (B, T), an additive attention mask (B, 1, T, T) and readout positions (B, W; -1 where a row
    has fewer prefixes). A padding position attends only to itself (no row of the mask is empty)."""
    layouts = [prefix_layout(int(n), instruction, response, width) for n in lengths]
    T = max(len(lay.source) for lay in layouts)
    B = len(layouts)
    source = np.zeros((B, T), dtype=np.int64)
    positions = np.zeros((B, T), dtype=np.int64)
    allowed = np.broadcast_to(np.eye(T, dtype=bool), (B, T, T)).copy()
    readout = np.full((B, width), -1, dtype=np.int64)
    for row, lay in enumerate(layouts):
        size = len(lay.source)
        source[row, :size], positions[row, :size] = lay.source, lay.positions
        allowed[row, :size, :size] = lay.allowed
        readout[row, :len(lay.readout)] = lay.readout
    mask = torch.zeros(B, 1, T, T, device=device)
    mask.masked_fill_(~torch.from_numpy(allowed).to(device).unsqueeze(1), torch.finfo(mask.dtype).min)
    as_tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return {"source": as_tensor(source), "positions": as_tensor(positions), "mask": mask,
            "readout": as_tensor(readout)}
