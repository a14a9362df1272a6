"""The one small interface every model in the suite implements, and the registry of models.

The runner, evaluator and latency timer only ever talk to a model through these methods, so they
never need to know what kind of model they hold:

- `fit(split, trainer)`: train on the training split, validating on the validation split.
- `prepare(histories)`: turn a list of item-id histories into a batch on the model's device.
  Not timed: it stands for the data loader that has a batch ready before the model is called.
  A model that reads user ids (P5's and POD's prompts write "user_{id}") sets `reads_user_ids`:
  the evaluator, the latency timer and the trainer's validation then call
  `prepare(histories, users=...)` and `input_length(histories, users=...)` with the users'
  indices in the split (one per history, in order); every other model is called as above.
- `score(batch)`: a (batch, n_items + 1) tensor of scores over every item (column 0 is padding
  and is ignored), for models that score all items in one step.
- `recommend(batch, k)`: a (batch, k) tensor of item ids, best first, for generative models that
  produce a ranked list (beam search). Such models set `output = "topk"`.
- `input_length(histories)`: tokens or vectors the model reads per user (Table 5).

Models are registered by name with `@register("name")`, or named by their path: `model.name:
mypkg.models:MyRecommender` imports that class (a subclass of `Recommender`) as Python imports
from the current folder, so a model of one's own needs no change to the suite. Each model
declares its hyper-parameters as a dataclass (`Params`, a subclass of `ModelParams`: typed fields
with their defaults, checked once in `validate`; a plain `defaults` dict also works);
`resolve_model_params` fills a config's `model` section with them (unknown keys are errors) and
`build_model` constructs the model with the validated object. `model_section` turns what a user
types after `--model` (a registered name, a RecBole model's own name, a path) into that section.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .errors import ConfigError, SkipRun

if TYPE_CHECKING:
    import torch

__all__ = ["ConfigError", "MODEL_FAMILIES", "MODEL_REGISTRY", "ModelParams", "Recommender", "SkipRun",
           "build_model", "model_class", "model_section", "register", "resolve_model_params"]

# name -> "module:Class". Imported lazily so that a run only pays for the libraries it uses.
MODEL_REGISTRY: dict[str, str] = {
    "most_popular": "baselines.most_popular:MostPopular",
    "lite_llm4rec": "lite_llm4rec.model:LiteLLM4Rec",
    "recbole": "baselines.recbole:RecBoleModel",
    "e4srec": "baselines.e4srec:E4SRec",
    "hllm": "baselines.hllm:HLLM",
    "llm2rec": "baselines.llm2rec:LLM2Rec",
    "p5": "baselines.generative:P5",
    "pod": "baselines.generative:POD",
    "lightlm": "baselines.generative:LightLM",
    "p5_encoder_only": "baselines.generative:P5WithoutDecoder",
}
# Registered models that run several published models, each known by its own name (RecBole's
# GRU4Rec, SASRec, ...): registry name -> the parameter that selects one. The class lists the
# names it runs in `members`, so `--model SASRec` needs no table of its own here.
MODEL_FAMILIES: dict[str, str] = {"recbole": "recbole_model"}


@dataclasses.dataclass
class ModelParams:
    """A model's hyper-parameters: subclasses are dataclasses whose fields (with defaults) are the
    keys a config may set under `model:`; `validate` checks them once, at construction."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for a value outside what the model accepts."""

    def choice(self, key: str, choices: tuple) -> None:
        if getattr(self, key) not in choices:
            raise ConfigError(f"model.{key} must be one of {', '.join(map(repr, choices))}, "
                              f"got {getattr(self, key)!r}")

    def positive_int(self, *keys: str, allow_none: bool = False) -> None:
        for key in keys:
            value = getattr(self, key)
            if value is None and allow_none:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{key} must be a positive integer, got {value!r}")

    def fraction(self, *keys: str) -> None:
        for key in keys:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"model.{key} must be a number in [0, 1), got {value!r}")

    @classmethod
    def defaults(cls) -> dict:
        """Every field's default value (unvalidated: a required choice may default to None)."""
        return {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                for f in dataclasses.fields(cls)}

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def unread_keys(cls, section: dict) -> set[str]:
        """The keys a resolved model section of these settings never reads (a second stage's
        settings where no second stage runs): their values do not make it another run."""
        return set()

    def __getitem__(self, key: str):  # dict-style reading, for models written against a dict
        return getattr(self, key)


def params_class(cls) -> type[ModelParams]:
    """A model class's Params; a class that declares only a `defaults` dict (a plugin written
    before Params existed) gets an untyped dataclass of those keys."""
    for klass in cls.__mro__:  # the nearest class that declares either
        if "Params" in klass.__dict__:
            return klass.Params
        legacy = klass.__dict__.get("defaults")
        if legacy is not None:
            fields = [(k, Any, dataclasses.field(default_factory=lambda v=v: v)) for k, v in legacy.items()]
            made = dataclasses.make_dataclass(f"{klass.__name__}Params", fields, bases=(ModelParams,))
            # found where it is kept, so that a trained model pickles (--keep-models)
            made.__module__, made.__qualname__ = klass.__module__, f"{klass.__qualname__}.Params"
            klass.Params = made
            return klass.Params
    return ModelParams


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
    members: ClassVar[tuple[str, ...]] = ()  # a family's published models by name (MODEL_FAMILIES)
    # True for a model whose own decoding never lists the user's history items (so the history
    # masking control cannot change its numbers)
    never_lists_history: ClassVar[bool] = False
    # True for a model whose input holds the user's id: prepare and input_length then receive the
    # users' indices (`users=`, see the module docstring); a model may set it per instance in build
    reads_user_ids: ClassVar[bool] = False
    Params: ClassVar[type[ModelParams]] = ModelParams  # the model's hyper-parameters

    def __init__(self, params: ModelParams, dataset, device: torch.device):
        self.params = params
        self.dataset = dataset
        self.n_items = dataset.n_items
        self.device = device
        self.build()

    @classmethod
    def reads_item_text(cls, params: ModelParams) -> bool:
        """Whether the model reads the items' text (the runner then refuses a dataset where most
        items have only the fallback text, unless data.allow_missing_text says otherwise)."""
        return False

    @classmethod
    def search_space(cls, params: ModelParams) -> dict | None:
        """The settings `run_all.py --tune` searches for this model where an experiment's run
        gives no `space:` of its own: {dotted config key: {type: float | int | categorical, low,
        high, log, choices}} (benchmarks/tuning/spec.py). None: no default; a tuned row of this
        model must give its space. Keep it small: every key costs trials of every row."""
        return None

    def build(self) -> None:
        """Construct the model from `self.params` (validated), `self.dataset` and `self.device`."""

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
    """The class of a registered model, or of a model given by its path ('module:Class')."""
    if isinstance(name, str) and name not in MODEL_REGISTRY and ":" in name:
        return _class_at(name)
    if name not in MODEL_REGISTRY:
        known = ", ".join(sorted(MODEL_REGISTRY))
        raise ConfigError(f"unknown model {name!r}; known models: {known} (or a class of your own by its "
                          "path, module:Class)")
    module_name, class_name = MODEL_REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls


def _class_at(path: str) -> type[Recommender]:
    """The class a 'package.module:Class' path names, checked to be a Recommender."""
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise ConfigError(f"model {path!r}: a model given by its path reads 'package.module:Class'")
    try:
        found = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"model {path!r}: cannot import {module_name!r} ({err}); a model given by its "
                          "path is imported as Python imports from the current folder") from None
    for part in class_name.split("."):
        found = getattr(found, part, None)
    if not (isinstance(found, type) and issubclass(found, Recommender)):
        raise ConfigError(f"model {path!r}: {class_name!r} in {module_name!r} is "
                          f"{'missing' if found is None else 'not a subclass of benchmarks.models.Recommender'}")
    return found


def family_members() -> dict[str, tuple[str, ...]]:
    """{family's registry name: the published models it runs by name} (imports each family)."""
    return {family: tuple(model_class(family).members) for family in MODEL_FAMILIES}


def model_section(name: str) -> dict:
    """The `model:` section `--model NAME` stands for: a registered model ({name}), a family's
    member by its own name, any case ({name: recbole, recbole_model: SASRec}), or a class by its
    path ({name: 'mypkg.models:MyRecommender'}, imported here to fail early)."""
    if name in MODEL_REGISTRY:
        return {"name": name}
    if ":" in name:
        model_class(name)
        return {"name": name}
    members = family_members()
    for family, names in members.items():
        match = {member.lower(): member for member in names}.get(name.lower())
        if match:
            return {"name": family, MODEL_FAMILIES[family]: match}
    raise ConfigError(f"unknown model {name!r}; registered: {', '.join(sorted(MODEL_REGISTRY))}; "
                      + "; ".join(f"through {family}: {', '.join(names)}" for family, names in members.items())
                      + "; or a class of your own by its path (package.module:Class)")


def resolve_model_params(model_section: dict) -> dict:
    """The model section with the model's defaults filled in and checked; unknown keys are errors."""
    name = model_section.get("name")
    params = model_params(model_class(name), model_section)
    return {"name": name, **params.as_dict()}


def unread_model_keys(model_section: dict) -> set[str]:
    """ModelParams.unread_keys of a resolved model section; none for a model not known here."""
    try:
        return params_class(model_class(model_section.get("name"))).unread_keys(model_section)
    except ConfigError:
        return set()


def model_params(cls, model_section: dict) -> ModelParams:
    params_cls = params_class(cls)
    known = {f.name for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(model_section) - known - {"name"})
    if unknown:
        raise ConfigError(
            f"unknown key(s) for model {model_section.get('name')!r}: {', '.join('model.' + u for u in unknown)}; "
            f"known: {', '.join(sorted(known)) or '(none)'}"
        )
    return params_cls(**{k: v for k, v in model_section.items() if k != "name"})


def build_model(model_section: dict, dataset, device: torch.device) -> Recommender:
    cls = model_class(model_section.get("name"))
    return cls(model_params(cls, model_section), dataset, device)
