"""What the runner measures beside the test metrics, on the trained model: the protocol controls
(the test users evaluated once more with one evaluation choice flipped), the cold-start
restriction (the users whose test target was held out of training) and the inference settings
(the same model timed and evaluated again under another precision, compiled, on another
attention implementation or thread count)."""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch

from .errors import ConfigError
from .evaluate import EvalResult, evaluate, sample_candidates

# Evaluation choices that a record can measure twice on the same trained model (eval.protocol_controls).
PROTOCOL_CONTROLS = ("history_masking", "candidates")


def control_variant(control: str, settings: dict) -> tuple[str, dict]:
    """One protocol control: its label and the evaluation settings (evaluate()'s keyword arguments)
    with that single choice flipped, everything else as recorded."""
    if control == "history_masking":
        on = not settings["mask_history"]
        return f"history masking {'on' if on else 'off'}", {**settings, "mask_history": on}
    if control == "candidates":
        if settings["candidates"] == "full":
            return f"1+{settings['num_negatives']} sampled candidates", {**settings, "candidates": "sampled"}
        return "full ranking", {**settings, "candidates": "full"}
    raise ValueError(f"unknown protocol control {control!r}; known: {', '.join(PROTOCOL_CONTROLS)}")


def measure_protocol_controls(model, histories, targets, controls, eval_kwargs: dict, users=None) -> dict:
    """The same trained model's test users evaluated once more per control (one evaluation
    choice flipped): {label: {evaluation, metrics}}, or {label: {skipped: why}} where the control
    cannot change this model's numbers. `users`: their indices, for a model that reads user ids."""
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
        result = evaluate(model, histories, targets, **{**kwargs, "progress": False}, users=users)
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
                            metrics=means(cold), settings={**test.settings, "n_users": int(cold.sum())},
                            user_spread=test.user_spread)  # the model's, over every evaluated user
    return info, restricted, users[cold]


INFERENCE_PRECISIONS = ("fp32", "bf16")
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")
SETTING_KEYS = "precision (fp32 | bf16), compile (true | false), attention (eager | sdpa) and threads (a count)"


def check_inference_settings(settings) -> list[dict]:
    """latency.settings as a list of {precision, compile[, attention][, threads]}; anything else
    is a ConfigError. attention and threads appear only where a setting names them, so the
    settings of records made before they existed read the same."""
    if not isinstance(settings, list):
        raise ConfigError(f"latency.settings must be a list of settings with keys {SETTING_KEYS}, got {settings!r}")
    out = []
    for entry in settings:
        entry = entry if isinstance(entry, dict) else {"?": entry}
        threads = entry.get("threads")
        if set(entry) - {"precision", "compile", "attention", "threads"} or \
                entry.get("precision", "fp32") not in INFERENCE_PRECISIONS or \
                not isinstance(entry.get("compile", False), bool) or \
                entry.get("attention", "eager") not in ATTENTION_IMPLEMENTATIONS or \
                (threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1)):
            raise ConfigError(f"latency.settings entry {entry!r}: keys {SETTING_KEYS}")
        setting = {"precision": entry.get("precision", "fp32"), "compile": entry.get("compile", False)}
        setting.update({k: entry[k] for k in ("attention", "threads") if entry.get(k) is not None})
        out.append(setting)
    return out


def setting_label(setting: dict) -> str:
    label = setting["precision"] + (" compiled" if setting["compile"] else " eager")
    if setting.get("attention") in ATTENTION_IMPLEMENTATIONS:
        label += f", {setting['attention']} attention"
    if setting.get("threads"):
        label += f", {setting['threads']} threads"
    return label


def _set_attention(model, implementation: str) -> dict:
    """Every transformers backbone inside the model switched to one attention implementation
    (PreTrainedModel.set_attn_implementation); returns {module path: the implementation it had}
    for those switched, so the caller can switch them back. A backbone that does not support it
    keeps its own (and is not listed)."""
    from transformers import PreTrainedModel

    before = {}
    modules = model.modules() if isinstance(model, torch.nn.Module) else \
        (m for value in vars(model).values() if isinstance(value, torch.nn.Module) for m in value.modules())
    for module in modules:
        if isinstance(module, PreTrainedModel) and id(module) not in before:
            had = module.config._attn_implementation
            try:
                module.set_attn_implementation(implementation)
            except (ValueError, ImportError):
                continue
            before[id(module)] = (module, had)
    return before


@contextlib.contextmanager
def inference_setting(model, setting: dict):
    """The model served under one inference setting: matrix multiplies in bfloat16 (autocast) and
    or its `score` compiled with torch.compile (CUDA graphs through the "reduce-overhead" mode on
    a GPU), its transformers backbones on another attention implementation (eager or PyTorch's
    scaled_dot_product_attention), torch's CPU threads set. Compiling applies to scoring models; a
    generative model's beam search is not compiled. Yields what was applied; everything is
    restored afterwards."""
    device = torch.device(getattr(model, "device", "cpu"))
    applied = {"precision": setting["precision"], "compile": False}
    original, switched, threads = None, {}, torch.get_num_threads()
    if setting.get("attention"):
        switched = _set_attention(model, setting["attention"])
        applied["attention"] = setting["attention"] if switched else "not supported by the model's backbones"
    if setting.get("threads"):
        torch.set_num_threads(setting["threads"])
        applied["threads"] = setting["threads"]
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
        for module, had in switched.values():
            module.set_attn_implementation(had)
        torch.set_num_threads(threads)


def measure_inference_settings(model, histories, targets, settings: list[dict], eval_kwargs: dict,
                               latency_kwargs: dict, users=None, timed=None) -> list[dict]:
    """Each inference setting: the latency (measure_latency, as the published one) and the test
    metrics under it (a faster setting that ranks differently shows it), over the same users as the
    record's metrics. `users`: those users' indices, for a model that reads user ids. `timed`:
    (histories, users) the timer serves where they differ from the evaluated ones (cold start
    restricts the metrics to some users; every evaluated user is timed, as published).
    A setting that fails here (torch.compile without a working compiler, an operator bf16 lacks)
    is recorded with its error and warned about, and the others go on: the model's training and
    its published measurement are already done, and one optional setting must not discard them."""
    from .latency import measure_latency

    timed_histories, timed_users = timed if timed is not None else (histories, users)
    measured = []
    for setting in settings:
        try:
            with inference_setting(model, setting) as applied:
                latency = measure_latency(model, timed_histories, **latency_kwargs, users=timed_users)
                result = evaluate(model, histories, targets, **{**eval_kwargs, "progress": False}, users=users)
        except Exception as err:  # noqa: BLE001 - any failure of the setting is its result
            error = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            warnings.warn(f"inference setting {setting_label(setting)} failed ({error}); recorded as failed",
                          RuntimeWarning, stacklevel=2)
            measured.append({"setting": setting, "label": setting_label(setting), "error": error})
            continue
        measured.append({"setting": applied, "label": setting_label(applied), "latency": latency,
                         "metrics": result.metrics})
    return measured


def measure_timing(model, split, cfg: dict, eval_kwargs: dict, users, timed_users) -> tuple[dict | None, list[dict]]:
    """The latency of the trained model as published (eager, the run's precision) and under each
    of the run's inference settings: (latency, settings), or (None, []) where the run times
    nothing. `users`: those whose metrics the record holds (a cold-start run's restricted ones);
    `timed_users`: every evaluated user, whom the timer serves. The runner measures with it after
    training, and `--retime` (benchmarks/kept_models.py) again on a kept model."""
    from .latency import measure_latency

    lat = cfg["latency"]
    if not lat["enabled"]:
        return None, []
    timed_histories = [split.test_histories[u] for u in timed_users]
    latency_kwargs = dict(batch_size=lat["batch_size"], top_k=lat["top_k"], warmup_batches=lat["warmup_batches"],
                          max_batches=lat["max_batches"], mask_history=eval_kwargs["mask_history"])
    latency = measure_latency(model, timed_histories, **latency_kwargs, users=timed_users)  # as published: eager
    settings = measure_inference_settings(
        model, [split.test_histories[u] for u in users], split.test_targets[users],
        check_inference_settings(lat.get("settings") or []), eval_kwargs, latency_kwargs, users=users,
        timed=(timed_histories, timed_users))
    return latency, settings
