"""The one small interface every model in the suite implements, and the registry of models.

The runner, evaluator and latency timer only ever talk to a model through these methods, so they
never need to know what kind of model they hold:

- `fit(split, trainer)`: train on the training split, validating on the validation split.
- `prepare(histories)`: turn a list of item-id histories into a batch on the model's device.
  Not timed: it stands for the data loader that has a batch ready before the model is called.
- `score(batch)`: a (batch, n_items + 1) tensor of scores over every item (column 0 is padding
  and is ignored), for models that score all items in one step.
- `recommend(batch, k)`: a (batch, k) tensor of item ids, best first, for generative models that
  produce a ranked list (beam search). Such models set `output = "topk"`.
- `input_length(histories)`: tokens or vectors the model reads per user (Table 5).

Models are registered by name with `@register("name")`; `build_model` resolves the model's own
hyper-parameters (its `defaults`, overridden by the config's `model` section; unknown keys are
errors) and constructs it.
"""
from __future__ import annotations

import importlib
from typing import Any, ClassVar

import numpy as np
import torch

from .config import ConfigError

# name -> "module:Class". Imported lazily so that a run only pays for the libraries it uses.
MODEL_REGISTRY: dict[str, str] = {
    "most_popular": "baselines.most_popular:MostPopular",
    "lite_llm4rec": "lite_llm4rec.model:LiteLLM4Rec",
    "recbole": "baselines.recbole_models:RecBoleModel",
    "e4srec": "baselines.e4srec:E4SRec",
    "hllm": "baselines.hllm:HLLM",
    "p5": "baselines.generative:GenerativeRecommender",
    "pod": "baselines.generative:POD",
    "lightlm": "baselines.generative:LightLM",
    "p5_encoder_only": "baselines.generative:PromptEncoderRecommender",
}


class SkipRun(Exception):
    """Raised by a model that cannot run here (e.g. its weights are not available); the runner
    records the run as skipped with the reason, never silently replacing the model."""


def register(name: str):
    """Class decorator for models defined outside the built-in registry (plugins, tests)."""

    def wrap(cls):
        MODEL_REGISTRY[name] = f"{cls.__module__}:{cls.__qualname__}"
        cls.registry_name = name
        return cls

    return wrap


class Recommender:
    """Base class: override `score` (output "scores") or `recommend` (output "topk")."""

    output: ClassVar[str] = "scores"
    # True for a model whose own decoding never lists the user's history items (so the history
    # masking control cannot change its numbers)
    never_lists_history: ClassVar[bool] = False
    defaults: ClassVar[dict] = {}  # the model's hyper-parameters and their default values

    def __init__(self, params: dict, dataset, device: torch.device):
        self.params = params
        self.dataset = dataset
        self.n_items = dataset.n_items
        self.device = device

    def require_choice(self, key: str, choices: tuple) -> None:
        """A model setting outside its choices fails at construction, before any work."""
        if self.params[key] not in choices:
            raise ConfigError(f"model.{key} must be one of {', '.join(map(repr, choices))}, "
                              f"got {self.params[key]!r}")

    def fit(self, split, trainer) -> dict:
        """Train; return a dict for the record (epochs, best_epoch, seconds, history...)."""
        return {"epochs": 0}

    def prepare(self, histories: list[np.ndarray]) -> Any:
        return histories

    def score(self, batch) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not score all items")

    def recommend(self, batch, k: int, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """(B, k) item ids, best first (0 pads a short list). With `candidates` (B, C item ids,
        sampled evaluation) the list may hold only the user's own candidates."""
        raise NotImplementedError(f"{type(self).__name__} does not generate top-k lists")

    def input_length(self, histories: list[np.ndarray]) -> np.ndarray:
        return np.array([len(h) for h in histories], dtype=np.float64)

    def describe(self) -> dict:
        """Extra facts for the record (parameter counts, decoding settings...)."""
        return {}


def model_class(name: str) -> type[Recommender]:
    if name not in MODEL_REGISTRY:
        known = ", ".join(sorted(MODEL_REGISTRY))
        raise ConfigError(f"unknown model {name!r}; known models: {known}")
    module_name, class_name = MODEL_REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls


def resolve_model_params(model_section: dict) -> dict:
    """The model section with the model's defaults filled in; unknown keys are errors."""
    name = model_section.get("name")
    cls = model_class(name)
    params = dict(cls.defaults)
    unknown = sorted(set(model_section) - set(params) - {"name"})
    if unknown:
        raise ConfigError(
            f"unknown key(s) for model {name!r}: {', '.join('model.' + u for u in unknown)}; "
            f"known: {', '.join(sorted(params)) or '(none)'}"
        )
    params.update({k: v for k, v in model_section.items() if k != "name"})
    return {"name": name, **params}


def build_model(model_section: dict, dataset, device: torch.device) -> Recommender:
    params = resolve_model_params(model_section)
    cls = model_class(params["name"])
    return cls({k: v for k, v in params.items() if k != "name"}, dataset, device)
