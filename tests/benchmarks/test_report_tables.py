"""Columns, rows and readings of the report tables: the work per batch and share of peak, rows
timed as published and at their best setting, a paper-rows page's reference row, what the
indexing control's numbers say, and runs that differ only in their backbone compared on validation."""
import re

import numpy as np

from benchmarks import config as cfgmod
from benchmarks.records import record_path, write_record
from benchmarks.reports import build_reports
from benchmarks.reports.records import Record
from tests.benchmarks.report_records import _ranks_with_recall, _trained, ranked, record, stats, write_experiments
from tests.benchmarks.report_records import every_record_current  # noqa: F401 (autouse: hand-made configs count as current)


METRICS = {"recall@10": 0.2, "recall@20": 0.3, "ndcg@10": 0.1, "ndcg@20": 0.12}


def experiments_in(tmp_path, monkeypatch, files: dict):
    """`files` (name -> YAML) as the suite's experiment files; the results folder for their records."""
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", write_experiments(tmp_path / "experiments", files))
    return tmp_path / "results"


def test_latency_tables_show_the_work_per_batch_and_the_share_of_peak(tmp_path, monkeypatch):
    results = experiments_in(tmp_path, monkeypatch,
                             {"t3": "paper_table: table3_overall\nruns: {SASRec: {}, Old: {}}\n"})
    m = METRICS
    write_record(record_path(results, "t3", "ml-1m", "SASRec", 0),
                 record("SASRec", "ml-1m", stats(100, 50, 2000), m,
                        latency={"gflop_per_batch": 13.6, "share_of_peak": 0.4567}))
    write_record(record_path(results, "t3", "ml-1m", "Old", 0), record("Old", "ml-1m", stats(100, 50, 2000), m))
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "table3.md").read_text()
    header = next(line for line in page.splitlines() if line.startswith("| model"))
    assert "| GFLOP/batch " in header and "| share of peak " in header
    assert re.search(r"\| SASRec +\|.*\| 13\.60 +\| 0\.457 ", page)


def test_training_throughput_columns_weigh_two_stages_by_their_seconds(tmp_path, monkeypatch):
    results = experiments_in(tmp_path, monkeypatch,
                             {"t3": "paper_table: table3_overall\nruns: {Single: {}, TwoStage: {}, Old: {}}\n"})
    m = METRICS
    single = _trained("early_stopping", 2, 3, [0.1, 0.2, 0.2])
    single.update(seconds=100.0, throughput={"rows_per_second": 50.0, "share_of_peak": 0.4})
    first = {**_trained("early_stopping", 2, 3, [0.1, 0.2, 0.2]), "seconds": 300.0,
             "throughput": {"rows_per_second": 100.0, "share_of_peak": 0.6}}
    # a two-stage record: the second stage's fields, the seconds of both, the first under stage1
    two = {**_trained("early_stopping", 1, 2, [0.2, 0.2]), "seconds": 400.0, "stage1": first, "stage2_epochs": 2,
           "throughput": {"rows_per_second": 20.0, "share_of_peak": 0.2}}
    for run, training in (("Single", single), ("TwoStage", two), ("Old", _trained("early_stopping", 2, 3, [0.1, 0.2, 0.2]))):
        rec = record(run, "ml-1m", stats(100, 50, 2000), m)
        rec["training"] = training
        write_record(record_path(results, "t3", "ml-1m", run, 0), rec)
    assert Record(rec).train_rows_per_second is None  # Old: made before throughput was recorded
    two_record = Record({**rec, "training": two})
    assert two_record.train_rows_per_second == (300 * 100.0 + 100 * 20.0) / 400 == 80.0
    assert two_record.train_share_of_peak == (300 * 0.6 + 100 * 0.2) / 400
    assert Record({**rec, "training": {**two, "throughput": None}}).train_share_of_peak is None  # one stage unknown
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "table3.md").read_text()
    assert "`train share of peak`:" in page
    assert re.search(r"\| Single +\|.*\| 100\.0 +\| 50\.0 +\| 0\.400 +\|", page)
    assert re.search(r"\| TwoStage +\|.*\| 400\.0 +\| 80\.0 +\| 0\.500 +\|", page)
    assert re.search(r"\| Old +\|.*\| 3\.0 +\| n/a +\| n/a +\|", page)


def test_a_trained_row_that_ranks_every_user_alike_is_named_under_its_table(tmp_path, monkeypatch):
    results = experiments_in(tmp_path, monkeypatch,
                             {"t3": "paper_table: table3_overall\nruns: {MostPopular: {}, Collapsed: {}, SASRec: {}, Old: {}}\n"})
    m = METRICS
    for run, spread, trained in [("MostPopular", 0.0, False), ("Collapsed", 9.5e-8, True),
                                 ("SASRec", 0.04, True), ("Old", None, True)]:
        rec = record(run, "ml-1m", stats(100, 50, 2000), m)
        if spread is not None:
            rec["evaluation"]["user_spread"] = spread
        if trained:
            rec["training"] = _trained("early_stopping", 2, 3, [0.1, 0.2, 0.2])
        write_record(record_path(results, "t3", "ml-1m", run, 0), rec)
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "table3.md").read_text()
    named = [line for line in page.splitlines() if "ranks every user alike" in line]
    # popularity is one ranking by design, SASRec tells users apart, Old's record holds no spread
    assert len(named) == 1 and named[0].startswith("- Collapsed: ") and "9.5e-08" in named[0]


def test_rows_timed_as_published_and_at_their_best_with_both_ratios(tmp_path, monkeypatch):
    results = experiments_in(tmp_path, monkeypatch, {"t4": (
        "paper_table: table4_inference_ms_per_batch_of_32\nruns: {P5: {}, Lite-LLM4Rec: {}}\nproposed: [Lite-LLM4Rec]\n")})
    m = METRICS
    for run, published, best in (("P5", 6000.0, 3000.0), ("Lite-LLM4Rec", 90.0, 30.0)):
        rec = record(run, "ml-1m", stats(100, 50, 2000), m, experiment="t4", model=run.lower().replace("-", "_"),
                     latency={"ms_per_batch_median": published})
        rec["inference_settings"] = [
            {"label": "bf16 eager", "setting": {"precision": "bf16", "compile": False},
             "latency": {"ms_per_batch_median": best, "share_of_peak": 0.5}, "metrics": {**m, "recall@10": 0.19}},
            {"label": "fp32 compiled", "setting": {"precision": "fp32", "compile": True},
             "latency": {"ms_per_batch_median": best * 1.5}, "metrics": m}]
        write_record(record_path(results, "t4", "ml-1m", run, 0), rec)
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "table4.md").read_text()
    p5 = next(line for line in page.splitlines() if line.startswith("| P5 ") and "bf16 eager" in line)
    cells = [c.strip() for c in p5.strip("|").split("|")]
    assert cells[1:] == ["6000.00", "bf16 eager", "3000.00", "2.00x", "0.2000", "0.1900", "0.500", "66.7x", "100.0x"]


def test_a_paper_rows_only_page_also_shows_its_reference_row():
    """Table 2 keeps to the paper's rows plus MostPopular, the floor each variant is tested
    against (paired over users), so a generative row below the floor shows on the page."""
    from dataclasses import replace

    from benchmarks.config import load_experiment
    from benchmarks.reports.paper import paper_reference, paper_row_names, rows_wanted

    _, exp = load_experiment("table1_2_4_5_generative")
    table2 = next(page for page in exp["report"] if page.page == "table2")
    paper = paper_reference()
    assert table2.paper_rows_only and table2.reference_run == "MostPopular"
    assert "MostPopular" not in paper_row_names(table2, paper)
    assert rows_wanted(table2, paper) == paper_row_names(table2, paper) | {"MostPopular"}
    assert {"P5", "POD"} <= rows_wanted(table2, paper)
    assert rows_wanted(replace(table2, reference_run=None), paper) == paper_row_names(table2, paper)
    assert rows_wanted(replace(table2, paper_rows_only=False), paper) is None


def test_the_indexing_control_says_what_its_numbers_show(tmp_path):
    from benchmarks.reports.records import Record
    from benchmarks.reports.views import control_reading

    rng = np.random.default_rng(0)

    def runs(name, ranks, stopped_by="early_stopping"):
        metrics, users = ranked(ranks)
        rec = record(name, "ml-1m", stats(300, 100, 5000), metrics)
        rec["training"] = {"epochs": 9, "stopped_by": stopped_by, "best_epoch": 4, "history": [{"epoch": 1}]}
        path = record_path(tmp_path / name, "t3", "ml-1m", name, 0)
        write_record(path, rec, users)
        return [Record(rec, path)]

    good, poor = rng.integers(1, 8, 300), rng.integers(5, 60, 300)
    place = ("gen", "ml-1m")
    leaks = control_reading(place, "indexing", ("P5_seq", "sequential", runs("a", good)),
                            ("P5", "random", runs("b", poor)))
    assert leaks.startswith("gen / ml-1m: P5_seq (indexing=sequential) against P5 (indexing=random), R@10 ")
    assert "over 300 users, paired t p" in leaks and "scores higher, as the leak predicts" in leaks
    same = control_reading(place, "indexing", ("P5_seq", "sequential", runs("c", poor)),
                           ("P5", "random", runs("d", poor)))
    assert "(+0.0000 over 300 users, paired t p 1" in same and "no significant difference" in same
    lower = control_reading(place, "indexing", ("P5_seq", "sequential", runs("e", poor)),
                            ("P5", "random", runs("f", good)))
    assert "scores lower, so the leak does not show here" in lower
    cut = control_reading(place, "indexing", ("P5_seq", "sequential", runs("g", good, "epochs")),
                          ("P5", "random", runs("h", poor)))
    assert "P5_seq stopped by a cap, not by patience, so the difference does not yet say" in cut
    stale = runs("i", good)
    stale[0].stale = "train.lr 0.0001 -> 0.0005"
    old = control_reading(place, "indexing", ("P5_seq", "sequential", stale), ("P5", "random", runs("j", poor)))
    assert old.startswith("gen / ml-1m: P5_seq (stale) (indexing=sequential) against P5 (indexing=random)")
    assert "P5_seq was made under earlier settings than the experiment file now declares (stale)" in old
    assert "as the leak predicts" not in old  # a stale pair's numbers are not read as the declared rows'


def test_runs_that_differ_only_in_their_backbone_are_compared_on_validation(tmp_path, monkeypatch):
    """P5 on two backbones (the second a row the paper's table does not list) and POD on one: the
    page compares the P5 pair on their validation metric, never on test numbers, and says when the
    comparison is not a finished choice (a row cut by its cap, other validation users)."""
    results = experiments_in(tmp_path, monkeypatch, {"gen": (
        "paper_table: table3_overall\nruns: {P5: {}, P5_big: {}, POD: {}}\n")})
    patience = _trained("early_stopping", 3, 13, [0.1, 0.2, 0.3] + [0.25] * 10)
    cut = _trained("time_budget", 1, 1, [0.05])
    rows = {  # run: (backbone, validation R@10, test R@10, training, validation users)
        "P5": ("small-encoder", 0.12, 0.05, patience, "seeded subset of 256 of 400"),
        "P5_big": ("big-decoder", 0.08, 0.30, cut, "seeded subset of 64 of 400"),
        "POD": ("small-encoder", 0.10, 0.04, patience, "seeded subset of 256 of 400")}
    for i, (run, (backbone, valid, test, training, users)) in enumerate(rows.items()):
        metrics, per_user = ranked(_ranks_with_recall(400, test, seed=i))
        model = "pod" if run == "POD" else "p5"
        rec = record(run, "ds-a", stats(400, 300, 9000), metrics, experiment="gen", model=model,
                     model_config={"backbone": backbone, "num_beams": 20})
        rec["training"], rec["valid_metrics"] = training, {"recall@10": valid}
        rec["evaluation"]["valid_users"] = users
        write_record(record_path(results, "gen", "ds-a", run, 0), rec, per_user)
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "table3.md").read_text()
    assert "Backbones compared on validation" in page
    table = [line for line in page.splitlines() if line.startswith("| P5") and "coder" in line
             and "| 0.1200" in line or line.startswith("| P5_big ") and "| 0.0800" in line]
    assert len(table) == 2 and not any(line.startswith("| POD ") and "small-encoder" in line for line in page.splitlines())
    # validation decides (P5 0.12 over P5_big 0.08), though P5_big's test recall is higher
    assert ("- P5 / P5_big: validation R@10 favours P5 (small-encoder, 0.1200 against 0.0800); not a finished "
            "choice: P5_big stopped by a cap (time budget) and the rows validated on different users.") in page
    # both converged on the same users: a finished choice
    from benchmarks.reports.backbones import backbone_comparison
    recs = {run: [Record(r)] for run, r in (
        ("A", {**record("A", "d", stats(10, 10, 100), {}, model="p5", model_config={"backbone": "x"}),
               "valid_metrics": {"recall@10": 0.2}, "training": patience}),
        ("B", {**record("B", "d", stats(10, 10, 100), {}, model="p5", model_config={"backbone": "y"}),
               "valid_metrics": {"recall@10": 0.3}, "training": patience}))}
    frame, [sentence] = backbone_comparison(recs)
    assert sentence == "B / A: validation R@10 favours B (y, 0.3000 against 0.2000); both converged on the same validation users."
    assert list(frame["model"]) == ["A", "B"]
    # one backbone per family: nothing to compare
    assert backbone_comparison({"A": recs["A"]}) is None


def test_validation_curves_name_stale_rows_and_differing_validation_users():
    import pandas as pd

    from benchmarks.reports.charts import curve_labels
    from benchmarks.reports.records import Record
    from benchmarks.reports.tables import GroupTable

    def rec(run, **evaluation):
        return [Record({"experiment": "gen", "run": run, "dataset": "ml-100k", "seed": 0, "status": "ok",
                        "evaluation": {"users": "all", **evaluation}})]

    ok = {"POD": rec("POD", valid_users="seeded subset of 256 of 943"), "Lite": rec("Lite"),
          "P5": rec("P5", users="seeded subset of 128 of 943")}
    table = GroupTable(frame=pd.DataFrame(), values={}, ok=ok, metrics=["recall@10"], stale={"P5": "train.lr"})
    assert curve_labels(table, list(ok)) == {"POD": "POD (256 of 943 users)", "Lite": "Lite (all users)",
                                             "P5": "P5 (stale; 128 of 943 users)"}
    # rows validated on the same users: no users in the legend; a stale row is still marked
    same = {"Lite": ok["Lite"], "Other": rec("Other")}
    table = GroupTable(frame=pd.DataFrame(), values={}, ok=same, metrics=["recall@10"], stale={"Other": "x"})
    assert curve_labels(table, list(same)) == {"Lite": "Lite", "Other": "Other (stale)"}


def test_generative_rows_say_how_many_lists_came_out_short():
    import pandas as pd

    from benchmarks.reports.records import Record
    from benchmarks.reports.tables import GroupTable, short_list_lines

    def rec(run, counts):
        return [Record({"experiment": "gen", "run": run, "dataset": "ml-100k", "seed": 0, "status": "ok",
                        "model_info": {"decoding": {"counts": counts}} if counts is not None else {}})]

    ok = {"POD": rec("POD", {"lists": 200, "short_lists": 150, "invalid_ids": 600}),
          "LightLM": rec("LightLM", {"lists": 200, "short_lists": 0, "invalid_ids": 0}),
          "Lite": rec("Lite", None), "P5": rec("P5", {"lists": 100, "short_lists": 10, "invalid_ids": 20})}
    table = GroupTable(frame=pd.DataFrame(), values={}, ok=ok, metrics=["recall@10"], runs=list(ok),
                       stale={"P5": "train.lr"})
    lines = short_list_lines(table)
    assert len(lines) == 2  # neither the constrained row with full lists nor a scoring model
    assert lines[0].startswith("POD: 75% of the lists its beam search returned (150 of 200,")
    assert "600 decoded strings were not item ids (3.0 a list)" in lines[0]
    assert lines[1].startswith("P5 (stale): 10% of the lists")


def test_a_stale_row_that_ranks_every_user_alike_is_named_stale():
    import pandas as pd

    from benchmarks.reports.tables import GroupTable, one_ranking_lines

    def rec(run, spread):
        return [Record({"experiment": "gen", "run": run, "dataset": "ml-100k", "seed": 0, "status": "ok",
                        "evaluation": {"user_spread": spread}, "training": {"history": [{"epoch": 1}]}})]

    ok = {"Collapsed": rec("Collapsed", 1e-9), "Old": rec("Old", 1e-9), "Fine": rec("Fine", 0.05)}
    table = GroupTable(frame=pd.DataFrame(), values={}, ok=ok, metrics=["recall@10"], runs=list(ok),
                       stale={"Old": "train.lr"})
    lines = one_ranking_lines(table)
    assert [line.split(": ranks")[0] for line in lines] == ["Collapsed", "Old (stale)"]


def test_validation_curves_draw_popularity_on_the_users_each_curve_was_validated_on(tmp_path):
    """The untrained row's level (grey line) is its per-user validation recall averaged over the
    very users a trained row validated on: a curve over a seeded subset gets the subset's mean."""
    import pandas as pd

    from benchmarks.evaluate import user_subset
    from benchmarks.reports.charts import floors
    from benchmarks.reports.tables import GroupTable

    n = 40
    ranks = np.where(np.arange(n) % 4 == 0, 3.0, 50.0)  # every fourth user's target in the top 10
    def rec(run, eval_cfg, trained, per_user=None):
        raw = {"experiment": "gen", "run": run, "dataset": "ml-100k", "seed": 0, "status": "ok",
               "data": {"stats": {"users": n}},
               "config": {"eval": {"ks": [10, 20], "max_users": None, "user_subset_seed": 0, **eval_cfg}},
               "training": {"history": [{"epoch": 1, "valid": {"recall@10": 0.3}}]} if trained else {}}
        path = tmp_path / f"{run}__seed0.json"
        write_record(path, raw, per_user)
        return [Record(raw, path)]

    ok = {"MostPopular": rec("MostPopular", {}, False, {"rank": ranks, "valid_rank": ranks}),
          "Sub": rec("Sub", {"valid_max_users": 12}, True), "All": rec("All", {}, True)}
    table = GroupTable(frame=pd.DataFrame(), values={}, ok=ok, metrics=["recall@10"], runs=list(ok))
    subset = user_subset(n, 12, 0)
    lines = floors(table, ["Sub", "All"], "recall@10")
    assert lines == [("MostPopular (12 of 40 users)", float(np.mean(ranks[subset] <= 10))),
                     ("MostPopular (all users)", 0.25)]
    assert lines[0][1] != lines[1][1]  # the subset's own mean, not all users'
    from benchmarks.reports.charts import learning_curves
    drawn = learning_curves(table, "curves", tmp_path / "figures" / "curves")
    assert {p.suffix for p in drawn} == {".png", ".pdf"} and all(p.stat().st_size > 0 for p in drawn)
    assert floors(table, ["All"], "recall@10") == [("MostPopular", 0.25)]  # one set of users: no users named
    ok["MostPopular"] = rec("MostPopular", {}, False, {"rank": ranks})  # made before validation ranks were kept
    assert floors(GroupTable(frame=pd.DataFrame(), values={}, ok=ok, metrics=["recall@10"], runs=list(ok)),
                  ["Sub"], "recall@10") == []
