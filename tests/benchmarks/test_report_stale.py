"""Stale main records: a record whose config is no longer its row's (the experiment file or a
model default changed since) keeps its numbers in the table, marked, is never starred nor the
best baseline, and the verdict leaves it out; a record made before a neutral key existed is
current; so is one that equals what the experiment file resolves to now. The records carry
configs resolved by plan_runs from a temporary experiments folder, as the runner writes them."""
import copy

import pytest

from benchmarks import config as cfgmod
from benchmarks.planning import plan_runs
from benchmarks.records import record_path, write_record
from benchmarks.reports import build_reports
from benchmarks.reports.records import Record
from benchmarks.reports.staleness import Staleness

from . import toy_models  # noqa: F401 (registers toy_next_item)
from .report_records import _ranks_with_recall, _trained, ranked, record, stats, write_experiments

TOY = "{model: {name: toy_next_item, dim: 8}}"
EXPERIMENT = (f"description: stale rows\npaper_table: table3_overall\ndatasets: [ml-100k]\nproposed: [Lite, LiteOld]\n"
              f"config: {{train: {{epochs: 3}}}}\n"
              f"runs: {{Base: {TOY}, Before: {TOY}, Changed: {TOY}, Lite: {TOY}, LiteOld: {TOY}}}\n")
# recall@10 of each row: Changed (stale) would be the best baseline; LiteOld (stale) would win most
RECALL = {"Base": 0.30, "Before": 0.20, "Changed": 0.50, "Lite": 0.60, "LiteOld": 0.80, "Removed": 0.70}


def current_configs() -> dict[str, dict]:
    plan = plan_runs(set_name=None, experiments=["stale"], datasets=["ml-100k"], seeds=[0])
    return {spec.run: spec.config for spec in plan.runs}


def config_of(run: str, configs: dict[str, dict]) -> dict:
    """The config each row's record was made with."""
    cfg = copy.deepcopy(configs.get(run) or configs["Base"])
    if run == "Before":  # made before the neutral new keys existed
        for section, key in cfgmod.NEUTRAL_NEW_KEYS:
            cfg[section].pop(key)
    if run in ("Changed", "Removed"):
        cfg["model"]["dim"] = 4  # another model setting
    if run == "LiteOld":
        cfg["train"]["epochs"] = 2
    return cfg


@pytest.fixture(scope="module")
def stale_reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("stale")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cfgmod, "EXPERIMENTS_DIR", write_experiments(root / "experiments", {"stale": EXPERIMENT}))
        configs = current_configs()
        results = root / "results"
        patience = _trained("early_stopping", 3, 13, [0.1, 0.2, 0.3] + [0.25] * 10)
        for i, (run, recall) in enumerate(RECALL.items()):
            metrics, per_user = ranked(_ranks_with_recall(400, recall, seed=i))
            rec = record(run, "ml-100k", stats(943, 1349, 99287), metrics, experiment="stale", model="toy_next_item")
            rec["config"] = config_of(run, configs)
            rec["config_hash"] = cfgmod.config_hash(rec["config"])
            rec["training"] = patience
            write_record(record_path(results, "stale", "ml-100k", run, 0), rec, per_user)
        build_reports(results, root / "reports")
        yield root / "reports", configs


def section(page: str) -> str:
    return page.split("## ml-100k", 1)[1].split("\n## ", 1)[0]


def row(text: str, run: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {run} ") and "| 0." in line)


def test_current_and_stale_records_as_the_runners_rule_says(stale_reports, monkeypatch, tmp_path):
    _, configs = stale_reports
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", write_experiments(tmp_path / "experiments", {"stale": EXPERIMENT}))
    records = []
    for run in RECALL:
        cfg = config_of(run, configs)
        records.append(Record({"experiment": "stale", "run": run, "dataset": "ml-100k", "seed": 0, "status": "ok",
                               "config": cfg, "config_hash": cfgmod.config_hash(cfg)}))
    Staleness(tmp_path / "results").mark(records)
    why = {rec.run: rec.stale for rec in records}
    assert why["Base"] is None and why["Lite"] is None  # the config the experiment file resolves to now
    assert why["Before"] is None  # made before a neutral new key existed: the same run
    assert why["Changed"] == "model.dim 8 -> 4"  # now -> recorded
    assert why["LiteOld"] == "train.epochs 3 -> 2"
    assert why["Removed"] == "its run is no longer in the experiment file"


def test_a_stale_records_reason_leaves_out_settings_neither_config_reads(stale_reports, monkeypatch, tmp_path):
    # as Lite-LLM4Rec's stage2_* where no second stage runs: a changed setting that is never read
    # is not why a record is stale, so its reason names only the setting that is read
    from benchmarks.models import ModelParams

    _, configs = stale_reports
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", write_experiments(tmp_path / "experiments", {"stale": EXPERIMENT}))
    monkeypatch.setattr(ModelParams, "unread_keys", classmethod(lambda cls, section: {"note"}))
    cfg = config_of("Changed", configs)
    cfg["model"]["note"] = "recorded before a default moved"
    rec = Record({"experiment": "stale", "run": "Changed", "dataset": "ml-100k", "seed": 0, "status": "ok",
                  "config": cfg, "config_hash": cfgmod.config_hash(cfg)})
    Staleness(tmp_path / "results").mark([rec])
    assert rec.stale == "model.dim 8 -> 4"
    monkeypatch.setattr(ModelParams, "unread_keys", classmethod(lambda cls, section: set()))
    Staleness(tmp_path / "results").mark([rec])
    assert rec.stale == "model.dim 8 -> 4; model.note (absent) -> recorded before a default moved"


def test_a_stale_row_is_marked_never_starred_nor_the_best_baseline(stale_reports):
    reports, _ = stale_reports
    part = section((reports / "table3.md").read_text())
    for run in ("Changed", "LiteOld", "Removed"):
        assert f"| {run} (stale) " in row(part, f"{run} (stale)")
        assert "*" not in row(part, f"{run} (stale)")
    assert "- Changed: made under other settings than the experiment file now declares (now -> recorded: " \
           "model.dim 8 -> 4); `python run_all.py --list` shows it to run." in part
    assert "- Removed: made under other settings than the experiment file now declares (now -> recorded: " \
           "its run is no longer in the experiment file)" in part
    for run in ("Base", "Before", "Lite"):
        assert "(stale)" not in row(part, run)
    assert row(part, "Lite").count("*") == 4  # better than Base, the best current baseline
    significance = [line for line in part.splitlines() if line.startswith(("| Lite ", "| LiteOld ")) and "| R@" in line
                    or line.startswith(("| Lite ", "| LiteOld ")) and "| N@" in line]
    assert len(significance) == 8 and all("| Base " in line for line in significance)  # never Changed nor Removed
    assert all("LiteOld is stale (made under earlier settings): never starred" in line
               for line in significance if line.startswith("| LiteOld "))


def test_pages_across_tables_mark_stale_rows_too(stale_reports):
    # the accuracy-latency page reads every record: a stale row is named there as in its table
    reports, _ = stale_reports
    accuracy = (reports / "accuracy_latency.md").read_text()
    for run in ("Changed", "LiteOld", "Removed"):
        assert f"| {run} (stale) " in accuracy
    for run in ("Base", "Before", "Lite"):
        assert "(stale)" not in next(line for line in accuracy.splitlines() if line.startswith(f"| {run} "))


def test_the_verdict_leaves_stale_rows_out_and_the_index_counts_them(stale_reports):
    reports, _ = stale_reports
    part = section((reports / "verdict.md").read_text())
    assert ("**On ml-100k, the paper's claim holds: Lite is better than the best converged baseline on all 4 "
            "metrics (adjusted p < 0.05).**") in part
    compared = [line for line in part.splitlines() if line.startswith("| ")][1:]  # the header aside
    assert len(compared) == 4 and all(line.startswith("| Lite ") and "| Base " in line for line in compared)
    assert ("Left out as stale (made under an earlier version of the experiment file or the model defaults; "
            "`python run_all.py --list` shows them to run): Changed, LiteOld, Removed.") in part
    assert "Seeds per row: Base 1, Before 1, Lite 1." in part
    index = (reports / "README.md").read_text()
    assert "- Stale main records: 3 of 6, by experiment: stale (3)." in index
    assert "(6 finished record(s), 3 of them stale)" in index
