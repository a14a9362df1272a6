"""The `tuning:` section of an experiment file and the runs' search spaces, read and checked
without Optuna: planning reads them for every run, and only `--tune` and a study lookup import
Optuna (benchmarks/tuning/studies.py).

    tuning:
      trials: 8               # finished trials (complete or pruned) per row: the same budget for every row
      sampler: {name: tpe, seed: 0, n_startup_trials: 4}        # tpe | random
      pruner: {name: median, n_startup_trials: 3, n_warmup_steps: 5}   # median | none; steps are validations
      metric: recall@10       # the objective, a validation metric (absent: each run's train.valid_metric)
      train_seed: 0           # the seed every trial trains with (the tables' seeds train the chosen settings)
      runs: [GRU4Rec, SASRec] # the rows searched; every other row keeps the experiment's settings
      note: why the other rows are not searched (the tuning page prints it)
    runs:
      SASRec:
        model: {...}
        space:                # dotted config key -> distribution (absent: the model's default space)
          train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
          model.recbole_config.hidden_size: {type: categorical, choices: [32, 64, 128]}
          model.recbole_config.dropout_probs.0: {type: float, low: 0.0, high: 0.5}   # a list, item by item

A key whose parts include whole numbers sets a list item by item (NARM's `dropout_probs`): every
index from 0 up must be in the space, so the list is always set whole. Every unknown key, type or
value is an error naming the file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from ..errors import ConfigError

TYPES = ("float", "int", "categorical")
PARAM_KEYS = {"type", "low", "high", "log", "choices"}
SAMPLERS = {"tpe": {"seed", "n_startup_trials"}, "random": {"seed"}}
PRUNERS = {"median": {"n_startup_trials", "n_warmup_steps", "interval_steps"}, "none": set()}
TUNING_KEYS = {"trials", "sampler", "pruner", "metric", "train_seed", "runs", "note"}
METRIC = re.compile(r"(recall|ndcg)@[1-9][0-9]*")
DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SearchParam:
    """One searched setting: its dotted config key and its distribution."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def as_dict(self) -> dict:
        """The YAML form (summaries store it; a study's digest hashes it)."""
        if self.type == "categorical":
            return {"type": self.type, "choices": list(self.choices)}
        return {"type": self.type, "low": self.low, "high": self.high, "log": self.log}

    def describe(self) -> str:
        if self.type == "categorical":
            return "one of " + ", ".join(map(str, self.choices))
        return f"{self.type} in [{self.low:g}, {self.high:g}]" + (", log scale" if self.log else "")


def parse_space(where: str, mapping) -> tuple[SearchParam, ...]:
    """A `space:` mapping (or a model's default space) as SearchParams, every key checked."""
    if not isinstance(mapping, dict) or not mapping:
        raise ConfigError(f"{where}: 'space' must be a non-empty mapping of dotted config keys to distributions")
    params = []
    for key, spec in mapping.items():
        at = f"{where}: space key {key!r}"
        if not isinstance(key, str) or not DOTTED.fullmatch(key):
            raise ConfigError(f"{at} must be a dotted config key (train.lr, model.dropout)")
        if not isinstance(spec, dict):
            raise ConfigError(f"{at} must map to a distribution ({{type: float, low: .., high: ..}})")
        unknown = sorted(set(spec) - PARAM_KEYS)
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {unknown}; known: {sorted(PARAM_KEYS)}")
        kind = spec.get("type")
        if kind not in TYPES:
            raise ConfigError(f"{at}: 'type' must be one of {list(TYPES)}, got {kind!r}")
        if kind == "categorical":
            choices = spec.get("choices")
            extra = sorted(set(spec) & {"low", "high", "log"})
            if extra:
                raise ConfigError(f"{at}: a categorical takes 'choices' only, not {extra}")
            if (not isinstance(choices, list) or not choices
                    or not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices)):
                raise ConfigError(f"{at}: 'choices' must be a non-empty list of numbers, texts, booleans or null")
            if len(set(map(repr, choices))) != len(choices):
                raise ConfigError(f"{at}: 'choices' repeats a value")
            params.append(SearchParam(key, kind, choices=tuple(choices)))
            continue
        if "choices" in spec:
            raise ConfigError(f"{at}: 'choices' is for a categorical; a {kind} takes low, high and log")
        low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
        check = _whole if kind == "int" else _number
        if not check(low) or not check(high) or not low < high:
            raise ConfigError(f"{at}: a {kind} needs {'whole numbers' if kind == 'int' else 'numbers'} "
                              f"low < high, got low={low!r}, high={high!r}")
        if not isinstance(log, bool) or (log and low <= 0):
            raise ConfigError(f"{at}: 'log' must be true or false, and a log scale needs low > 0")
        params.append(SearchParam(key, kind, float(low) if kind == "float" else low,
                                  float(high) if kind == "float" else high, log))
    _check_list_items(where, [p.key for p in params])
    return tuple(params)


def _check_list_items(where: str, keys: list[str]) -> None:
    """A list set item by item (`x.0`, `x.1`) has every index from 0 up."""
    items: dict[str, set[int]] = {}
    for key in keys:
        parts = key.split(".")
        for i, part in enumerate(parts):
            if part.isdigit():
                items.setdefault(".".join(parts[:i]), set()).add(int(part))
    for prefix, indices in items.items():
        if indices != set(range(len(indices))):
            raise ConfigError(f"{where}: space keys {prefix}.N must give every list item from 0 up "
                              f"(the list is set whole), got indices {sorted(indices)}")


def space_layer(values: Mapping[str, object]) -> dict:
    """{'train.lr': 0.001, 'model.recbole_config.dropout_probs.0': 0.2, ...} as a config layer:
    {'train': {'lr': 0.001}, 'model': {'recbole_config': {'dropout_probs': [0.2, ...]}}}."""
    layer: dict = {}
    for key, value in values.items():
        node = layer
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(layer)


def _lists(node):
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(k, str) and k.isdigit() for k in node):
        return [_lists(node[str(i)]) for i in range(len(node))]
    return {k: _lists(v) for k, v in node.items()}


@dataclass(frozen=True)
class TuningSettings:
    """An experiment's `tuning:` section, checked (see the module's docstring)."""

    trials: int
    sampler: dict
    pruner: dict
    metric: str | None
    train_seed: int
    runs: tuple[str, ...]
    spaces: dict = field(default_factory=dict)   # run -> its own space (absent: the model's default)
    note: str = ""
    declared_in: str = ""

    def budget(self) -> dict:
        """What every tuned row of the experiment gets (summaries and pages print it)."""
        return {"trials": self.trials, "sampler": dict(self.sampler), "pruner": dict(self.pruner),
                "metric": self.metric, "train_seed": self.train_seed}


def _options(where: str, what: str, value, known: dict, default: str) -> dict:
    value = {"name": default} if value is None else value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or value.get("name") not in known:
        raise ConfigError(f"{where}: tuning.{what} must be a mapping with 'name' one of {sorted(known)}, got {value!r}")
    unknown = sorted(set(value) - {"name"} - known[value["name"]])
    if unknown:
        raise ConfigError(f"{where}: tuning.{what} {value['name']!r}: unknown key(s) {unknown}; "
                          f"known: {sorted(known[value['name']])}")
    for key, option in value.items():
        if key != "name" and not (option is None and key == "seed") and not (_whole(option) and option >= 0):
            raise ConfigError(f"{where}: tuning.{what}.{key} must be a whole number >= 0"
                              f"{' or null' if key == 'seed' else ''}, got {option!r}")
    if value.get("interval_steps") == 0:
        raise ConfigError(f"{where}: tuning.{what}.interval_steps must be >= 1")
    return dict(value)


def parse_tuning(path, section, runs: dict) -> TuningSettings | None:
    """The experiment's tuning settings, with each run's `space:` taken out of its entry (a
    run's entry is otherwise config, which has no such key); None without a `tuning:` section."""
    where = str(path)
    spaces = {}
    for run, entry in runs.items():
        if isinstance(entry, dict) and "space" in entry:
            spaces[run] = parse_space(f"{where}: run {run!r}", entry.pop("space"))
    if section is None:
        if spaces:
            raise ConfigError(f"{where}: run(s) {sorted(spaces)} give a 'space' but the experiment has no "
                              "'tuning' section")
        return None
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: 'tuning' must be a mapping")
    unknown = sorted(set(section) - TUNING_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown tuning key(s) {unknown}; known: {sorted(TUNING_KEYS)}")
    trials = section.get("trials")
    if not _whole(trials) or trials < 1:
        raise ConfigError(f"{where}: tuning.trials must be a whole number >= 1, got {trials!r}")
    metric = section.get("metric")
    if metric is not None and not (isinstance(metric, str) and METRIC.fullmatch(metric)):
        raise ConfigError(f"{where}: tuning.metric must be recall@K or ndcg@K, got {metric!r}")
    train_seed = section.get("train_seed", 0)
    if not _whole(train_seed) or train_seed < 0:
        raise ConfigError(f"{where}: tuning.train_seed must be a whole number >= 0, got {train_seed!r}")
    tuned = section.get("runs")
    if not isinstance(tuned, list) or not tuned or not all(isinstance(r, str) for r in tuned):
        raise ConfigError(f"{where}: tuning.runs must be a non-empty list of run names")
    missing = [r for r in tuned if r not in runs]
    if missing:
        raise ConfigError(f"{where}: tuning.runs names {missing}, which are not runs of this experiment; "
                          f"runs: {list(runs)}")
    untuned = sorted(set(spaces) - set(tuned))
    if untuned:
        raise ConfigError(f"{where}: run(s) {untuned} give a 'space' but are not in tuning.runs")
    note = section.get("note", "")
    if not isinstance(note, str):
        raise ConfigError(f"{where}: tuning.note must be a text")
    return TuningSettings(trials=trials, sampler=_options(where, "sampler", section.get("sampler"), SAMPLERS, "tpe"),
                          pruner=_options(where, "pruner", section.get("pruner"), PRUNERS, "median"),
                          metric=metric, train_seed=train_seed, runs=tuple(tuned), spaces=spaces,
                          note=" ".join(note.split()), declared_in=where)
