"""The verdict page from synthetic records: on one dataset the proposed row wins, on one it
loses, on one it ties with the best converged baseline; the sentences follow from the numbers,
the p-values are corrected together (Benjamini-Hochberg), variant records never enter, and the
trials and convergence of each side are stated."""
import numpy as np
from scipy import stats as scipy_stats

from benchmarks import config as cfgmod
from benchmarks.records import record_path, write_record
from benchmarks.reports import build_reports
from benchmarks.reports.verdict import BETTER, TIE, UNTESTED, WORSE, Comparison, sentence
from benchmarks.statistics import PairedTest

from .report_records import _ranks_with_recall, _trained, ranked, record, stats, write_experiments
from .report_records import every_record_current  # noqa: F401 (autouse: hand-made configs count as current)

EXPERIMENT = ("description: synthetic verdict\npaper_table: table3_overall\nproposed: [Lite]\n"
              "runs: {Base: {}, Weak: {}, Cut: {}, Lite: {}}\n")
# recall@10 of each row per dataset: Lite wins, loses, ties (the same ranks as Base)
RECALL = {"ds-win": {"Base": 0.30, "Weak": 0.10, "Cut": 0.90, "Lite": 0.60},
          "ds-lose": {"Base": 0.50, "Weak": 0.10, "Cut": 0.90, "Lite": 0.20},
          "ds-tie": {"Base": 0.40, "Weak": 0.10, "Cut": 0.90, "Lite": None}}


def write_records(results):
    patience = _trained("early_stopping", 3, 13, [0.1, 0.2, 0.3] + [0.25] * 10)
    capped = _trained("epochs", 5, 5, [0.1, 0.2, 0.3, 0.35, 0.4])
    for dataset, rows in RECALL.items():
        for seed in (0, 1, 2):
            for i, (run, recall) in enumerate(rows.items()):
                same_as = "Base" if recall is None else run  # the tie: Base's very ranks
                ranks = _ranks_with_recall(300, rows[same_as], seed=10 * seed + list(rows).index(same_as))
                metrics, per_user = ranked(ranks)
                rec = record(run, dataset, stats(300, 200, 6000), metrics, seed=seed, experiment="verdict3",
                             model="lite_llm4rec" if run == "Lite" else run.lower())
                rec["training"] = capped if run == "Cut" else patience  # Cut is best but never converged
                if run in ("Lite", "Base"):
                    rec["tuning"] = {"study": f"verdict3/{dataset}/{run}/0", "storage": "sqlite:///x", "trials": 8,
                                     "metric": "recall@10", "best_trial": 2, "best_value": 0.3, "best_params": {}}
                write_record(record_path(results, "verdict3", dataset, run, seed), rec, per_user)
    # a variant where Lite would win on ds-lose: the verdict reads main records only
    metrics, per_user = ranked(_ranks_with_recall(300, 0.95, seed=99))
    variant = record("Lite", "ds-lose", stats(300, 200, 6000), metrics, experiment="verdict3", model="lite_llm4rec")
    variant["variant"] = {"tag": "lucky", "differs": {"train.epochs": [300, 2]}}
    variant["training"] = patience
    write_record(record_path(results, "verdict3", "ds-lose", "Lite", 0, "lucky"), variant, per_user)


def test_the_verdict_sentences_follow_from_the_records(tmp_path, monkeypatch):
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", write_experiments(tmp_path / "experiments", {"verdict3": EXPERIMENT}))
    write_records(tmp_path / "results")
    build_reports(tmp_path / "results", tmp_path / "reports")
    page = (tmp_path / "reports" / "verdict.md").read_text()
    sections = {part.split("\n", 1)[0].strip(): part for part in page.split("\n## ")[1:]}
    assert set(sections) == {"ds-lose", "ds-tie", "ds-win"}
    assert ("**On ds-win, the paper's claim holds: Lite is better than the best converged baseline on all 4 "
            "metrics (adjusted p < 0.05).**") in sections["ds-win"]
    assert ("**On ds-lose, the paper's claim does not hold: the best converged baseline is better than Lite on "
            "all 4 metrics (adjusted p < 0.05).**") in sections["ds-lose"]
    assert ("**On ds-tie, the paper's claim is not supported: Lite, the proposed row that did best, does not "
            "differ significantly from the best converged baseline on any of the 4 metrics.**") in sections["ds-tie"]
    assert "Benjamini-Hochberg (scipy.stats.false_discovery_control" in page and "The 12 p-values" in page
    for name, part in sections.items():
        rows = [line for line in part.splitlines() if line.startswith("| Lite ")]
        assert len(rows) == 4, name
        # the best CONVERGED baseline: Base, never the capped Cut (higher) nor Weak
        assert all("| Base " in row and "| 8 / 8 " in row and "| yes / yes " in row for row in rows)
        assert "Cut by a cap before converging: Cut; such baselines are left out" in part
        assert "Tuned (best of the stated trials): Base (8), Lite (8)" in part and "Lite 3" in part
        assert "The paper's numbers are not comparable here: the paper does not evaluate on " + name in part
    assert all("| better " in r for r in sections["ds-win"].splitlines() if r.startswith("| Lite "))
    assert all("| worse " in r for r in sections["ds-lose"].splitlines() if r.startswith("| Lite "))
    tie_rows = [r for r in sections["ds-tie"].splitlines() if r.startswith("| Lite ")]
    assert all("| +0.0000 " in r and "| 1.0000 " in r and "| no significant difference " in r for r in tie_rows)
    # the interval over the three seeds: the t-interval of the per-seed differences
    win = [r for r in sections["ds-win"].splitlines() if r.startswith("| Lite ") and "| R@10 " in r][0]
    diffs = []
    for seed in (0, 1, 2):
        lite = ranked(_ranks_with_recall(300, 0.60, seed=10 * seed + 3))[0]["recall@10"]
        base = ranked(_ranks_with_recall(300, 0.30, seed=10 * seed + 0))[0]["recall@10"]
        diffs.append(lite - base)
    half = scipy_stats.t.ppf(0.975, 2) * np.std(diffs, ddof=1) / np.sqrt(3)
    assert f"[{np.mean(diffs) - half:+.4f}, {np.mean(diffs) + half:+.4f}] (n=3)" in win
    assert "lucky" not in page  # the variant record never entered
    assert "[Verdict: does the paper's claim hold here?](verdict.md)" in (tmp_path / "reports" / "README.md").read_text()


def comparison(run, metric, outcome, difference=0.1, converged=True):
    test = PairedTest(100, 0.5, 0.5 - difference, 0.01, 0.01)
    return Comparison(run, "Base", metric, 0.5, 0.5 - difference, None, test, proposed_converged=converged,
                      outcome=outcome)


def test_mixed_outcomes_and_unconverged_rows_in_the_sentence():
    metrics = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
    mixed = [comparison("A", m, o) for m, o in zip(metrics, (BETTER, BETTER, TIE, WORSE))]
    mixed += [comparison("B", m, WORSE, -0.1) for m in metrics]
    assert sentence("ds", mixed) == ("On ds, the paper's claim holds only in part: A is better than the best "
                                     "converged baseline on 2 of 4 metrics, worse on 1 and not significantly "
                                     "different on 1.")
    # better on none and worse on some: the claim does not hold in any part
    lost_some = [comparison("A", m, o) for m, o in zip(metrics, (WORSE, TIE, WORSE, WORSE))]
    assert sentence("ds", lost_some) == ("On ds, the paper's claim does not hold: A, the proposed row that did "
                                         "best, is better than the best converged baseline on none of the 4 "
                                         "metrics, worse on 3 and not significantly different on 1.")
    # that sentence speaks for every proposed row, so one that did not converge leaves it open
    also_cut = lost_some + [comparison("B", m, WORSE, -0.1, converged=False) for m in metrics]
    assert sentence("ds", also_cut).endswith("different on 1; not final: B did not converge.")
    cut = [comparison("A", m, BETTER, converged=False) for m in metrics]
    assert sentence("ds", cut).endswith("on all 4 metrics (adjusted p < 0.05); not final: A did not converge.")
    assert sentence("ds", [comparison("A", m, UNTESTED) for m in metrics]) == \
        "On ds, the paper's claim cannot be tested: no paired test over users was possible."
    assert sentence("ds", [], "no baseline converged") == "On ds, the paper's claim cannot be tested: no baseline converged."


def test_the_papers_own_difference_stands_beside_ours_where_the_data_are_the_papers(tmp_path, monkeypatch):
    from .test_report import PAPER_ML1M

    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", write_experiments(tmp_path / "experiments", {"verdict1m": (
        "paper_table: table3_overall\nproposed: [Lite-LLM4Rec_sampling]\nruns: {SASRec: {}, Lite-LLM4Rec_sampling: {}}\n")}))
    results = tmp_path / "results"
    for i, (run, recall) in enumerate((("SASRec", 0.2), ("Lite-LLM4Rec_sampling", 0.3))):
        metrics, per_user = ranked(_ranks_with_recall(300, recall, seed=i))
        rec = record(run, "ml-1m", stats(*PAPER_ML1M), metrics, experiment="verdict1m", paper_name="ml-1m",
                     model="lite_llm4rec" if run.startswith("Lite") else "recbole",
                     model_config={"item_llm": "all-MiniLM-L6-v2"} if run.startswith("Lite") else None)
        rec["training"] = _trained("early_stopping", 3, 13, [0.1, 0.2, 0.3] + [0.25] * 10)
        write_record(record_path(results, "verdict1m", "ml-1m", run, 0), rec, per_user)
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "verdict.md").read_text()
    assert "| +0.0508 (Lite-LLM4Rec_sampling 0.2733 vs LLM2Rec 0.2225) |" in page  # the paper's R@10 claim
    assert "not comparable here" not in page
    assert "Lite-LLM4Rec_sampling: item_llm all-MiniLM-L6-v2 in place of the paper's T5." in page
    assert "n=1: no interval" in page and "No row was tuned" in page
