"""What the runner measures beside the test metrics, on the trained model: the protocol controls
(the test users evaluated once more with one evaluation choice flipped) and the cold-start
restriction (the users whose test target was held out of training)."""
from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .evaluate import EvalResult, control_variant, evaluate, sample_candidates


def measure_protocol_controls(model, histories, targets, controls, eval_kwargs: dict) -> dict:
    """The same trained model's test users evaluated once more per control (one evaluation
    choice flipped): {label: {evaluation, metrics}}, or {label: {skipped: why}} where the control
    cannot change this model's numbers."""
    variants = {}
    for control in controls or []:
        label, kwargs = control_variant(control, eval_kwargs)
        if control == "history_masking" and eval_kwargs["candidates"] == "sampled":
            variants[label] = {"skipped": "sampled candidates never include history items"}
            continue
        if control == "history_masking" and model.never_lists_history:
            variants[label] = {"skipped": f"{type(model).__name__}'s decoding never lists history items"}
            continue
        if kwargs["candidates"] == "sampled":
            try:  # a catalogue too small for the negatives: say so, do not fail the finished run
                sample_candidates(histories, targets, model.n_items, kwargs["num_negatives"], kwargs["negative_seed"])
            except ValueError as err:
                variants[label] = {"skipped": str(err)}
                continue
        result = evaluate(model, histories, targets, **{**kwargs, "progress": False})
        variants[label] = {"evaluation": result.settings, "metrics": result.metrics}
    return variants


def cold_start_result(split, users: np.ndarray, test: EvalResult) -> tuple[dict, EvalResult, np.ndarray]:
    """The cold-start measurement: the test result restricted to the evaluated users whose test
    target is a held-out item (the record's metrics), with the held-out items and the metrics of
    all evaluated users and of the other users beside it (from the same per-user values)."""
    cold = np.isin(split.test_targets[users], split.held_out_items)
    if not cold.any():
        raise ConfigError(f"no evaluated user's test target is one of the {len(split.held_out_items)} "
                          "held-out items: raise split.holdout_items or evaluate more users")
    means = lambda rows: {k: float(v[rows].mean()) for k, v in test.per_user.items()} if rows.any() else None  # noqa: E731
    info = {
        "users": f"{int(cold.sum())} of {len(users)} evaluated users: those whose test target is one of "
                 f"the {len(split.held_out_items)} items held out of training (cold start)",
        "n_users": int(cold.sum()),
        "held_out_items": split.held_out_items.tolist(),
        "metrics_all_users": test.metrics,
        "metrics_other_users": means(~cold),
    }
    restricted = EvalResult(ranks=test.ranks[cold], per_user={k: v[cold] for k, v in test.per_user.items()},
                            metrics=means(cold), settings={**test.settings, "n_users": int(cold.sum())})
    return info, restricted, users[cold]
