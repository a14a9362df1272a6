"""`run_all.py --tune`: each tuned row's study run to its budget, trial by trial.

A trial is one training of the row with sampled settings, exactly as the runner trains it
(`Runner.prepare` and `Runner.train`: the split handed to `fit` has no test targets), to
convergence under the suite's stopping rule. It writes no record and is never evaluated on the
test targets: its objective is the validation metric of the trained model (its best validated
weights, validated once more after training), and each validation during training is reported
to Optuna through the Trainer's `on_validation` hook (RecBole rows' validations too), where the
pruner may stop a trial whose validation curve falls below the median of earlier trials' at the
same validation (steps count validations, across a model's training stages).

Interruptions: a trial interrupted in this process (Ctrl-C, an error) is marked failed by
Optuna; one whose process was killed stays RUNNING until its heartbeat is GRACE_SECONDS old and
is then failed at the next trial's start (studies.open_storage). Neither counts: the next call
runs trials until `trials` have finished. An interrupted trial (not one that raised an error) is
tried again first, with its settings, as a new trial that names it (`retries`); with
`--checkpoint-minutes` its training resumes from the checkpoint the interrupted one left (keyed by
the run's config, so by the trial's settings), and the validations trained before are reported
again at their steps, so a trial longer than one sitting (Lite-LLM4Rec's, on CPU) spans several.
Optuna's sampler restarts from its seed in each call, so a resumed search is the same study, not
the same sequence of suggestions an uninterrupted one would have drawn.
"""
from __future__ import annotations

import gc
import time
import warnings
from dataclasses import dataclass

from ..config import RunSpec
from ..errors import SkipRun
from .studies import StudyLookup, StudyRef, finished_trials, open_storage, shown_url, summarize, write_summary


def make_sampler(options: dict):
    import optuna

    extra = {k: v for k, v in options.items() if k != "name"}
    if options["name"] == "tpe":
        return optuna.samplers.TPESampler(**extra)
    return optuna.samplers.RandomSampler(**extra)


def make_pruner(options: dict):
    import optuna

    extra = {k: v for k, v in options.items() if k != "name"}
    if options["name"] == "median":
        return optuna.pruners.MedianPruner(**extra)
    return optuna.pruners.NopPruner()


def suggest(trial, param):
    if param.type == "categorical":
        return trial.suggest_categorical(param.key, list(param.choices))
    if param.type == "int":
        return trial.suggest_int(param.key, param.low, param.high, log=param.log)
    return trial.suggest_float(param.key, param.low, param.high, log=param.log)


class PruningReporter:
    """The Trainer's `on_validation` hook for one trial: reports each validation's metric to
    Optuna (step = validations so far) and stops the trial when the pruner says so. It keeps
    the training seconds the trial's curve cost up to its last validation (`seconds`), over
    every sitting and stage: a stage's seconds start again from zero, so a fall means a new
    stage, whose seconds add to the earlier stages'."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric, self.step = trial, metric, 0
        self.seconds, self._stage, self._earlier_stages = None, 0.0, 0.0

    def __call__(self, metrics: dict, epoch: int, seconds: float | None = None) -> None:
        import optuna

        if seconds is not None:
            if seconds < self._stage:
                self._earlier_stages += self._stage
            self._stage = float(seconds)
            self.seconds = self._earlier_stages + self._stage
        self.trial.report(float(metrics[self.metric]), self.step)
        self.step += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation {self.metric} {metrics[self.metric]:.4f} at epoch {epoch} "
                                     f"(validation {self.step}) below the pruner's threshold")


class Objective:
    """One trial of a study: sample, train as the runner does (no measure, no record), return
    the trained model's validation metric."""

    def __init__(self, ref: StudyRef, spec: RunSpec, runner, say):
        self.ref, self.spec, self.runner, self.say = ref, spec, runner, say

    def __call__(self, trial) -> float:
        import optuna

        from ..runner import check_item_text
        from ..models import build_model
        from ..training import Trainer

        values = {param.key: suggest(trial, param) for param in self.ref.space}
        spec = RunSpec(self.spec.experiment, self.spec.run, self.spec.dataset, self.ref.settings.train_seed,
                       self.ref.trial_config(values), self.spec.paper_table)
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        self.say(f"[tune] {self.ref.name}: trial {trial.number}: {shown}")
        start = time.perf_counter()
        ctx, reporter = self.runner.prepare(spec), PruningReporter(trial, self.ref.metric)
        try:
            check_item_text(ctx.cfg, ctx.dataset)
            ctx.model = build_model(ctx.cfg["model"], ctx.dataset, ctx.device)
            training = self.runner.train(ctx, on_validation=reporter)
            self.runner.remove_checkpoints(spec)
            # seconds: the training's, over every sitting (a resumed trial's too); sitting_seconds:
            # this call's wall clock (preparation and the final validation included)
            trial.set_user_attr("training", {k: training.get(k) for k in ("epochs", "best_epoch", "stopped_by")}
                                | {"seconds": round(float(training["seconds"]), 1),
                                   "sitting_seconds": round(time.perf_counter() - start, 1)}
                                | ({"resumed": training["resumed"]} if training.get("resumed") else {}))
            # the trained model (its best validated weights) validated once more: the objective
            trainer = Trainer(ctx.cfg["train"], ctx.cfg["eval"], seed=ctx.cfg["seed"], progress=False)
            value = float(trainer.validate(ctx.model, ctx.split.for_training())[self.ref.metric])
        except optuna.TrialPruned as pruned:
            self.runner.remove_checkpoints(spec)  # a pruned trial is over: nothing to resume
            sitting = round(time.perf_counter() - start, 1)
            seconds = round(reporter.seconds, 1) if reporter.seconds is not None else sitting
            trial.set_user_attr("training", {"stopped_by": "pruned", "seconds": seconds, "sitting_seconds": sitting})
            self.say(f"[tune] {self.ref.name}: trial {trial.number}: pruned: {pruned} ({seconds:.0f} s of training)")
            raise
        except Exception as error:  # an error, not an interruption: never tried again as it was
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:500])
            raise
        finally:
            ctx.model = None
            self.runner.current = None
            gc.collect()
        self.say(f"[tune] {self.ref.name}: trial {trial.number}: validation {self.ref.metric} {value:.4f} "
                 f"({training.get('stopped_by')}, {training.get('epochs')} epochs, {time.perf_counter() - start:.0f} s)")
        return value


@dataclass
class StudyOutcome:
    """What one --tune call did for one study."""

    ref: StudyRef
    ran: int              # trials run in this call
    finished: int         # finished trials in the study now
    best: dict | None     # the summary's best (trial, value, params) once finished
    skipped: str = ""     # why the study could not run here (a model's SkipRun)


def retry_interrupted(study) -> list[int]:
    """Every interrupted trial (failed without an error of its own: Ctrl-C, or a killed
    process's, failed as stale) not yet tried again is queued with its settings, as a new trial
    naming it in `retries`; the numbers queued."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retries") for t in trials}
    queued = []
    for t in trials:
        if t.state == optuna.trial.TrialState.FAIL and t.params and "error" not in t.user_attrs \
                and t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retries": t.number})
            queued.append(t.number)
    return queued


def run_study(ref: StudyRef, spec: RunSpec, runner, url: str, results_dir, say) -> StudyOutcome:
    """Run the study's trials until `trials` have finished (complete or pruned); a finished
    study runs none. The summary is rewritten after every trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the suite prints its own lines
    storage = open_storage(url)
    study = optuna.create_study(study_name=ref.name, storage=storage, direction="maximize",
                                sampler=make_sampler(ref.settings.sampler), pruner=make_pruner(ref.settings.pruner),
                                load_if_exists=True)
    if not study.user_attrs:
        for key, value in {"experiment": ref.experiment, "dataset": ref.dataset, "run": ref.run,
                           "metric": ref.metric, "budget": ref.settings.budget(),
                           "space": {p.key: p.as_dict() for p in ref.space}}.items():
            study.set_user_attr(key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # trials of killed processes, silent past the grace period
    objective, ran = Objective(ref, spec, runner, say), 0
    done = len(finished_trials(study.trials))
    if done >= ref.settings.trials:
        say(f"[tune] {ref.name}: finished ({done} trials), nothing to run")
    else:
        for number in retry_interrupted(study):
            say(f"[tune] {ref.name}: trial {number} was interrupted: tried again first, with its settings")
    while done < ref.settings.trials:
        try:
            study.optimize(objective, n_trials=1, catch=(), gc_after_trial=False)
        except SkipRun as reason:
            return StudyOutcome(ref, ran, done, None, skipped=str(reason))
        finally:
            write_summary(results_dir, summarize(study, ref, url))
        ran += 1
        done = len(finished_trials(study.trials))
    summary = summarize(study, ref, url)
    write_summary(results_dir, summary)
    return StudyOutcome(ref, ran, done, summary["best"])


def tune_plan(plan, runner, lookup: StudyLookup, *, say=print, keep_going: bool = False) -> list[StudyOutcome]:
    """Every tuned row of the plan searched once (the plan's seeds share one study); the rows
    without a study are named. Without keep_going the first failing study stops the call."""
    outcomes, seen, untuned = [], set(), []
    for spec in plan.runs:
        state = getattr(spec, "study", None)
        if state is None:
            label = f"{spec.experiment}/{spec.dataset}/{spec.run}"
            if label not in untuned:
                untuned.append(label)
            continue
        if state.ref.name in seen:
            continue
        seen.add(state.ref.name)
        say(f"[tune] {state.ref.name}: {state.ref.settings.trials} trials of {len(state.ref.space)} settings "
            f"({', '.join(p.key for p in state.ref.space)}), validation {state.ref.metric}; storage {shown_url(lookup.url)}")
        try:
            outcome = run_study(state.ref, spec, runner, lookup.url, lookup.results_dir, say)
        except Exception as error:
            if not keep_going:
                raise
            say(f"[tune] {state.ref.name}: failed: {type(error).__name__}: {error}")
            outcome = StudyOutcome(state.ref, 0, 0, None, skipped=f"failed: {type(error).__name__}: {error}")
        lookup.forget(state.ref)
        outcomes.append(outcome)
    if untuned:
        say(f"[tune] not searched (no `tuning:` entry for them; they keep their experiment's settings): "
            f"{', '.join(untuned)}")
    return outcomes
