"""What the runner measures beside the test metrics, on the trained model: the protocol controls
(the test users evaluated once more with one evaluation choice flipped), the cold-start
restriction (the users whose test target was held out of training) and the inference settings
(the same model timed and evaluated again under another precision or compiled)."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

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


INFERENCE_PRECISIONS = ("fp32", "bf16")


def check_inference_settings(settings) -> list[dict]:
    """latency.settings as a list of {precision, compile}; anything else is a ConfigError."""
    if not isinstance(settings, list):
        raise ConfigError(f"latency.settings must be a list of {{precision, compile}}, got {settings!r}")
    out = []
    for entry in settings:
        unknown = set(entry or {}) - {"precision", "compile"} if isinstance(entry, dict) else {"?"}
        if unknown or entry.get("precision", "fp32") not in INFERENCE_PRECISIONS or \
                not isinstance(entry.get("compile", False), bool):
            raise ConfigError(f"latency.settings entry {entry!r}: keys precision (fp32 | bf16) and compile (true | false)")
        out.append({"precision": entry.get("precision", "fp32"), "compile": entry.get("compile", False)})
    return out


def setting_label(setting: dict) -> str:
    return setting["precision"] + (" compiled" if setting["compile"] else " eager")


@contextlib.contextmanager
def inference_setting(model, setting: dict):
    """The model served under one inference setting: matrix multiplies in bfloat16 (autocast) and
    or its `score` compiled with torch.compile (CUDA graphs through the "reduce-overhead" mode on
    a GPU). Compiling applies to scoring models; a generative model's beam search is not compiled
    (what was applied is returned)."""
    device = torch.device(getattr(model, "device", "cpu"))
    applied = {"precision": setting["precision"], "compile": False}
    original = None
    if setting["compile"] and getattr(model, "output", "scores") == "scores":
        original = model.score
        model.score = torch.compile(original, mode="reduce-overhead" if device.type == "cuda" else "default")
        applied["compile"] = True
    precision = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if setting["precision"] == "bf16"
                 else contextlib.nullcontext())
    try:
        with precision:
            yield applied
    finally:
        if original is not None:
            del model.score  # the class's method again


def measure_inference_settings(model, histories, targets, settings: list[dict], eval_kwargs: dict,
                               latency_kwargs: dict) -> list[dict]:
    """Each inference setting: the latency (measure_latency, as the published one) and the test
    metrics under it (a faster setting that ranks differently shows it)."""
    from .latency import measure_latency

    measured = []
    for setting in settings:
        with inference_setting(model, setting) as applied:
            latency = measure_latency(model, histories, **latency_kwargs)
            result = evaluate(model, histories, targets, **{**eval_kwargs, "progress": False})
        measured.append({"setting": applied, "label": setting_label(applied), "latency": latency,
                         "metrics": result.metrics})
    return measured
