"""--tune end to end on a tiny dataset: a study runs its trials (no records, no test targets),
is interrupted inside a trial, resumes to its budget past a trial left RUNNING by a killed
process, is not repeated once finished; the normal run then trains with the best settings, says
so in its record, and is the experiment's main record. The Trainer's validation hook and the
pruning it drives."""
import json
import time
import warnings

import optuna
import pytest
import torch

import run_all
import tests.benchmarks.toy_models  # noqa: F401  (registers toy_next_item)
from benchmarks import runner as runner_mod
from benchmarks.config import load_experiment, resolve_run
from benchmarks.models import build_model
from benchmarks.split import leave_one_out
from benchmarks.training import Trainer
from benchmarks.tuning import studies as studies_mod
from benchmarks.tuning.search import PruningReporter

from .test_runner import cli

TUNED = """description: toy tuning
paper_table: null
datasets: [ml-1m]
config: {train: {epochs: 6, patience: 2, lr: 0.05}, eval: {protocol_controls: []},
         latency: {max_batches: 1, warmup_batches: 0, batch_size: 16}}
runs:
  MostPopular: {model: {name: most_popular}}
  Toy:
    model: {name: toy_next_item, dim: 8}
    space:
      train.lr: {type: float, low: 0.005, high: 0.2, log: true}
      model.dim: {type: categorical, choices: [4, 8, 16]}
tuning:
  trials: 3
  sampler: {name: tpe, seed: 0, n_startup_trials: 2}
  pruner: {name: median, n_startup_trials: 1}
  runs: [Toy]
"""


def states(storage_url):
    [summary] = optuna.get_all_study_summaries(studies_mod.open_storage(storage_url))
    study = optuna.load_study(study_name=summary.study_name, storage=studies_mod.open_storage(storage_url))
    return study, [t.state.name for t in sorted(study.trials, key=lambda t: t.number)]


def test_tune_interrupted_resumes_to_its_budget_then_the_normal_run_uses_the_best(tmp_path, toy_ml1m, monkeypatch,
                                                                                   capsys, one_thread):
    exp = tmp_path / "toytune.yaml"
    exp.write_text(TUNED)
    args = cli(tmp_path, toy_ml1m, exp)
    storage = studies_mod.default_storage(tmp_path / "results")
    trainings, real_train = [], runner_mod.Runner.train

    def train(self, ctx, on_validation=None):
        trainings.append(ctx.cfg)
        assert on_validation is not None  # every trial's validations reach Optuna
        if len(trainings) == 2 and interrupt:
            raise KeyboardInterrupt  # Ctrl-C inside the second trial
        return real_train(self, ctx, on_validation)

    monkeypatch.setattr(runner_mod.Runner, "train", train)
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        run_all.main([*args, "--tune"])
    study, seen = states(storage)
    assert seen == ["COMPLETE", "FAIL"]  # Optuna marked the interrupted trial failed: it does not count
    assert not list((tmp_path / "results").glob("toytune/**/*.json"))  # trials write no records
    assert study.study_name.startswith("toytune/ml-1m/Toy/")
    # a killed process leaves its trial RUNNING, its heartbeat going stale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Optuna: heartbeats are for optimize(); here a dead process's
        stale = study.ask()
    studies_mod.open_storage(storage).record_heartbeat(stale._trial_id)
    monkeypatch.setattr(studies_mod, "GRACE_SECONDS", 1)
    time.sleep(2.2)

    interrupt = False
    assert run_all.main([*args, "--tune"]) == 0
    study, seen = states(storage)
    assert seen[:3] == ["COMPLETE", "FAIL", "FAIL"]  # the stale trial was failed at the start, not counted
    assert sum(s in ("COMPLETE", "PRUNED") for s in seen) == 3 and "RUNNING" not in seen
    assert len(trainings) == 1 + 1 + 2
    assert all(cfg["seed"] == 0 and cfg["model"]["dim"] in (4, 8, 16) for cfg in trainings)
    # the interrupted trial went again first, with its settings; the stale one had none to repeat
    retry = study.trials[3]
    assert retry.user_attrs["retries"] == 1 and retry.params == study.trials[1].params
    assert (trainings[2]["train"]["lr"], trainings[2]["model"]["dim"]) == \
        (trainings[1]["train"]["lr"], trainings[1]["model"]["dim"])
    assert not any("retries" in t.user_attrs for t in study.trials[4:])
    summary = json.loads(next((tmp_path / "results" / "tuning").rglob("Toy__*.json")).read_text())
    assert summary["finished"] and len(summary["counted"]) == 3 and summary["budget"]["trials"] == 3
    assert not list((tmp_path / "results").glob("toytune/**/*.json"))

    # a second call finds the study finished: no trial runs
    capsys.readouterr()
    assert run_all.main([*args, "--tune"]) == 0
    assert len(trainings) == 4 and len(states(storage)[1]) == len(seen)
    assert "nothing to run" in capsys.readouterr().out

    # a copy of results/ without the summary (another machine's storage): the lookup reads the
    # storage, finds the study finished and writes its summary back
    summary_file = next((tmp_path / "results" / "tuning").rglob("Toy__*.json"))
    summary_file.unlink()
    assert run_all.main([*args, "--tune", "--list"]) == 0
    assert "tuned: best of 3 trials of study toytune/ml-1m/Toy/" in capsys.readouterr().out
    assert json.loads(summary_file.read_text())["finished"]

    # the normal run: the best settings, said so in the record, which is the main record
    monkeypatch.setattr(runner_mod.Runner, "train", real_train)
    assert run_all.main(args) == 0
    out = capsys.readouterr().out
    assert "tuned: best of 3 trials of study toytune/ml-1m/Toy/" in out
    folder = tmp_path / "results" / "toytune" / "ml-1m"
    assert sorted(p.name for p in folder.glob("*.json")) == ["MostPopular__seed0.json", "Toy__seed0.json"]
    record = json.loads((folder / "Toy__seed0.json").read_text())
    best = study.best_trial  # every finished trial is counted here (3 of 3)
    assert record["tuning"] == {"study": study.study_name, "storage": storage, "trials": 3, "metric": "recall@10",
                                "best_trial": best.number, "best_value": best.value, "best_params": best.params}
    assert record["config"]["train"]["lr"] == best.params["train.lr"]
    assert record["config"]["model"]["dim"] == best.params["model.dim"]
    assert "variant" not in record
    assert "tuning" not in json.loads((folder / "MostPopular__seed0.json").read_text())
    # the tuning page: the budget, the space, the study's best settings and Optuna's plots
    page = (tmp_path / "reports" / "tuning_toytune.md").read_text()
    assert "Trials: 3 finished trials" in page and "Sampler: tpe (seed 0, n_startup_trials 2)" in page
    assert "| Toy   | train.lr" in page and "float in [0.005, 0.2], log scale" in page
    assert f"Study `{study.study_name}`" in page and "3 of 3 trials finished" in page
    trained = sum(t.user_attrs["training"]["seconds"] for t in study.trials if "training" in t.user_attrs)
    assert f"Time recorded for 3 of its {len(study.trials)} trials: {trained / 3600:.1f} hours ({trained:,.0f} s) of " \
           "training, over every sitting" in page
    assert "1 failed or interrupted (not counted)" not in page and "2 failed or interrupted (not counted)" in page
    assert f"| validation R@10 (objective) | {best.value:.4f}" in page
    assert "Best settings (the chosen ones, applied by a normal run):" in page
    for part in ("history", "validations"):
        assert len(list((tmp_path / "reports" / "figures").glob(f"tuning__toytune__ml-1m__toy__*__{part}.png"))) == 1
    assert "[Tuning: toytune](tuning_toytune.md)" in (tmp_path / "reports" / "README.md").read_text()
    # and it is done: a third call trains nothing
    assert run_all.main(args) == 0
    assert "Nothing trained" in capsys.readouterr().out
    # a study not finished yet: its best so far is not what a normal run applies, and the page says so
    summary_file.write_text(json.dumps({**json.loads(summary_file.read_text()), "finished": False}))
    assert run_all.main([*args, "--report-only"]) == 0
    page = (tmp_path / "reports" / "tuning_toytune.md").read_text()
    assert "Best settings so far (a normal run applies a study's best only once it has finished" in page
    assert "applied by a normal run):" not in page
    # the command line sits above the tuned settings: a variant, the searched lr replaced, dim kept
    assert run_all.main([*args, "-o", "train.lr=0.01", "--runs", "Toy", "--tag", "lr"]) == 0
    variant = json.loads((folder / "Toy__seed0__lr.json").read_text())
    assert variant["config"]["train"]["lr"] == 0.01 and variant["config"]["model"]["dim"] == best.params["model.dim"]
    assert variant["variant"]["differs"]["train.lr"] == [best.params["train.lr"], 0.01]


def test_an_interrupted_trial_resumes_from_its_checkpoint_and_reports_its_whole_curve(tmp_path, toy_ml1m, monkeypatch,
                                                                                     one_thread):
    exp = tmp_path / "toytune.yaml"
    exp.write_text(TUNED.replace("patience: 2", "patience: 10").replace("trials: 3", "trials: 1"))
    monkeypatch.chdir(tmp_path)  # .cache/checkpoints
    args = cli(tmp_path, toy_ml1m, exp, "--checkpoint-minutes", "0")  # a checkpoint at every epoch's end
    storage = studies_mod.default_storage(tmp_path / "results")
    heard, real_validated = [], Trainer.validated

    def validated(self, metrics, epoch, seconds=None):
        heard.append(epoch)
        if interrupt and epoch == 3:
            raise KeyboardInterrupt  # the sitting ends during epoch 3's validation
        return real_validated(self, metrics, epoch, seconds)

    monkeypatch.setattr(Trainer, "validated", validated)
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        run_all.main([*args, "--tune"])
    study, seen = states(storage)
    assert seen == ["FAIL"] and heard == [1, 2, 3]
    [checkpoint] = (tmp_path / ".cache" / "checkpoints").glob("*.pt")  # epoch 2's state
    state = torch.load(checkpoint, weights_only=False)
    state["seconds"] += 1000.0  # as if the first sitting had trained for 1000 s more
    torch.save(state, checkpoint)

    interrupt, heard[:] = False, []
    assert run_all.main([*args, "--tune"]) == 0
    study, seen = states(storage)
    assert seen == ["FAIL", "COMPLETE"]
    first, retry = study.trials
    assert retry.params == first.params and retry.user_attrs["retries"] == 0
    assert retry.user_attrs["training"]["resumed"] == 1 and retry.user_attrs["training"]["epochs"] == 6
    # its training seconds count the first sitting's too; its sitting's wall clock does not
    assert retry.user_attrs["training"]["seconds"] > 1000.0 > retry.user_attrs["training"]["sitting_seconds"]
    # epochs 1 and 2 told again from the checkpoint, then 3 to 6 trained: one step per validation
    assert heard == [1, 2, 3, 4, 5, 6]
    assert sorted(retry.intermediate_values) == list(range(6))
    assert [retry.intermediate_values[i] for i in (0, 1)] == [first.intermediate_values[i] for i in (0, 1)]
    assert not list((tmp_path / ".cache" / "checkpoints").glob("*"))  # a finished trial leaves none


def test_tune_refuses_what_it_cannot_search(tmp_path, toy_ml1m, capsys):
    exp = tmp_path / "toytune.yaml"
    exp.write_text(TUNED)
    assert run_all.main([*cli(tmp_path, toy_ml1m, exp), "--tune", "--runs", "MostPopular"]) == 2
    assert "nothing to tune" in capsys.readouterr().err
    assert run_all.main([*cli(tmp_path, toy_ml1m, exp), "--tune", "--tuning-storage", "studies.db"]) == 2
    assert "--tuning-storage must be a database URL" in capsys.readouterr().err
    assert run_all.main([*cli(tmp_path, toy_ml1m, exp), "--tune", "--force"]) == 2
    assert run_all.main([*cli(tmp_path, toy_ml1m, exp), "--tune", "-o", "train.patience=1"]) == 2
    assert "--tune searches the rows as their experiment files state them" in capsys.readouterr().err
    assert run_all.main([*cli(tmp_path, toy_ml1m, exp), "--tune", "--list"]) == 0
    assert "has 0 of 3 finished trials" in capsys.readouterr().out
    other = f"sqlite:///{tmp_path / 'elsewhere' / 'studies.db'}"  # any database URL Optuna accepts
    assert run_all.main([*cli(tmp_path, toy_ml1m, exp), "--tune", "--list", "--tuning-storage", other]) == 0
    assert "has 0 of 3 finished trials" in capsys.readouterr().out
    assert not (tmp_path / "results").exists()  # listing opens no storage


class FakeTrial:
    def __init__(self, prune_at: int | None):
        self.reported, self.prune_at = [], prune_at

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return self.prune_at is not None and len(self.reported) > self.prune_at


def test_every_validation_reaches_the_hook_and_a_pruned_trial_stops_training(tmp_path, toy_dataset, one_thread):
    exp = tmp_path / "toytune.yaml"
    exp.write_text(TUNED)
    name, loaded = load_experiment(str(exp))
    cfg = resolve_run(name, loaded, "Toy", "ml-1m", 0).config
    split = leave_one_out(toy_dataset).for_training()
    model = build_model(cfg["model"], toy_dataset, __import__("torch").device("cpu"))
    trial = FakeTrial(prune_at=None)
    result = Trainer(cfg["train"], cfg["eval"], seed=0, progress=False,
                     on_validation=PruningReporter(trial, "recall@10")).fit(model, split)
    assert [step for step, _ in trial.reported] == list(range(len(result["history"])))
    assert [v for _, v in trial.reported] == [h["valid"]["recall@10"] for h in result["history"]]
    trial = FakeTrial(prune_at=2)
    model = build_model(cfg["model"], toy_dataset, __import__("torch").device("cpu"))
    with pytest.raises(optuna.TrialPruned, match="validation recall@10"):
        Trainer(cfg["train"], cfg["eval"], seed=0, progress=False,
                on_validation=PruningReporter(trial, "recall@10")).fit(model, split)
    assert len(trial.reported) == 3


def test_the_reporter_adds_each_stage_s_seconds_to_the_earlier_stages():
    reporter = PruningReporter(FakeTrial(prune_at=None), "recall@10")
    for epoch, seconds in [(1, 10.0), (2, 20.0), (1, 4.0), (2, 8.0), (3, None)]:  # a second stage from 4 s
        reporter({"recall@10": 0.1}, epoch, seconds)
    assert reporter.seconds == 28.0 and reporter.step == 5


def test_a_pruned_trial_says_so_and_its_summary_keeps_its_seconds(tmp_path, toy_ml1m, monkeypatch, capsys, one_thread):
    exp = tmp_path / "toytune.yaml"
    exp.write_text(TUNED)
    real_call = PruningReporter.__call__

    def prune_trial_1(self, metrics, epoch, seconds=None):
        if self.trial.number == 1:
            self.seconds = (seconds or 0.0) + 500.0  # the training seconds heard so far
            self.trial.report(float(metrics[self.metric]), self.step)
            raise optuna.TrialPruned(f"validation {self.metric} at epoch {epoch} below the threshold")
        return real_call(self, metrics, epoch, seconds)

    monkeypatch.setattr(PruningReporter, "__call__", prune_trial_1)
    assert run_all.main([*cli(tmp_path, toy_ml1m, exp), "--tune"]) == 0
    out = capsys.readouterr().out
    assert "trial 1: pruned: validation recall@10 at epoch 1 below the threshold (" in out
    summary = json.loads(next((tmp_path / "results" / "tuning").rglob("Toy__*.json")).read_text())
    [pruned] = [t for t in summary["trials"] if t["number"] == 1]
    assert pruned["state"] == "PRUNED" and pruned["training"]["stopped_by"] == "pruned"
    # the training seconds the reporter heard at the prune (500 s added above), not the wall clock
    assert pruned["training"]["seconds"] >= 500.0 > pruned["training"]["sitting_seconds"] >= 0


def test_the_tuning_page_says_what_the_trials_cost_and_how_it_was_counted():
    from benchmarks.reports.tuning import _trial_seconds

    new = [{"training": {"seconds": 5400.0, "sitting_seconds": 60.0}}, {"training": {"seconds": 1800.0,
                                                                                     "sitting_seconds": 1800.0}},
           {"training": None}]  # an interrupted trial: nothing trained to count
    assert _trial_seconds(new) == " Time recorded for 2 of its 3 trials: 2.0 hours (7,200 s) of training, over every sitting."
    old = [{"training": {"seconds": 3600.0}}, {"training": {"seconds": 3600.0, "sitting_seconds": 3600.0}}]
    assert "2.0 hours (7,200 s) of wall clock, each trial's last sitting only" in _trial_seconds(old)
    assert _trial_seconds([{"training": None}]) == ""
