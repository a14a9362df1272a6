"""Significance on the report pages: stars only for a converged row that beats the best baseline,
how each row stopped and its learning curves, the masking asymmetry table, and the significance
module unit by unit (proposed rows, convergence, per-user values, paired tests, a reference row)."""
import numpy as np
import pytest
from scipy import stats as scipy_stats

from benchmarks import config as cfgmod
from benchmarks.records import record_path, write_record
from benchmarks.reports import build_reports
from tests.benchmarks.report_records import _ranks_with_recall, _trained, ranked, record, stats, write_experiments
from tests.benchmarks.report_records import every_record_current  # noqa: F401 (autouse: hand-made configs count as current)


# ----------------------------------------------------------------------------- stars, convergence, curves


def test_stars_need_the_best_baseline_beaten_and_a_converged_row(tmp_path, monkeypatch):
    """Two baselines (the best and a weak one), and proposed rows that beat the best (converged, or
    cut by its epoch cap), beat only the weak one, or lose; on a second dataset the best baseline
    itself was cut by its budget."""
    exp_dir = write_experiments(tmp_path / "experiments", {"sig": (
        "paper_table: table3_overall\nruns: {Strong: {}, Weak: {}, Lite: {}, Lite_cut: {}, Lite_mid: {}, Lite_worse: {}}\n")})
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    results = tmp_path / "results"
    patience = _trained("early_stopping", 3, 13, [0.1, 0.2, 0.3] + [0.25] * 10)
    cut = _trained("epochs", 5, 5, [0.1, 0.2, 0.3, 0.35, 0.4])
    rows = {"Strong": (0.30, None), "Weak": (0.10, None), "Lite": (0.55, "lite_llm4rec"),
            "Lite_cut": (0.55, "lite_llm4rec"), "Lite_mid": (0.20, "lite_llm4rec"), "Lite_worse": (0.02, "lite_llm4rec")}
    for dataset in ("ds-a", "ds-b"):
        for i, (run, (recall, model)) in enumerate(rows.items()):
            metrics, per_user = ranked(_ranks_with_recall(400, recall, seed=i))
            rec = record(run, dataset, stats(400, 300, 9000), metrics, experiment="sig", model=model)
            cut_here = run == "Lite_cut" or (dataset == "ds-b" and run == "Strong")
            rec["training"] = cut if cut_here else patience
            if run == "Weak":  # S3Rec-like: a pre-training stage with no validation, cut at its epochs
                rec["training"] = {**patience, "pretrain": {"epochs": 7, "seconds": 1.0}}
            write_record(record_path(results, "sig", dataset, run, 0), rec, per_user)
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "table3.md").read_text()
    part_a, part_b = page.split("## ds-b")

    def row(text, run):
        return next(line for line in text.splitlines() if line.startswith(f"| {run} ") and "| 0." in line)

    def sig_rows(text, run):
        return [line for line in text.splitlines() if line.startswith(f"| {run} ") and "| R@" in line or
                line.startswith(f"| {run} ") and "| N@" in line]

    assert row(part_a, "Lite").count("*") == 4
    for run in ("Lite_cut", "Lite_mid", "Lite_worse", "Strong", "Weak"):
        assert "*" not in row(part_a, run), run
    for run in ("Lite", "Lite_cut", "Lite_mid", "Lite_worse"):  # always against the best baseline
        assert all("| Strong " in line for line in sig_rows(part_a, run)) and len(sig_rows(part_a, run)) == 4
    assert all("not starred: Lite_cut was cut by its budget" in line for line in sig_rows(part_a, "Lite_cut"))
    assert "patience (best 3 of 13)" in row(part_a, "Lite") and "epoch cap (best 5 of 5)" in row(part_a, "Lite_cut")
    assert "not trained" not in row(part_a, "Strong")
    assert "pre-trained 7 epochs (a cap), then patience (best 3 of 13)" in row(part_a, "Weak")
    assert "cut by its budget" not in "".join(sig_rows(part_a, "Lite"))
    # ds-b: the best baseline stopped at its epoch cap: the page says so beside every comparison
    assert all("the best baseline Strong was cut by its budget" in line for line in sig_rows(part_b, "Lite"))
    assert "epoch cap (best 5 of 5)" in row(part_b, "Strong")
    # the validation curves of every trained row, linked from the page
    figure = tmp_path / "reports" / "figures" / "table3__sig__ds-a__learning_curves.png"
    assert figure.is_file() and figure.with_suffix(".pdf").is_file()
    assert "figures/table3__sig__ds-a__learning_curves.png" in part_a


def test_masking_asymmetry_table_from_the_protocol_controls(tmp_path, monkeypatch):
    exp_dir = write_experiments(tmp_path / "experiments", {"t3": "paper_table: table3_overall\nruns: {SASRec: {}, Lite: {}}\n"})
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    results = tmp_path / "results"
    values = {"SASRec": (0.30, 0.18, "sasrec"), "Lite": (0.25, 0.20, "lite_llm4rec")}
    for run, (masked, unmasked, model) in values.items():
        for seed, bump in ((0, 0.0), (1, 0.02)):
            m = {"recall@10": masked + bump, "recall@20": 0.4, "ndcg@10": masked / 2, "ndcg@20": 0.2}
            rec = record(run, "ml-1m", stats(100, 50, 2000), m, model=model, seed=seed)
            rec["protocol_variants"] = {"history masking off": {
                "evaluation": {"mask_history": False}, "metrics": {**m, "recall@10": unmasked + bump}}}
            write_record(record_path(results, "t3", "ml-1m", run, seed), rec)
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "protocol_controls.md").read_text()
    section = page.split("## The paper's protocol")[1].split("## ")[0]
    line = next(x for x in section.splitlines() if x.startswith("| t3 ") and "| Lite " in x and "| R@10 " in x)
    cells = [c.strip() for c in line.strip("|").split("|")]
    # proposed 0.26 (masked), baseline 0.31 masked and 0.19 unmasked (means over the two seeds)
    assert cells[3] == "SASRec" and cells[5:] == ["0.2600", "0.3100", "0.1900", "-0.0500", "+0.0700", "+0.1200"]


# ----------------------------------------------------------------------------- significance, unit by unit


def _sig_record(tmp_path, run, hits, *, n_users=200, seed=0, model=None, training=None, per_user=True):
    """A finished record whose per-user ranks hit the top 10 for the first `hits` users (rank 1) and
    miss for the rest (rank 50): its recall@10 is hits / n_users."""
    import json

    from benchmarks.reports.records import Record

    ranks = np.where(np.arange(n_users) < hits, 1.0, 50.0)
    raw = {"experiment": "sig", "run": run, "dataset": "d", "seed": seed, "model": model or run.lower(),
           "status": "ok", "config": {"eval": {"ks": [10]}}, "training": training or {}}
    path = tmp_path / f"{run}__seed{seed}.json"
    write_record(path, raw, {"rank": ranks} if per_user else None)
    return Record(json.loads(path.read_text()), path)


def _sig_table(records_by_run, means=None, metrics=("recall@10",)):
    import pandas as pd

    from benchmarks.reports.tables import GroupTable, short
    from benchmarks.statistics import summarize_seeds

    values = {}
    for run, recs in records_by_run.items():
        given = (means or {}).get(run)
        values[run] = {short(m): summarize_seeds(given if given is not None else
                                                 [r.raw.get("mean", {}).get(m) for r in recs]) for m in metrics}
    return GroupTable(frame=pd.DataFrame(), values=values, ok=records_by_run, metrics=list(metrics))


PATIENCE = {"stopped_by": "early_stopping", "history": [{"epoch": 1, "valid": {"recall@10": 0.1}}]}
CAPPED = {"stopped_by": "epochs", "history": [{"epoch": 1, "valid": {"recall@10": 0.1}}]}


def test_is_proposed_declared_runs_or_the_papers_proposed_model(tmp_path):
    from types import SimpleNamespace

    from benchmarks.reports.paper import paper_reference
    from benchmarks.reports.significance import is_proposed, proposed_label, proposed_runs

    # undeclared: the paper's proposed model (named in paper_reference.yaml, nowhere in the code)
    assert paper_reference()["proposed_model"] == {"name": "lite_llm4rec", "label": "Lite-LLM4Rec"}
    assert is_proposed({}, "Lite", "lite_llm4rec") and not is_proposed({}, "SASRec", "sasrec")
    assert is_proposed({"proposed": ["Mine"]}, "Mine", "mine")
    assert not is_proposed({"proposed": ["Mine"]}, "Lite", "lite_llm4rec")  # declared: the model no longer decides
    assert not is_proposed({"proposed": []}, "Lite", "lite_llm4rec")

    lite = _sig_record(tmp_path, "Lite", 10, model="lite_llm4rec")
    sas = _sig_record(tmp_path, "SASRec", 10)
    mine = _sig_record(tmp_path, "Mine", 10)
    assert proposed_runs({}, {"Lite": [lite], "SASRec": [sas]}) == {"Lite"}
    assert proposed_runs({"proposed": ["Mine"]}, {"Lite": [lite], "Mine": [mine]}) == {"Mine"}

    def group(exp, *recs):
        return SimpleNamespace(exp=exp, records=list(recs))

    # the star note names the paper's model where every proposed row is one of its, else the rows
    assert proposed_label([group({}, lite, sas)]) == "Lite-LLM4Rec"
    assert proposed_label([group({}, sas)]) == "Lite-LLM4Rec"  # no proposed row has a record
    assert proposed_label([group({"proposed": ["Mine", "SASRec"]}, mine, sas)]) == "Mine, SASRec"
    assert proposed_label([group({}, lite), group({"proposed": ["Mine"]}, mine)]) == "Lite, Mine"
    failed = _sig_record(tmp_path, "Mine", 10, seed=1)
    failed.raw["status"] = "failed"
    assert proposed_label([group({"proposed": ["Mine"]}, failed)]) == "Lite-LLM4Rec"  # only finished runs count


def test_converged_means_every_stage_stopped_by_patience(tmp_path):
    from benchmarks.reports.significance import converged

    assert converged(_sig_record(tmp_path, "Pop", 10))  # not trained
    assert converged(_sig_record(tmp_path, "A", 10, training=PATIENCE))
    assert not converged(_sig_record(tmp_path, "B", 10, training=CAPPED))
    assert not converged(_sig_record(tmp_path, "C", 10, training={**PATIENCE, "stopped_by": "time_budget"}))
    two_stage = {**PATIENCE, "stage1": CAPPED, "stage2_epochs": 4}
    assert not converged(_sig_record(tmp_path, "D", 10, training=two_stage))  # its first stage was capped
    assert converged(_sig_record(tmp_path, "E", 10, training={**PATIENCE, "stage1": PATIENCE, "stage2_epochs": 4}))


def test_per_user_values_average_the_seeds_or_are_none(tmp_path):
    from benchmarks.reports.significance import per_user

    seeds = [_sig_record(tmp_path, "A", hits, seed=s, n_users=4) for s, hits in ((0, 1), (1, 3))]
    users, values = per_user(seeds, "recall@10")
    assert users.tolist() == [0, 1, 2, 3] and values.tolist() == [1.0, 0.5, 0.5, 0.0]
    missing = _sig_record(tmp_path, "A", 2, seed=2, n_users=4, per_user=False)
    assert per_user(seeds + [missing], "recall@10") is None
    assert per_user([missing] + seeds, "recall@10") is None


def test_paired_columns_state_both_means_the_difference_and_both_p_values():
    from benchmarks.reports.significance import paired_columns
    from benchmarks.statistics import format_p

    users = np.arange(6)
    a = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    b = np.array([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    test, columns = paired_columns((users, a), (users[::-1], b[::-1]), "mine", "theirs")
    assert test.n_users == 6 and test.mean_a == pytest.approx(4 / 6) and test.mean_b == pytest.approx(2 / 6)
    assert columns == {"mine": "0.6667", "theirs": "0.3333", "difference": "+0.3333", "users": "6",
                       "paired t p": format_p(scipy_stats.ttest_rel(a, b).pvalue),
                       "Wilcoxon p": format_p(scipy_stats.wilcoxon(a, b).pvalue)}
    # aligned by user: only the common users count
    test, columns = paired_columns((users, a), (np.array([0, 1, 9]), np.array([1.0, 0.0, 1.0])), "x", "y")
    assert columns["users"] == "2" and columns["x"] == "1.0000" and columns["y"] == "0.5000"
    assert columns["difference"] == "+0.5000"
    _, columns = paired_columns((users, b), (users, a), "x", "y")
    assert columns["difference"] == "-0.3333"


def test_significance_against_the_best_baseline_with_stars_and_notes(tmp_path):
    from benchmarks.reports.significance import significance

    ok = {
        "Weak": [_sig_record(tmp_path, "Weak", 40, training=PATIENCE)],
        "Strong": [_sig_record(tmp_path, "Strong", 100, training=PATIENCE)],
        "Mine": [_sig_record(tmp_path, "Mine", 180, training=PATIENCE)],
        "MineCut": [_sig_record(tmp_path, "MineCut", 180, training=CAPPED)],
        "Worse": [_sig_record(tmp_path, "Worse", 20, training=PATIENCE)],
        "Pop": [_sig_record(tmp_path, "Pop", 30)],  # a baseline that is not trained
    }
    means = {"Weak": [0.2], "Strong": [0.5], "Mine": [0.9], "MineCut": [0.9], "Worse": [0.1], "Pop": [0.15]}
    exp = {"proposed": ["Mine", "MineCut", "Worse"]}
    frame, stars = significance(_sig_table(ok, means), exp)
    assert stars == {("Mine", "recall@10"): True, ("MineCut", "recall@10"): False, ("Worse", "recall@10"): False}
    rows = {row["proposed"]: row for row in frame.to_dict("records")}
    assert list(rows) == ["Mine", "MineCut", "Worse"]
    assert all(row["metric"] == "R@10" and row["best baseline"] == "Strong" for row in rows.values())
    assert rows["Mine"]["*"] == "*" and rows["MineCut"]["*"] == "" and rows["Worse"]["*"] == ""
    assert rows["Mine"]["proposed mean"] == "0.9000" and rows["Mine"]["baseline mean"] == "0.5000"
    assert rows["Mine"]["difference"] == "+0.4000" and rows["Mine"]["users"] == "200"
    assert rows["Mine"]["note"] == ""
    assert rows["MineCut"]["note"] == "not starred: MineCut was cut by its budget"
    assert rows["Worse"]["note"] == "" and rows["Worse"]["difference"] == "-0.4000"  # 20 vs 100 of 200 users

    # the best baseline cut by its budget: said beside every comparison, the stars unchanged
    ok["Strong"] = [_sig_record(tmp_path, "Strong", 100, training=CAPPED)]
    frame, stars = significance(_sig_table(ok, means), exp)
    rows = {row["proposed"]: row for row in frame.to_dict("records")}
    assert stars[("Mine", "recall@10")] is True
    assert rows["Mine"]["note"] == "the best baseline Strong was cut by its budget"
    assert rows["MineCut"]["note"] == ("not starred: MineCut was cut by its budget; "
                                       "the best baseline Strong was cut by its budget")


def test_significance_without_declared_runs_falls_back_to_lite_llm4rec(tmp_path):
    from benchmarks.reports.significance import significance

    ok = {"SASRec": [_sig_record(tmp_path, "SASRec", 50, training=PATIENCE)],
          "Lite": [_sig_record(tmp_path, "Lite", 150, model="lite_llm4rec", training=PATIENCE)]}
    frame, stars = significance(_sig_table(ok, {"SASRec": [0.25], "Lite": [0.75]}), {})
    assert stars == {("Lite", "recall@10"): True}
    assert frame.to_dict("records")[0]["best baseline"] == "SASRec"
    assert "note" not in frame.columns  # no row has a note: no empty column
    # no proposed row, or no baseline: no test
    assert significance(_sig_table({"SASRec": ok["SASRec"]}, {"SASRec": [0.25]}), {}) == (None, {})
    assert significance(_sig_table({"Lite": ok["Lite"]}, {"Lite": [0.75]}), {}) == (None, {})


def test_significance_skips_metrics_without_a_baseline_value_and_names_missing_arrays(tmp_path):
    from benchmarks.reports.significance import significance

    ok = {"Base": [_sig_record(tmp_path, "Base", 50, training=PATIENCE)],
          "Other": [_sig_record(tmp_path, "Other", 80, training=PATIENCE, per_user=False)],
          "Mine": [_sig_record(tmp_path, "Mine", 150, training=PATIENCE)]}
    exp = {"proposed": ["Mine"]}
    # the best baseline by its mean has no per-user arrays: the row says so, no star
    frame, stars = significance(_sig_table(ok, {"Base": [0.25], "Other": [0.4], "Mine": [0.75]}), exp)
    assert stars == {}
    assert frame.to_dict("records") == [{"proposed": "Mine", "metric": "R@10", "best baseline": "Other",
                                         "note": "no per-user arrays for Other"}]
    # a baseline without a value for the metric is passed over; NaN means too
    frame, stars = significance(_sig_table(ok, {"Base": [0.25], "Other": [], "Mine": [0.75]}), exp)
    assert frame.to_dict("records")[0]["best baseline"] == "Base" and stars == {("Mine", "recall@10"): True}
    frame, stars = significance(_sig_table(ok, {"Base": [float("nan")], "Other": [], "Mine": [0.75]}), exp)
    assert (frame, stars) == (None, {})
    # the proposed row without arrays
    ok["Mine"] = [_sig_record(tmp_path, "Mine", 150, seed=1, training=PATIENCE, per_user=False)]
    frame, stars = significance(_sig_table(ok, {"Base": [0.25], "Other": [], "Mine": [0.75]}), exp)
    assert frame.to_dict("records")[0]["note"] == "no per-user arrays for Mine" and stars == {}


def test_significance_goes_on_past_a_metric_or_row_it_cannot_test(tmp_path):
    from benchmarks.reports.significance import significance

    ok = {"Base": [_sig_record(tmp_path, "Base", 50, training=PATIENCE)],
          "Bare": [_sig_record(tmp_path, "Bare", 150, training=PATIENCE, per_user=False)],
          "Mine": [_sig_record(tmp_path, "Mine", 150, training=PATIENCE)],
          "Twin": [_sig_record(tmp_path, "Twin", 50, training=PATIENCE)]}
    exp = {"proposed": ["Bare", "Mine", "Twin"]}
    table = _sig_table(ok, {"Base": [0.25], "Bare": [0.75], "Mine": [0.75], "Twin": [0.25]},
                       metrics=("ndcg@10", "recall@10"))
    table.values["Base"]["N@10"] = None  # no baseline value for the first metric: it is skipped, not the rest
    frame, stars = significance(table, exp)
    rows = frame.to_dict("records")
    assert [(r["proposed"], r["metric"]) for r in rows] == [("Bare", "R@10"), ("Mine", "R@10"), ("Twin", "R@10")]
    assert rows[0]["note"] == "no per-user arrays for Bare"  # and the rows after it are still tested
    assert stars == {("Mine", "recall@10"): True, ("Twin", "recall@10"): False}
    # the paired test's own note (a row equal to the baseline user by user) is kept
    assert rows[2]["note"] == "identical values for every user" and rows[2]["difference"] == "+0.0000"


def test_against_reference_tests_every_other_row_per_metric(tmp_path):
    from benchmarks.reports.significance import against_reference

    ok = {"Full": [_sig_record(tmp_path, "Full", 150)], "NoHead": [_sig_record(tmp_path, "NoHead", 100)],
          "Same": [_sig_record(tmp_path, "Same", 150)]}
    table = _sig_table(ok, {r: [0.5] for r in ok}, metrics=("recall@10", "ndcg@10"))
    frame = against_reference(table, "Full")
    records_ = frame.to_dict("records")
    assert [(r["row"], r["metric"], r["against"]) for r in records_] == [
        ("NoHead", "R@10", "Full"), ("NoHead", "N@10", "Full"), ("Same", "R@10", "Full"), ("Same", "N@10", "Full")]
    assert records_[0]["row mean"] == "0.5000" and records_[0]["reference mean"] == "0.7500"
    assert records_[0]["difference"] == "-0.2500" and records_[0]["users"] == "200"
    assert records_[0]["note"] == "" and records_[2]["note"] == "identical values for every user"
    assert against_reference(table, "Missing") is None
    assert against_reference(_sig_table({"Full": ok["Full"]}, {"Full": [0.5]}), "Full") is None
    ok["Bare"] = [_sig_record(tmp_path, "Bare", 10, per_user=False)]
    frame = against_reference(_sig_table(ok, {r: [0.5] for r in ok}), "Full")
    last = frame.to_dict("records")[-1]
    assert (last["row"], last["metric"], last["note"], last["row mean"]) == ("Bare", "R@10", "no per-user arrays", "")
    frame = against_reference(_sig_table({"Full": ok["Full"], "Bare": ok["Bare"]}, {"Full": [0.5], "Bare": [0.1]},
                                         metrics=("recall@10", "ndcg@10")), "Full")
    assert frame.to_dict("records") == [  # one row per metric, each saying why there is no test
        {"row": "Bare", "metric": "R@10", "against": "Full", "note": "no per-user arrays"},
        {"row": "Bare", "metric": "N@10", "against": "Full", "note": "no per-user arrays"}]
    # a stale row (or reference) is named as the main table names it
    table = _sig_table({"Full": ok["Full"], "NoHead": ok["NoHead"]}, {"Full": [0.5], "NoHead": [0.1]})
    table.stale = {"NoHead": "train.lr 0.0001 -> 0.0005"}
    assert against_reference(table, "Full").to_dict("records")[0]["row"] == "NoHead (stale)"
    table.stale = {"Full": "train.lr 0.0001 -> 0.0005"}
    assert against_reference(table, "Full").to_dict("records")[0]["against"] == "Full (stale)"
