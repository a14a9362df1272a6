"""Whether each main record is still its row: CURRENT when its config is the same run as the
experiment file (and the model defaults) now declare, STALE when it was made under an earlier
version of them. A stale record keeps its place and its numbers, marked as such: its table row
says `(stale)` and what differs, it is never starred nor the best baseline, and the verdict
leaves it out (`python run_all.py --list` shows it to run).

The rule is the runner's (`Runner.same_run`, what `--list` and `is_done` use): the record's
config against the spec `plan_runs` resolves now for its experiment, dataset, run and seed
(the tuned rows with the best settings of their finished studies, read from the summaries under
results/tuning/ alone: a report never opens the study storage). A key added since with a
neutral default (config.NEUTRAL_NEW_KEYS) makes no difference; nor do where the run ran (its
device and thread count: config.identity_hash leaves them out) and where its data files lie, as
long as they hash the same. Where the dataset's files are not here to hash, that last part is skipped: the
record is compared by identity alone (config.identity_hash). A record whose experiment file or
run no longer exists, or that the file no longer resolves, is stale too.

Each experiment is planned once per build; the records of `--model` (the quick experiment) are
compared with the model's defaults.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .. import config as cfgmod
from ..errors import ConfigError
from ..models import unread_model_keys
from ..planning import QUICK
from ..variants import SOURCE_HASH, describe, differences
from .records import Record

TO_RUN = "`python run_all.py --list` shows it to run"


def summaries_only(results_dir: Path):
    """The tuned rows' studies as the summaries under results_dir give them (never the storage:
    a URL whose SQLite file is not there makes the lookup read the summaries alone)."""
    from ..tuning.studies import StudyLookup

    return StudyLookup(results_dir, f"sqlite:///{results_dir}/tuning/(the reports read the summaries only)")


class Staleness:
    """One build's check of its main records (`mark`), each experiment planned once."""

    def __init__(self, results_dir: str | Path, named: dict[str, Path] | None = None):
        from ..runner import Runner  # late: the runner imports the models

        self.runner = Runner(results_dir, progress=False)
        self.studies = summaries_only(Path(results_dir))
        self.named = named or {}

    def mark(self, records: list[Record]) -> None:
        """Set each main record's `stale` (None where it is current): what differs."""
        by_experiment: dict[str, list[Record]] = defaultdict(list)
        for rec in records:
            if rec.variant is None and not rec.stands_in:
                by_experiment[rec.experiment].append(rec)
        for experiment, recs in by_experiment.items():
            specs, gone = self.specs(experiment, recs)
            for rec in recs:
                spec = specs.get((rec.dataset, rec.run, rec.seed))
                if spec is not None:
                    rec.stale = self.why(rec, spec)
                else:
                    rec.stale = gone.get((rec.dataset, rec.run)) or gone.get(rec.run) or "not planned now"

    def specs(self, experiment: str, recs: list[Record]) -> tuple[dict, dict]:
        """((dataset, run, seed) -> the spec planned now; why the others have none, by run or by
        (dataset, run))."""
        from ..planning import plan_runs

        if experiment == QUICK:
            kwargs, runs = {"models": sorted({r.run for r in recs})}, sorted({r.run for r in recs})
        else:
            try:
                _, exp = cfgmod.load_experiment(str(self.named.get(experiment, experiment)))
            except ConfigError:
                return {}, {r.run: "its experiment file no longer exists" for r in recs}
            runs = sorted({r.run for r in recs} & set(exp["runs"]))
            kwargs = {"experiments": [str(self.named.get(experiment, experiment))], "runs": runs}
        gone: dict = {r.run: "its run is no longer in the experiment file" for r in recs if r.run not in runs}
        specs = {}
        for datasets in _attempts(sorted({r.dataset for r in recs})):
            if not runs:
                break
            try:
                plan = plan_runs(set_name=None, datasets=datasets, seeds=sorted({r.seed for r in recs}),
                                 studies=self.studies, **kwargs)
            except (ConfigError, KeyError) as err:
                if len(datasets) == 1:
                    gone.update({(datasets[0], run): f"the experiment file does not resolve it now ({err})"
                                 for run in runs})
                continue
            specs.update({(s.dataset, s.run, s.seed): s for s in plan.runs})
            if len(datasets) > 1:
                break
        return specs, gone

    def why(self, rec: Record, spec) -> str | None:
        """None where the record is the spec's run; else what differs (describe's words)."""
        config = rec.config
        if "data" not in config:
            return "its config is not a resolved one (no data section)"
        if self.runner.same_run(rec.raw, spec):
            return None
        if cfgmod.identity_hash(cfgmod.with_new_defaults(config)) == cfgmod.identity_hash(spec.config):
            here = self.runner.source_hash_of(spec.config["data"])
            if here is None:  # the files are not here to hash: identity alone
                return None
            return describe({SOURCE_HASH: [here[:16], rec.source_hash[:16] or "unknown"]})
        recorded = cfgmod.with_new_defaults(config)
        differs = differences(spec.config, recorded)
        # a setting neither config reads (ModelParams.unread_keys) is not why it is stale: say only
        # what is (identity_hash leaves those out too, so a read setting differs whenever we get here)
        unread = {f"model.{key}" for key in unread_model_keys(spec.config.get("model") or {})
                  & unread_model_keys(recorded.get("model") or {})}
        return describe({key: pair for key, pair in differs.items() if ".".join(key.split(".")[:2]) not in unread})


def _attempts(datasets: list[str]):
    """All the datasets in one plan; where that fails, each by itself."""
    yield datasets
    if len(datasets) > 1:
        yield from ([d] for d in datasets)


def mark_stale(records: list[Record], results_dir: str | Path, named: dict[str, Path] | None = None) -> None:
    Staleness(results_dir, named).mark(records)
