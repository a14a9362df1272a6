"""Layered YAML configuration, as in RecBole: defaults < dataset preset < experiment < run <
command line. Every key must already exist in `defaults.yaml` (or, under `model`, in the model's
own `defaults`): an unknown key is an error, never silently ignored.

An experiment file (benchmarks/experiments/<name>.yaml) is one paper table or figure:

    description: what it reproduces
    paper_table: key in paper_reference.yaml, or null
    datasets: [ml-100k]           # presets from datasets.yaml; --dataset replaces the list
    seeds: [0]
    config: {...}                 # overrides for every run of the experiment
    per_dataset: {ml-1m-partial: {...}}   # overrides for one dataset (e.g. dropout per dataset)
    runs:                         # run name -> overrides; the name is the table row
      MostPopular: {model: {name: most_popular}}
      Lite: {model: {...}, per_dataset: {ml-1m: {...}}}   # a run's own per-dataset overrides
    proposed: [Lite]              # the runs of the proposed model: tested against the best
                                  # baseline and starred (absent: the runs of the paper's
                                  # proposed model, paper_reference.yaml)
    tuning: {trials: 8, runs: [Lite], ...}   # the search budget every tuned row gets, and each
                                  # run's `space:` in its entry (benchmarks/tuning/spec.py)
    report:                       # the report pages this experiment declares (ReportPage)
      - {page: table3, title: "Table 3: overall accuracy", what: ..., paper_key: table3_overall}

A page is fed by the experiment that declares it and by every experiment whose `paper_table`
names the page's `paper_key` or the declaring experiment. Pages no experiment file feeds yet
are declared in experiments/pages.yaml (`report:` alone).

Experiment sets (experiments/sets.yaml) name groups of experiments for `run_all.py --set`:

    experiments: [table3_overall, ...]      # or a mapping, to keep an experiment to some datasets:
    experiments: {table3_overall: {}, table1_2_4_5_generative: {datasets: [ml-1m-partial]}}
    datasets: [...]; seeds: [...]; runs: [...]   # replace the experiments' own lists
    config: {...}                            # a budget over every run of the set (above the
                                             # experiments' own settings, below the command line);
                                             # the runs it changes are the set's variants (variants.py)
    per_dataset: {ml-1m-partial: {...}}      # the set's budget for one dataset, over its config
    priority: [table3_overall/ml-1m-partial/SASRec, table3_overall/*/*]   # within each seed, runs
                                             # matching an earlier pattern (experiment/dataset/run,
                                             # fnmatch) go first; the rest follow in the set's order
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError
from .models import resolve_model_params, unread_model_keys
from .pages import ReportPage, report_pages
from .tuning.spec import parse_tuning
from .variants import RUN_NEUTRAL_KEYS, WHERE_IT_RAN_KEYS

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULTS_FILE = PACKAGE_DIR / "defaults.yaml"
DATASETS_FILE = PACKAGE_DIR / "datasets.yaml"
EXPERIMENTS_DIR = PACKAGE_DIR / "experiments"
SHIPPED_EXPERIMENTS_DIR = EXPERIMENTS_DIR  # stays the package's folder where EXPERIMENTS_DIR is another
SETS_FILE = EXPERIMENTS_DIR / "sets.yaml"

# Sections whose keys are checked elsewhere: model params by the model's own defaults, data
# files by the data source's loader.
FREE_FORM = {("model",), ("data", "files")}
EXPERIMENT_KEYS = {"description", "paper_table", "datasets", "seeds", "config", "per_dataset", "runs",
                   "proposed", "report", "tuning"}
PAGES = "pages"  # <experiments folder>/pages.yaml: the report pages that no experiment declares
NOT_EXPERIMENTS = {"sets", PAGES}  # the files of an experiments folder that are no experiment


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = _parsed(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return copy.deepcopy(data)  # callers may change what they get; the cache keeps its own


@functools.lru_cache(maxsize=64)
def _parsed(text: str):
    """YAML parsed once per text: planning resolves every run against the defaults, the presets
    and its experiment three times (as run, as the experiment states it, with the set)."""
    return yaml.safe_load(text)


def merge(base: dict, override: dict, *, where: str = "", _path: tuple = ()) -> dict:
    """Return base updated with override (recursively); keys unknown to base are errors."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        path = _path + (key,)
        dotted = ".".join(path)
        if path[:1] in FREE_FORM or path[:2] in FREE_FORM or _path in FREE_FORM:
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **copy.deepcopy(value)}
            else:
                out[key] = copy.deepcopy(value)
            continue
        if key not in out:
            known = ", ".join(sorted(".".join(_path + (k,)) for k in out))
            raise ConfigError(f"unknown config key {dotted!r}{where}; known here: {known}")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted!r}{where} must be a mapping")
            out[key] = merge(out[key], value, where=where, _path=path)
        else:
            out[key] = copy.deepcopy(value)
    return out


def filled(base: dict, layer: dict) -> dict:
    """`layer` with each mapping it sets completed from base's mapping at the same place, so that
    merging it changes only the keys it names, even inside free-form sections (merge replaces a
    free-form mapping whole: a tuned model.recbole_config.learning_rate must keep the row's
    other RecBole settings)."""
    out = {}
    for key, value in layer.items():
        below = base.get(key) if isinstance(base, dict) else None
        out[key] = {**below, **filled(below, value)} if isinstance(value, dict) and isinstance(below, dict) else value
    return out


def parse_override(text: str) -> dict:
    """'train.lr=1e-3' -> {'train': {'lr': 0.001}}; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.subkey=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else None
    # YAML reads 1e-3 as a string; make scientific notation numeric as users expect
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in "eE.") else value
        except ValueError:
            pass
    node: dict = {}
    cursor = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor[part] = {}
        cursor = cursor[part]
    cursor[parts[-1]] = value
    return node


def defaults() -> dict:
    return load_yaml(DEFAULTS_FILE)


def dataset_presets() -> dict:
    return load_yaml(DATASETS_FILE)


def dataset_section(name: str) -> dict:
    """The `data` overrides of a dataset preset (the preset name becomes data.name)."""
    presets = dataset_presets()
    if name not in presets:
        raise ConfigError(f"unknown dataset preset {name!r}; known: {', '.join(sorted(presets))}")
    return {"name": name, **presets[name]}


def list_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml") if p.stem not in NOT_EXPERIMENTS)


def load_experiment(name_or_path: str) -> tuple[str, dict]:
    path = Path(name_or_path)
    if not path.suffix:
        path = EXPERIMENTS_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown experiment {name_or_path!r}; known: {', '.join(list_experiments())}"
            )
    exp = load_yaml(path)
    unknown = sorted(set(exp) - EXPERIMENT_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown experiment key(s) {unknown}; known: {sorted(EXPERIMENT_KEYS)}")
    if not exp.get("runs"):
        raise ConfigError(f"{path}: an experiment needs at least one entry under 'runs'")
    proposed = exp.get("proposed")
    if proposed is not None:
        if not isinstance(proposed, list) or not all(isinstance(run, str) for run in proposed):
            raise ConfigError(f"{path}: 'proposed' must be a list of run names")
        unknown = [run for run in proposed if run not in exp["runs"]]
        if unknown:
            raise ConfigError(f"{path}: 'proposed' names {unknown}, which are not runs of this experiment; "
                              f"runs: {list(exp['runs'])}")
    exp["report"] = report_pages(path, exp.get("report"))
    exp["runs"] = {run: dict(entry or {}) for run, entry in exp["runs"].items()}
    exp["tuning"] = parse_tuning(path, exp.get("tuning"), exp["runs"])  # takes each run's `space:` out
    exp.setdefault("datasets", ["ml-100k"])
    exp.setdefault("seeds", [0])
    exp.setdefault("config", {})
    exp.setdefault("per_dataset", {})
    exp.setdefault("paper_table", None)
    exp.setdefault("description", "")
    return path.stem, exp


def load_pages_file(path: str | Path) -> tuple["ReportPage", ...]:
    """The pages of an experiments folder's pages.yaml (`report:` alone); none if it is absent."""
    path = Path(path)
    if not path.is_file():
        return ()
    data = load_yaml(path)
    unknown = sorted(set(data) - {"report"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: ['report']")
    pages = report_pages(path, data.get("report"))
    for page in pages:
        if not page.paper_key:
            raise ConfigError(f"{path}: page {page.page!r} needs a paper_key: only an experiment whose "
                              "paper_table names it can feed a page that no experiment declares")
    return pages


SET_KEYS = {"description", "experiments", "datasets", "seeds", "config", "per_dataset", "runs", "priority"}
SET_EXPERIMENT_KEYS = {"datasets"}


def load_set(name: str) -> dict:
    """A set with `experiments` as {name: {datasets: [...] or absent}} (a plain list is read as
    experiments without restrictions)."""
    sets = load_yaml(SETS_FILE)
    if name not in sets:
        raise ConfigError(f"unknown experiment set {name!r}; known: {', '.join(sorted(sets))}")
    entry = dict(sets[name])
    unknown = sorted(set(entry) - SET_KEYS)
    if unknown:
        raise ConfigError(f"{SETS_FILE}: set {name!r} has unknown key(s) {unknown}; known: {sorted(SET_KEYS)}")
    experiments = entry.get("experiments") or []
    if isinstance(experiments, list):
        experiments = {exp: {} for exp in experiments}
    for exp, restriction in experiments.items():
        unknown = sorted(set(restriction or {}) - SET_EXPERIMENT_KEYS)
        if unknown:
            raise ConfigError(f"{SETS_FILE}: set {name!r}, experiment {exp!r}: unknown key(s) {unknown}; "
                              f"known: {sorted(SET_EXPERIMENT_KEYS)}")
    entry["experiments"] = {exp: restriction or {} for exp, restriction in experiments.items()}
    presets = dataset_presets()
    unknown = sorted(set(entry.get("per_dataset") or {}) - set(presets))
    if unknown:
        raise ConfigError(f"{SETS_FILE}: set {name!r}, per_dataset: unknown dataset preset(s) {unknown}; "
                          f"known: {sorted(presets)}")
    return entry


def set_layer(entry: dict, dataset: str) -> dict:
    """A set's config for the runs on one dataset: its `config` with its `per_dataset` entry for
    the dataset over it (keys are checked where the layer meets the run's config)."""
    config = entry.get("config") or {}
    return {**config, **filled(config, (entry.get("per_dataset") or {}).get(dataset) or {})}


@dataclass
class RunSpec:
    """One run: an experiment row on one dataset with one seed, fully resolved; and how its
    config differs from what the experiment file alone resolves to (benchmarks/variants.py)."""

    experiment: str
    run: str
    dataset: str
    seed: int
    config: dict
    paper_table: str | None
    differs: dict = field(default_factory=dict)   # dotted key -> [the experiment's value, this run's]
    set_name: str | None = None                   # the set whose config makes some of the differences
    set_keys: tuple[str, ...] = ()                # the settings the set's config changes
    tag: str | None = None                        # --tag: a variant by this name, whatever differs
    reference_data: dict | None = None            # the experiment's own data section (files to compare)
    experiment_file: str | None = None            # the file, where the experiment was given by its path
    study: object | None = None                   # a tuned row's study (tuning.studies.StudyState)
    tuning: dict | None = None                    # the finished study whose best settings it runs with

    @property
    def key(self) -> str:
        return f"{self.experiment}/{self.dataset}/{self.run}/seed{self.seed}"


def resolve_run(
    experiment: str,
    exp: dict,
    run: str,
    dataset: str,
    seed: int,
    *,
    set_config: dict | None = None,
    cli_overrides: list[dict] | None = None,
    data_path: str | None = None,
    tuned: dict | None = None,
) -> RunSpec:
    """Layer defaults < dataset preset < experiment < per-dataset < run < the run's per-dataset
    < tuned < set < CLI. The set sits above the experiments: it states a budget for all of them
    (the GPU set's time cap and all users), which the experiments' CPU budgets must not undo.
    `tuned`: the best settings of the run's finished study (benchmarks/tuning), part of the
    experiment's design, so below the set and the command line."""
    cfg = defaults()
    cfg = merge(cfg, {"data": dataset_section(dataset)}, where=" in datasets.yaml")
    cfg = merge(cfg, exp.get("config") or {}, where=f" in experiment {experiment!r}")
    cfg = merge(cfg, (exp.get("per_dataset") or {}).get(dataset) or {}, where=f" in {experiment}.per_dataset")
    run_entry = dict(exp["runs"][run] or {})
    run_per_dataset = run_entry.pop("per_dataset", None) or {}
    cfg = merge(cfg, run_entry, where=f" in {experiment}.runs.{run}")
    cfg = merge(cfg, run_per_dataset.get(dataset) or {}, where=f" in {experiment}.runs.{run}.per_dataset")
    cfg = merge(cfg, filled(cfg, tuned or {}), where=f" in the tuned settings of {experiment}.runs.{run}")
    cfg = merge(cfg, set_config or {}, where=" in experiment set")
    for override in cli_overrides or []:
        cfg = merge(cfg, override, where=" on the command line")
    if data_path is not None:
        cfg["data"]["path"] = data_path
    cfg["seed"] = int(seed)
    cfg["model"] = resolve_model_params(cfg["model"])
    validate(cfg)
    return RunSpec(experiment, run, dataset, int(seed), cfg, exp.get("paper_table"))


def validate(cfg: dict) -> None:
    ev = cfg["eval"]
    if ev["candidates"] not in ("full", "sampled"):
        raise ConfigError(f"eval.candidates must be 'full' or 'sampled', got {ev['candidates']!r}")
    from .measurements import PROTOCOL_CONTROLS  # late import: keeps config free of torch at import
    from .measurements import check_inference_settings

    check_inference_settings(cfg["latency"].get("settings") or [])

    unknown = [c for c in ev["protocol_controls"] or [] if c not in PROTOCOL_CONTROLS]
    if unknown:
        raise ConfigError(f"eval.protocol_controls: unknown {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(PROTOCOL_CONTROLS)}")
    if not ev["ks"] or any(int(k) < 1 for k in ev["ks"]):
        raise ConfigError(f"eval.ks must be positive integers, got {ev['ks']!r}")
    if cfg["train"]["valid_metric"] not in {f"{m}@{k}" for m in ("recall", "ndcg") for k in ev["ks"]}:
        raise ConfigError(
            f"train.valid_metric {cfg['train']['valid_metric']!r} is not one of the evaluated "
            f"metrics (recall/ndcg at eval.ks={ev['ks']})"
        )
    if cfg["device"] not in ("cpu", "cuda", "auto") and not str(cfg["device"]).startswith("cuda:"):
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {cfg['device']!r}")


def config_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Config keys added after records existed whose default reproduces exactly what those records did:
# a record without the key is the same run as one with the key at this value. (A key whose default
# changed what runs do, e.g. eval.protocol_controls, measuring more, is not listed: its old records
# are other runs.)
NEUTRAL_NEW_KEYS = {("train", "warmup_steps"): None, ("latency", "settings"): [],
                    ("eval", "valid_max_users"): None}
# The same for one model's own settings (its Params), by model name.
NEUTRAL_NEW_MODEL_KEYS = {"lite_llm4rec": {"stage2_lr": None}}


def with_new_defaults(recorded: dict) -> dict:
    """A recorded config with the NEUTRAL_NEW_KEYS it lacks filled with their neutral values."""
    filled = copy.deepcopy(recorded)
    for (section, key), value in NEUTRAL_NEW_KEYS.items():
        if isinstance(filled.get(section), dict):
            filled[section].setdefault(key, value)
    model = filled.get("model")
    if isinstance(model, dict):
        for key, value in NEUTRAL_NEW_MODEL_KEYS.get(model.get("name"), {}).items():
            model.setdefault(key, value)
    return filled


def identity_hash(cfg: dict) -> str:
    """The config hash without `data.path`, the run-neutral keys (variants.RUN_NEUTRAL_KEYS) and
    where the run ran (variants.WHERE_IT_RAN_KEYS: device, threads): where the source files lie or
    which machine trained it is not what the run is (a record made on a GPU machine from a copied
    folder, or on one thread, is the same run; the record states its device and its data source
    hash which files were read). Model settings the run never reads (ModelParams.unread_keys) are
    left out too."""
    neutral = {key.split(".", 1)[1] for key in RUN_NEUTRAL_KEYS if key.startswith("data.")}
    rest = {k: v for k, v in cfg.items() if k not in WHERE_IT_RAN_KEYS}
    if isinstance(cfg.get("model"), dict):
        unread = unread_model_keys(cfg["model"])
        rest["model"] = {k: v for k, v in cfg["model"].items() if k not in unread}
    return config_hash({**rest, "data": {k: v for k, v in cfg["data"].items() if k != "path" and k not in neutral}})
