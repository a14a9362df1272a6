"""The one evaluator every model shares: full ranking (or sampled candidates), Recall@K, NDCG@K.

Every model is evaluated by exactly the same code so that differences in the numbers come from the
models, not from how each model's own repository happened to compute its metrics. Conventions:

- Column 0 of a score matrix is padding and is never a candidate.
- With `mask_history`, items the user has already interacted with are removed from the ranking,
  except the target itself, which is always ranked (a user may re-interact with an item).
- Ties count against the target: rank = 1 + number of other candidates scoring >= the target. A
  model that gives every item the same score therefore ranks the target last and scores 0, rather
  than being rewarded by whatever order a sort happens to leave equal scores in.
- Each user has exactly one target, so Recall@K equals HR@K and NDCG@K = 1 / log2(rank + 1).
- Sampled candidates and a top-k model: the model is handed each user's candidates
  (`recommend(batch, k, candidates=...)`) and must list only them, so it ranks the candidates as
  a scoring model does. Filtering a catalogue-wide list to the candidates instead would leave a
  generative model only the hits of its full ranking.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = [
    "EvalResult",
    "evaluate",
    "evaluation_settings",
    "history_mask",
    "metrics_from_ranks",
    "ranks_from_scores",
    "ranks_from_topk",
    "sample_candidates",
    "score_spread",
    "top_k_items",
    "user_arguments",
    "user_subset",
    "validation_users",
]


# ----------------------------------------------------------------------------- building blocks


def history_mask(histories: Sequence[np.ndarray], n_items: int, device) -> torch.Tensor:
    """Bool (B, n_items + 1): True at the items in each user's history."""
    mask = torch.zeros((len(histories), n_items + 1), dtype=torch.bool, device=device)
    lengths = [len(h) for h in histories]
    if sum(lengths) == 0:
        return mask
    # One scatter for the whole batch instead of a Python loop of small device writes.
    cols = np.concatenate([np.asarray(h, dtype=np.int64).reshape(-1) for h in histories])
    if cols.min() < 0 or cols.max() > n_items:
        raise ValueError(f"history contains item ids outside 0..{n_items}")
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    mask[torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)] = True
    # Padding may appear in histories (0-padded arrays); it is not an item.
    mask[:, 0] = False
    return mask


def top_k_items(scores: torch.Tensor, histories: Sequence[np.ndarray], n_items: int, k: int,
                mask_history: bool = True) -> torch.Tensor:
    """A scoring model's top-k item ids (B, k), best first, from its (B, n_items + 1) scores (column
    0 is padding, never listed); history items never listed when `mask_history`."""
    scores = scores[:, 1:]  # drop padding by slicing: no copy
    if mask_history:
        scores = scores.masked_fill(history_mask(histories, n_items, scores.device)[:, 1:], float("-inf"))
    return torch.topk(scores, k, dim=1).indices + 1


def score_spread(scores: torch.Tensor) -> tuple[float, float] | None:
    """(spread of an item's score across users, spread of a user's scores across items) over one
    batch's score matrix (padding column dropped): each the standard deviation along that axis,
    averaged over the other. Their ratio near 0 means one ranking for every user: MostPopular by
    design, a trained model whose representations collapsed by accident. None for fewer than two
    users or items, or any non-finite score."""
    items = scores[:, 1:].float()
    if min(items.shape) < 2 or not bool(torch.isfinite(items).all()):
        return None
    return float(items.std(0).mean()), float(items.std(1).mean())


def _as_targets(targets, n: int, n_items: int, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(targets.cpu() if torch.is_tensor(targets) else targets),
                        dtype=torch.long).reshape(-1)
    if t.numel() != n:
        raise ValueError(f"{t.numel()} targets for {n} users")
    if n and (int(t.min()) < 1 or int(t.max()) > n_items):
        raise ValueError(f"targets must be item ids in 1..{n_items}")
    return t.to(device)


def _rank_against_target(scores: torch.Tensor, target_scores: torch.Tensor,
                         candidate: torch.Tensor) -> torch.Tensor:
    """Rank of the target per row; `candidate` must include the target's own column.

    Counting candidates with score >= the target's includes the target itself, which supplies the
    '1 +', and puts every tie ahead of the target.
    """
    nan_rows = (torch.isnan(scores) & candidate).any(dim=1)
    if bool(nan_rows.any()):
        bad = torch.nonzero(nan_rows).reshape(-1)[:5].tolist()
        raise ValueError(
            f"model returned NaN scores for {int(nan_rows.sum())} user(s) in this batch "
            f"(batch rows {bad}{'...' if int(nan_rows.sum()) > 5 else ''}); "
            "a NaN cannot be ranked, so the model output must be fixed"
        )
    return ((scores >= target_scores) & candidate).sum(dim=1)


def ranks_from_scores(scores: torch.Tensor, targets, exclude: torch.Tensor | None = None) -> np.ndarray:
    """Full-ranking rank (1 = best) of each target among items 1..n_items, as float64 numpy (B,).

    `exclude` (bool, same shape as `scores`) removes items from the ranking, e.g. the history
    mask; the target itself is never excluded.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (batch, n_items + 1), got shape {tuple(scores.shape)}")
    n_rows, width = scores.shape
    t = _as_targets(targets, n_rows, width - 1, scores.device)
    rows = torch.arange(n_rows, device=scores.device)

    candidate = torch.ones_like(scores, dtype=torch.bool)
    candidate[:, 0] = False
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude mask shape {tuple(exclude.shape)} != scores shape "
                             f"{tuple(scores.shape)}")
        candidate &= ~exclude.to(device=scores.device, dtype=torch.bool)
    candidate[rows, t] = True

    target_scores = scores[rows, t].unsqueeze(1)
    ranks = _rank_against_target(scores, target_scores, candidate)
    return ranks.cpu().numpy().astype(np.float64)


def ranks_from_topk(topk_ids, targets, keep=None) -> np.ndarray:
    """Rank = 1-based position of the target in each list, np.inf when absent; float64 (B,).

    `keep` (bool, same shape) optionally marks the entries that count as positions; dropped
    entries neither match nor push the target down (used to drop history items, duplicates and
    non-candidates, see `evaluate`).
    """
    ids = torch.as_tensor(topk_ids)
    if ids.dim() != 2:
        raise ValueError(f"top-k ids must be (batch, k), got shape {tuple(ids.shape)}")
    t = torch.as_tensor(np.asarray(targets.cpu() if torch.is_tensor(targets) else targets),
                        dtype=torch.long).reshape(-1, 1).to(ids.device)
    if t.shape[0] != ids.shape[0]:
        raise ValueError(f"{t.shape[0]} targets for {ids.shape[0]} lists")
    kept = torch.ones_like(ids, dtype=torch.bool) if keep is None else torch.as_tensor(keep).to(ids.device)
    hit = (ids.long() == t) & kept
    found = hit.any(dim=1)
    first = hit.to(torch.int8).argmax(dim=1)  # argmax returns the first maximum
    # Position among kept entries; the target's own entry is kept, so this is >= 1 when found.
    positions = kept.long().cumsum(dim=1).gather(1, first.unsqueeze(1)).squeeze(1)
    ranks = positions.to(torch.float64).cpu().numpy()
    ranks[~found.cpu().numpy()] = np.inf
    return ranks


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user Recall@K and NDCG@K for one target per user."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    # 1/log2(inf + 1) is 0, so absent targets need no special case.
    gain = 1.0 / np.log2(ranks + 1.0)
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, gain, 0.0)
    return out


def sample_candidates(histories: Sequence[np.ndarray], targets, n_items: int,
                      num_negatives: int = 99, seed: int = 2024,
                      user_index: Sequence[int] | None = None) -> np.ndarray:
    """Candidates for sampled evaluation, int64 (U, 1 + num_negatives): target, then negatives.

    Negatives are drawn uniformly without replacement from items 1..n_items outside the user's
    history and other than the target. Each user gets their own generator seeded by
    (seed, user index), so a user's negatives do not depend on batching or on which other users
    are evaluated. `user_index` gives the users' global indices (default 0..U-1).
    """
    targets = _as_targets(targets, len(histories), n_items, "cpu").numpy()
    if user_index is None:
        user_index = range(len(histories))
    user_index = list(user_index)
    if len(user_index) != len(histories):
        raise ValueError("user_index must have one entry per user")
    if num_negatives < 0:
        raise ValueError("num_negatives must be >= 0")

    out = np.empty((len(histories), 1 + num_negatives), dtype=np.int64)
    out[:, 0] = targets
    for row, (hist, target, user) in enumerate(zip(histories, targets, user_index)):
        forbidden = np.unique(np.append(np.asarray(hist, dtype=np.int64), target))
        forbidden = forbidden[(forbidden >= 1) & (forbidden <= n_items)]
        n_eligible = n_items - len(forbidden)
        if n_eligible < num_negatives:
            raise ValueError(
                f"user {user} has only {n_eligible} items outside their history and target, "
                f"fewer than num_negatives={num_negatives}"
            )
        rng = np.random.default_rng([int(seed), int(user)])
        if n_eligible <= 4 * num_negatives:
            # Dense case: rejection would waste most draws, so list the eligible items.
            eligible = np.setdiff1d(np.arange(1, n_items + 1), forbidden, assume_unique=True)
            out[row, 1:] = rng.choice(eligible, size=num_negatives, replace=False)
            continue
        # Sparse case: draw uniformly, drop forbidden items and repeats in draw order; the
        # accepted sequence is a uniform sample without replacement from the eligible items.
        picked = np.empty(0, dtype=np.int64)
        while len(picked) < num_negatives:
            draw = rng.integers(1, n_items + 1, size=2 * (num_negatives - len(picked)) + 16)
            merged = np.concatenate([picked, draw[~np.isin(draw, forbidden)]])
            _, first = np.unique(merged, return_index=True)
            picked = merged[np.sort(first)]
        out[row, 1:] = picked[:num_negatives]
    return out


# ----------------------------------------------------------------------------- the evaluator


def user_arguments(model, users, count: int) -> dict:
    """The keyword arguments `prepare` and `input_length` take beside `count` histories: the users'
    indices (`users=`, int64, one per history; where none are given the histories are taken to be
    users 0..count-1, as `sample_candidates` takes them) for a model that reads user ids
    (`reads_user_ids`), nothing for any other model, which is called as it always was."""
    if not getattr(model, "reads_user_ids", False):
        return {}
    users = np.arange(count) if users is None else np.asarray(users, dtype=np.int64)
    if len(users) != count:
        raise ValueError(f"{len(users)} users for {count} histories")
    return {"users": users}


def user_subset(n_users: int, max_users: int | None, seed: int) -> np.ndarray:
    """All users, or a fixed seeded subset (sorted) when eval.max_users is set. The same subset
    serves validation during training and the final test, so a costly model (beam search on a
    CPU) is judged on the same users throughout."""
    if not max_users or max_users >= n_users:
        return np.arange(n_users)
    return np.sort(np.random.default_rng(seed).choice(n_users, size=int(max_users), replace=False))


def evaluation_settings(eval_cfg: dict) -> dict:
    """A run's `eval` config as `evaluate()`'s keyword arguments plus the user subset's
    (`max_users`, `user_subset_seed`): the one translation, for the runner's test evaluation and
    the trainer's validation alike. Keys the config leaves out take `defaults.yaml`'s values."""
    from .config import defaults

    cfg = {**defaults()["eval"], **eval_cfg}
    return {"ks": list(cfg["ks"]), "mask_history": bool(cfg["mask_history"]), "candidates": cfg["candidates"],
            "num_negatives": int(cfg["num_negatives"]), "negative_seed": int(cfg["negative_seed"]),
            "batch_size": int(cfg["batch_size"]), "max_users": cfg["max_users"],
            "user_subset_seed": int(cfg["user_subset_seed"])}


def validation_users(n_users: int, eval_cfg: dict) -> np.ndarray:
    """The users validation reads (early stopping, the record's valid_metrics): the test's users
    (eval.max_users), or with eval.valid_max_users a fixed seeded subset of their own, so that a
    model whose test must cover every user (beam search on a CPU) validates on fewer."""
    from .config import defaults

    cfg = {**defaults()["eval"], **eval_cfg}
    size = cfg["valid_max_users"] if cfg["valid_max_users"] is not None else cfg["max_users"]
    if cfg["valid_max_users"] is not None and int(cfg["valid_max_users"]) < 1:
        raise ValueError(f"eval.valid_max_users must be >= 1 or null, got {cfg['valid_max_users']!r}")
    return user_subset(n_users, size, int(cfg["user_subset_seed"]))


@dataclass
class EvalResult:
    ranks: np.ndarray  # float64 per user; np.inf when a top-k model did not list the target
    per_user: dict[str, np.ndarray]
    metrics: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)
    # a scoring model's score spread across users relative to across items (score_spread, summed
    # over batches by users); None for a top-k model or sampled candidates
    user_spread: float | None = None


def _topk_keep(ids: torch.Tensor, targets: torch.Tensor, n_items: int,
               exclude: torch.Tensor | None) -> torch.Tensor:
    """Entries of a generated list that count as positions: valid, first occurrences, and (when
    `exclude` is given) not excluded unless they are the target.

    A list's first occurrences of valid items are the model's implied ranking of items, which is
    what a score-based model's rank measures too.
    """
    valid = (ids >= 1) & (ids <= n_items)
    k = ids.shape[1]
    earlier = torch.ones(k, k, dtype=torch.bool, device=ids.device).tril(diagonal=-1)
    repeat = ((ids.unsqueeze(2) == ids.unsqueeze(1)) & earlier).any(dim=2)
    keep = valid & ~repeat
    if exclude is not None:
        excluded = exclude.gather(1, ids.clamp(0, n_items)) & (ids != targets.unsqueeze(1))
        keep &= ~excluded
    return keep


def evaluate(model, histories: Sequence[np.ndarray], targets, *, ks: Sequence[int] = (10, 20),
             mask_history: bool = True, candidates: str = "full", num_negatives: int = 99,
             negative_seed: int = 2024, batch_size: int = 256, progress: bool = False,
             users: Sequence[int] | None = None) -> EvalResult:
    """Rank each user's target with `model` and compute Recall@K / NDCG@K.

    `users`: the users' indices in the split, one per history (default 0..U-1), handed to a model
    that reads user ids (`user_arguments`); a model that does not read them never sees them.

    candidates="full" ranks the target among all items (history removed iff `mask_history`);
    candidates="sampled" ranks it among itself and `num_negatives` sampled non-history items
    (so `mask_history` has no further effect there). Top-k models are ranked by list position
    among distinct valid items, dropping history items (iff `mask_history`) or non-candidates.
    """
    if candidates not in ("full", "sampled"):
        raise ValueError(f"candidates must be 'full' or 'sampled', got {candidates!r}")
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    output = getattr(model, "output", "scores")
    if output not in ("scores", "topk"):
        raise ValueError(f"model.output must be 'scores' or 'topk', got {output!r}")
    n_users = len(histories)
    if n_users == 0:
        raise ValueError("no users to evaluate")
    n_items = int(model.n_items)
    targets = _as_targets(targets, n_users, n_items, "cpu").numpy()
    user_ids = user_arguments(model, users, n_users).get("users")

    # Sampled up front so a bad setting fails before any model time is spent.
    cand = (sample_candidates(histories, targets, n_items, num_negatives, negative_seed)
            if candidates == "sampled" else None)
    if cand is not None and output == "topk" and "candidates" not in inspect.signature(model.recommend).parameters:
        raise ValueError(f"{type(model).__name__}.recommend takes no candidates=: a top-k model must list "
                         "only each user's candidates to be evaluated on sampled candidates")

    ranks = np.empty(n_users, dtype=np.float64)
    spread_sums = np.zeros(2)  # user-weighted sums of score_spread's two numbers, over the batches
    starts = range(0, n_users, batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc="evaluate", unit="batch", disable=not progress):
            end = min(start + batch_size, n_users)
            batch_hist = histories[start:end]
            batch_targets = targets[start:end]
            batch = model.prepare(batch_hist, **({} if user_ids is None else {"users": user_ids[start:end]}))
            if output == "scores":
                scores = model.score(batch)
                if tuple(scores.shape) != (end - start, n_items + 1):
                    raise ValueError(f"{type(model).__name__}.score returned shape "
                                     f"{tuple(scores.shape)}, expected ({end - start}, {n_items + 1})")
                if cand is None:
                    exclude = history_mask(batch_hist, n_items, scores.device) if mask_history else None
                    ranks[start:end] = ranks_from_scores(scores, batch_targets, exclude)
                    spread = score_spread(scores)
                    if spread is not None:
                        spread_sums += (end - start) * np.asarray(spread)
                else:
                    cand_ids = torch.from_numpy(cand[start:end]).to(scores.device)
                    cand_scores = scores.gather(1, cand_ids)  # target in column 0
                    r = _rank_against_target(cand_scores, cand_scores[:, :1],
                                             torch.ones_like(cand_scores, dtype=torch.bool))
                    ranks[start:end] = r.cpu().numpy()
            else:
                if cand is None:
                    ids = torch.as_tensor(model.recommend(batch, k=max(ks))).long()
                    exclude = history_mask(batch_hist, n_items, ids.device) if mask_history else None
                else:
                    cand_ids = torch.from_numpy(cand[start:end])
                    ids = torch.as_tensor(model.recommend(batch, k=max(ks), candidates=cand_ids)).long()
                    allowed = torch.zeros((end - start, n_items + 1), dtype=torch.bool, device=ids.device)
                    allowed.scatter_(1, cand_ids.to(ids.device), True)
                    outside = (ids > 0) & ~allowed.gather(1, ids.clamp(0, n_items))
                    if outside.any():
                        raise ValueError(f"{type(model).__name__}.recommend listed items outside the "
                                         "candidates it was given")
                    exclude = ~allowed
                t = torch.from_numpy(batch_targets).to(ids.device)
                keep = _topk_keep(ids, t, n_items, exclude)
                ranks[start:end] = ranks_from_topk(ids, t, keep)

    per_user = metrics_from_ranks(ranks, ks)
    metrics = {name: float(values.mean()) for name, values in per_user.items()}
    settings = {
        "ks": list(ks),
        "mask_history": bool(mask_history),
        "candidates": candidates,
        "num_negatives": int(num_negatives) if candidates == "sampled" else None,
        "negative_seed": int(negative_seed) if candidates == "sampled" else None,
        "n_users": n_users,
    }
    if output == "topk" and candidates == "sampled":  # records made before this rule filtered full lists
        settings["topk_lists"] = TOPK_SAMPLED_RULE
    user_spread = float(spread_sums[0] / spread_sums[1]) if spread_sums[1] > 0 else None
    return EvalResult(ranks=ranks, per_user=per_user, metrics=metrics, settings=settings,
                      user_spread=user_spread)


TOPK_SAMPLED_RULE = "constrained to each user's candidates"
