"""Where a row's study lives, and what a normal run takes from it.

A study is one row's search on one dataset, as the experiment file states the row: its name is
`<experiment>/<dataset>/<run>/<digest>`, the digest hashing the row's resolved config (all but
the seed, where it runs and where its files lie), its search space, the objective's metric and
the trials' seed. The same row on another machine finds the same study; an edited experiment
file (or a new default) makes another study, as it makes another record. A run with `-o` or a
set's budget uses the study of its row, its own layers above the best settings; `--tune`
searches only the experiment's own settings (--device aside).

Studies live in an Optuna storage: SQLite under `<results>/tuning/studies.db` by default, or any
database URL Optuna accepts (`--tuning-storage`), so several machines can work on one study.
Beside the storage, each study's summary (`<results>/tuning/<experiment>/<dataset>/<run>__<digest>.json`:
its budget, space, trials and best settings) is rewritten after every trial: the reports read
the summaries (results/ alone), and a normal run reads a finished study's summary before it
opens the storage (a copy of results/ merged from another machine carries it).

A study is finished when it holds `trials` finished trials (complete or pruned); failed and
interrupted ones do not count. Its best settings are the best complete trial among the first
`trials` finished ones (by completion): a study run past its budget (several machines each
finishing a trial at the end) still chooses from the same number of trials as every other row.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..variants import DATA_PATH, RUN_NEUTRAL_KEYS, WHERE_IT_RAN_KEYS, flatten
from .spec import SearchParam, TuningSettings, parse_space, space_layer

SUMMARY_FORMAT = 1
HEARTBEAT_SECONDS = 60     # a running trial's heartbeat (Optuna's RDB storage)
GRACE_SECONDS = 180        # a RUNNING trial silent this long was killed: it is failed at the next trial's start
STUDY_NEUTRAL = {"seed", DATA_PATH, *RUN_NEUTRAL_KEYS, *WHERE_IT_RAN_KEYS}
# Neutral keys (config.NEUTRAL_NEW_KEYS, NEUTRAL_NEW_MODEL_KEYS) added after studies were first
# stored: at their neutral value a digest leaves them out, so a study stored before they existed
# is still its row's (as its records are). Keys neutral before then stay in every digest.
NEUTRAL_SINCE_STUDIES = {"eval.valid_max_users": None, "model.stage2_lr": None}


@dataclass(frozen=True)
class StudyRef:
    """One row's study: which run it tunes, under which config, with which budget and space."""

    experiment: str
    dataset: str
    run: str
    digest: str
    settings: TuningSettings
    space: tuple[SearchParam, ...]
    metric: str
    base_config: dict = field(repr=False)   # the config trials train with, before the sampled settings

    @property
    def name(self) -> str:
        return f"{self.experiment}/{self.dataset}/{self.run}/{self.digest}"

    @property
    def where(self) -> str:
        return f"{self.settings.declared_in}: run {self.run!r}"

    def trial_config(self, values: dict) -> dict:
        """The config one trial trains with: the run's, the sampled values layered over it (below
        nothing: the set and the command line are already in base_config), the trials' seed."""
        from ..config import filled, merge, validate
        from ..models import resolve_model_params

        layer = filled(self.base_config, space_layer(values))  # the row's other settings stay
        cfg = merge(self.base_config, layer, where=f" in the search space of {self.where}")
        try:
            cfg["model"] = resolve_model_params(cfg["model"])
            cfg["seed"] = self.settings.train_seed
            validate(cfg)
        except ConfigError as err:
            raise ConfigError(f"{err} (in the search space of {self.where})") from None
        return cfg


def default_space(model: dict, where: str) -> tuple[SearchParam, ...]:
    """The model family's own search space (Recommender.search_space), checked like a file's."""
    from ..models import model_class, model_params

    cls = model_class(model["name"])
    raw = cls.search_space(model_params(cls, {k: v for k, v in model.items()}))
    if not raw:
        raise ConfigError(f"{where} is in tuning.runs, but model {model['name']!r} has no default search space: "
                          "give the run a 'space:'")
    return parse_space(f"{cls.__module__}.{cls.__name__}.search_space", raw)


def study_ref(spec, settings: TuningSettings, trial_base: dict | None = None) -> StudyRef:
    """The study of a row as its experiment file resolves it (`spec`, without tuned settings),
    its space and metric checked against that config (an unknown key names the file).
    `trial_base`: the config trials train with, where the run was planned with more layers (the
    device it runs on); --tune refuses a run whose config differs otherwise."""
    where = f"{settings.declared_in}: run {spec.run!r}"
    space = settings.spaces.get(spec.run) or default_space(spec.config["model"], where)
    metric = settings.metric or spec.config["train"]["valid_metric"]
    ks = spec.config["eval"]["ks"]
    if metric not in {f"{m}@{k}" for m in ("recall", "ndcg") for k in ks}:
        raise ConfigError(f"{settings.declared_in}: tuning.metric {metric!r} is not evaluated for run {spec.run!r} "
                          f"(eval.ks={ks})")
    flat = {k: v for k, v in flatten(spec.config).items() if k not in STUDY_NEUTRAL
            and not (k in NEUTRAL_SINCE_STUDIES and v == NEUTRAL_SINCE_STUDIES[k])}
    text = json.dumps({"config": flat, "space": [[p.key, p.as_dict()] for p in space], "metric": metric,
                       "train_seed": settings.train_seed}, sort_keys=True, default=str)
    ref = StudyRef(spec.experiment, spec.dataset, spec.run, hashlib.sha256(text.encode()).hexdigest()[:10],
                   settings, space, metric, trial_base or spec.config)
    ref.trial_config({p.key: p.choices[0] if p.type == "categorical" else p.low for p in space})  # keys exist
    return ref


# ----------------------------------------------------------------------------- storage


def default_storage(results_dir) -> str:
    return "sqlite:///" + str(Path(results_dir) / "tuning" / "studies.db")


def shown_url(url: str) -> str:
    """The storage URL as records and pages show it: without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy reads: opening it fails later, with the reason
        return url


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for any other database, or an in-memory SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):]
    return Path(path) if path and path != ":memory:" else None


def open_storage(url: str):
    """Optuna's RDB storage with heartbeats: a trial whose process died (killed, machine lost)
    stops beating and is failed at the next trial's start, after GRACE_SECONDS."""
    import optuna

    kwargs = {}
    if (path := sqlite_file(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # several processes on one file wait their turn
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                              grace_period=GRACE_SECONDS, **kwargs)
    except Exception as err:  # a URL Optuna cannot open is a bad value, named with the reason
        raise ConfigError(f"tuning storage {shown_url(url)!r} cannot be opened: {err}") from None


def finished_trials(trials) -> list:
    """The finished trials (complete or pruned) in the order they finished."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    return sorted(done, key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number))


def summarize(study, ref: StudyRef, url: str) -> dict:
    """A study's summary: budget, space, every trial, and the best of the first `trials` finished."""
    counted = finished_trials(study.trials)[: ref.settings.trials]
    complete = [t for t in counted if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    return {
        "study_format": SUMMARY_FORMAT, "study": ref.name, "storage": shown_url(url),
        "experiment": ref.experiment, "dataset": ref.dataset, "run": ref.run, "digest": ref.digest,
        "metric": ref.metric, "budget": ref.settings.budget(), "space": {p.key: p.as_dict() for p in ref.space},
        "finished": len(counted) >= ref.settings.trials, "counted": [t.number for t in counted],
        "best": None if best is None else {"trial": best.number, "value": best.value, "params": best.params},
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                    "validations": {str(step): value for step, value in sorted(t.intermediate_values.items())},
                    "training": t.user_attrs.get("training"),
                    **{key: t.user_attrs[key] for key in ("retries", "error") if key in t.user_attrs},
                    "finished": t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None}
                   for t in sorted(study.trials, key=lambda t: t.number)],
    }


def summary_path(results_dir, experiment: str, dataset: str, run: str, digest: str) -> Path:
    from ..records import _safe

    return Path(results_dir) / "tuning" / _safe(experiment) / _safe(dataset) / f"{_safe(run)}__{digest}.json"


def write_summary(results_dir, summary: dict) -> Path:
    from ..records import atomic_write

    path = summary_path(results_dir, summary["experiment"], summary["dataset"], summary["run"], summary["digest"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2, default=str) + "\n"))
    return path


def read_summaries(results_dir) -> list[dict]:
    """Every study summary under results_dir/tuning, in path order."""
    out = []
    for path in sorted((Path(results_dir) / "tuning").rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("study_format"):
            out.append(data)
    return out


# ----------------------------------------------------------------------------- lookups


@dataclass
class StudyState:
    """What a planned run knows of its study: the reference, its summary when finished, how many
    trials are finished, and one line saying so."""

    ref: StudyRef
    summary: dict | None = None   # set only when finished with a complete trial
    done: int = 0

    @property
    def layer(self) -> dict | None:
        return space_layer(self.summary["best"]["params"]) if self.summary else None

    def record_block(self) -> dict | None:
        """The record's `tuning` field: the study, its storage, trial count and chosen settings."""
        if not self.summary:
            return None
        best = self.summary["best"]
        return {"study": self.ref.name, "storage": self.summary["storage"], "trials": self.ref.settings.trials,
                "metric": self.ref.metric, "best_trial": best["trial"], "best_value": best["value"],
                "best_params": dict(best["params"])}

    @property
    def note(self) -> str:
        n = self.ref.settings.trials
        if self.summary:
            return (f"tuned: best of {n} trials of study {self.ref.name} (validation {self.ref.metric} "
                    f"{self.summary['best']['value']:.4f})")
        if self.done >= n:
            return f"not tuned: study {self.ref.name} finished {n} trials, none complete; the experiment's settings"
        return (f"not tuned yet: study {self.ref.name} has {self.done} of {n} finished trials (`--tune` "
                f"{'resumes' if self.done else 'runs'} it); the experiment's settings until then")


class StudyLookup:
    """Finds each planned run's study: its summary under results_dir first, else the storage
    (where it is there: a SQLite file that exists, or any other database URL), writing the
    summary of a study found finished there. One look per study."""

    def __init__(self, results_dir, storage_url: str | None = None):
        self.results_dir = Path(results_dir)
        self.url = storage_url or default_storage(self.results_dir)
        self._states: dict[str, StudyState] = {}

    def state(self, ref: StudyRef) -> StudyState:
        if ref.name not in self._states:
            self._states[ref.name] = self._look(ref)
        return self._states[ref.name]

    def forget(self, ref: StudyRef) -> None:
        self._states.pop(ref.name, None)

    def _look(self, ref: StudyRef) -> StudyState:
        path = summary_path(self.results_dir, ref.experiment, ref.dataset, ref.run, ref.digest)
        try:
            summary = json.loads(path.read_text()) if path.is_file() else None
        except (OSError, json.JSONDecodeError):
            summary = None
        if _usable(summary, ref):
            return StudyState(ref, summary, len(summary["counted"]))
        file = sqlite_file(self.url)
        if file is not None and not file.is_file():
            return StudyState(ref, None, len(summary["counted"]) if summary else 0)
        import optuna

        storage = open_storage(self.url)
        try:
            study = optuna.load_study(study_name=ref.name, storage=storage)
        except KeyError:  # no such study in the storage
            return StudyState(ref)
        summary = summarize(study, ref, self.url)
        if _usable(summary, ref):
            write_summary(self.results_dir, summary)
            return StudyState(ref, summary, len(summary["counted"]))
        return StudyState(ref, None, len(summary["counted"]))


def _usable(summary: dict | None, ref: StudyRef) -> bool:
    """A summary of this study that is finished at today's budget and has a best trial."""
    return bool(summary and summary.get("study") == ref.name and summary.get("finished")
                and len(summary.get("counted") or []) >= ref.settings.trials
                and (summary.get("budget") or {}).get("trials") == ref.settings.trials and summary.get("best"))
