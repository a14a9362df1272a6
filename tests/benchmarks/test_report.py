"""Reports from synthetic records: every page, figure and index; paper numbers only where
comparable; missing and skipped cells; confidence intervals and the significance marker."""
import re

import numpy as np
import pytest
from scipy import stats as scipy_stats

from benchmarks import config as cfgmod
from benchmarks.evaluate import TOPK_SAMPLED_RULE, metrics_from_ranks
from benchmarks.records import record_path, write_record
from benchmarks.reports import build as build_module
from benchmarks.reports import build_reports, paper_reference
from benchmarks.reports.catalogue import declared_pages
from benchmarks.reports.records import Record
from benchmarks.reports.tables import Column, missing_row

ARTEFACTS = [page.spec for page in declared_pages()]  # every page the shipped experiment files declare

PAPER_ML1M = (6040, 3706, 994169)  # the paper's ml-1m (Table 8)


def stats(users, items, inter):
    return {"users": users, "items": items, "interactions": inter, "density": inter / users / items,
            "avg_sequence_length": inter / users, "k_core": 5, "items_without_text": 0,
            "repeated_interactions_removed": 0}


def record(run, dataset, stats, metrics, *, status="ok", seed=0, paper_name=None, users="all", experiment="t3",
           model=None, model_config=None, latency=None, candidates="full", device="Test CPU", input_length=20.0):
    rec = {
        "experiment": experiment, "run": run, "dataset": dataset, "seed": seed, "model": model or run.lower(),
        "status": status, "paper_table": "table3_overall",
        "config": {"seed": seed, "model": {"name": model or run.lower(), **(model_config or {})}, "eval": {"ks": [10, 20]}},
        "data": {"name": dataset, "source": "ml-1m", "paper_name": paper_name, "stats": stats,
                 "source_hash": "a" * 64, "content_hash": "b" * 64},
        "environment": {"device_name": device, "git": {"commit": "c" * 40, "dirty": False},
                        "libraries": {"torch": "2.13.0", "scipy": "1.17.1"}},
    }
    if status == "ok":
        rec.update({
            "metrics": metrics,
            "evaluation": {"candidates": candidates, "mask_history": True, "users": users,
                           "num_negatives": 99 if candidates == "sampled" else None},
            "latency": {"ms_per_batch_median": 1.5, "ms_per_batch_p90": 1.7, "batch_size": 32, "top_k": 20,
                        "n_batches": 5, "warmup_batches": 1, "device_name": device, "device": "cpu",
                        "torch_threads": 2, "dtype": "float32", **(latency or {})},
            "input_length": {"mean": input_length, "unit": "items"}, "training": {"epochs": 3, "seconds": 1.0},
        })
    else:
        rec["skip_reason"] = "no weights for t5-large here"
    return rec


def ranked(ranks):
    """Per-user arrays and mean metrics from ranks, as the runner writes them."""
    ranks = np.asarray(ranks, dtype=np.float64)
    per_user = metrics_from_ranks(ranks, (10, 20))
    metrics = {k: float(v.mean()) for k, v in per_user.items()}
    return metrics, {"user_index": np.arange(len(ranks), dtype=np.int64), "rank": ranks, **per_user}


def hand_made_configs_are_current(patch):
    """The synthetic records of these tests hold hand-made configs, not resolved ones: the reports
    take every one as current (the staleness check has its own tests: test_report_stale.py)."""
    patch.setattr(build_module, "mark_stale", lambda *args, **kwargs: None)


@pytest.fixture(autouse=True)
def every_record_current(monkeypatch):
    hand_made_configs_are_current(monkeypatch)


def write_experiments(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / f"{name}.yaml").write_text(body)
    return folder


def test_reports_show_paper_only_when_comparable(tmp_path, monkeypatch):
    exp_dir = write_experiments(tmp_path / "experiments", {"t3": (
        "description: synthetic Table 3\npaper_table: table3_overall\n"
        "runs: {GRU4Rec: {}, SASRec: {}, BERT4Rec: {}, Lite-LLM4Rec_sampling: {}}\n")})
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    results = tmp_path / "results"
    full = stats(*PAPER_ML1M)
    partial = stats(2998, 3266, 486772)
    m = {"recall@10": 0.2, "recall@20": 0.3, "ndcg@10": 0.1, "ndcg@20": 0.12}
    for ds, st in (("ml-1m", full), ("ml-1m-partial", partial)):
        for seed, bump in ((0, 0.0), (1, 0.02)):
            write_record(record_path(results, "t3", ds, "SASRec", seed),
                         record("SASRec", ds, st, {k: v + bump for k, v in m.items()}, seed=seed, paper_name="ml-1m"),
                         {"rank": np.arange(1.0, 11.0)})
        write_record(record_path(results, "t3", ds, "Lite-LLM4Rec_sampling", 0),
                     record("Lite-LLM4Rec_sampling", ds, st, {}, status="skipped", paper_name="ml-1m"))
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "table3.md").read_text()
    full_part, partial_part = page.split("## ml-1m-partial")
    paper = paper_reference()["table3_overall"]["ml-1m"]
    # comparable: the paper's number, labelled, with our difference
    assert "The paper's numbers" in full_part and "labelled as the paper's" in full_part
    assert f"{paper['SASRec']['R@10']}" in full_part
    assert f"{0.21 - paper['SASRec']['R@10']:+.4f}" in full_part  # mean of seeds 0.20 and 0.22
    # mean ± half-width of the 95% t-interval over the two seeds (t(0.975, 1) = 12.706)
    half = scipy_stats.t.ppf(0.975, 1) * np.std([0.20, 0.22], ddof=1) / np.sqrt(2)
    assert f"0.2100 ± {half:.4f}" in full_part and "n=2: 0, 1" in full_part
    # not comparable: no paper number, and the reason
    assert "not shown" in partial_part and "2,998 vs the paper's 6,040" in partial_part
    assert str(paper["SASRec"]["R@10"]) not in partial_part
    # missing and skipped cells say so, never a number from elsewhere
    assert "| GRU4Rec" in page and "not run" in page
    assert "skipped: no weights for t5-large here" in page
    datasets = (tmp_path / "reports" / "datasets.md").read_text()
    assert "paper: ml-1m (Table 8)" in datasets and "2998" in datasets
    index = (tmp_path / "reports" / "README.md").read_text()
    assert "table3.md" in index and "datasets.md" in index


def test_a_skip_reason_over_several_lines_stays_in_one_table_cell():
    # transformers' offline message spans two lines; a markdown row cannot
    skipped = Record({"experiment": "t7", "run": "t5-small", "dataset": "ml-100k", "seed": 0, "status": "skipped",
                      "skip_reason": "backbone 't5-small' could not be loaded: no files.\nCheck your connection."})
    cols = [Column("R@10", ("metrics", "R@10"), 4), Column("R@20", ("metrics", "R@20"), 4)]
    row = missing_row([skipped], cols)
    assert row == {"R@10": "skipped: backbone 't5-small' could not be loaded: no files. Check your connection.",
                   "R@20": ""}


def test_subset_evaluation_is_not_compared_with_the_paper(tmp_path, monkeypatch):
    exp_dir = write_experiments(tmp_path / "experiments", {"t3": "paper_table: table3_overall\nruns: {SASRec: {}}\n"})
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    results = tmp_path / "results"
    m = {"recall@10": 0.2, "recall@20": 0.3, "ndcg@10": 0.1, "ndcg@20": 0.12}
    write_record(record_path(results, "t3", "ml-1m", "SASRec", 0),
                 record("SASRec", "ml-1m", stats(*PAPER_ML1M), m, paper_name="ml-1m",
                        users="seeded subset of 100 of 6040"))
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "table3.md").read_text()
    assert "evaluation protocol differs" in page


# ----------------------------------------------------------------------------- every page at once

EXPERIMENTS = {
    # Table 3 on the paper's ml-1m: three seeds, a significance test, a skipped and a missing row
    "t3": "description: synthetic Table 3\npaper_table: table3_overall\n"
          "runs: {GRU4Rec: {}, SASRec: {}, BERT4Rec: {}, Lite-LLM4Rec_sampling: {}}\n",
    # one experiment feeding four pages through a list of paper keys
    "gen": "description: synthetic generative models\n"
           "paper_table: [table1_inference_time_and_input_length, table4_inference_ms_per_batch_of_32,"
           " table5_avg_input_length, figure2_latency_breakdown]\n"
           "runs: {BERT4Rec: {}, P5: {}, P5_seq: {}, POD: {}, Lite-LLM4Rec: {}}\n",
    "abl": "description: synthetic ablations\npaper_table: figure4_5_ablations\n"
           "runs: {Lite-LLM4Rec: {}, fixT5: {}, fixHead: {}, Scratch: {}}\n",
    "topn": "description: synthetic top-N\npaper_table: figure6_topn_sampled\nruns: {Lite-LLM4Rec: {}, P5: {}, POD: {}}\n",
    "custom": "description: an experiment no paper artefact claims\nruns: {MostPopular: {}}\n",
    "cold": "description: synthetic cold start\npaper_table: cold_start\nruns: {HLLM: {}, SASRec: {}}\n",
}


def write_synthetic_results(results, rng=None):
    """A handful of records covering every page: see EXPERIMENTS."""
    rng = rng or np.random.default_rng(0)
    full = stats(*PAPER_ML1M)
    partial = stats(2998, 3266, 486772)
    n_users = 400
    for seed in (0, 1, 2):
        # SASRec ranks the target around 30; Lite-LLM4Rec clearly better, around 8
        sas_metrics, sas_users = ranked(rng.integers(1, 60, n_users))
        lite_metrics, lite_users = ranked(rng.integers(1, 16, n_users))
        write_record(record_path(results, "t3", "ml-1m", "SASRec", seed),
                     record("SASRec", "ml-1m", full, sas_metrics, seed=seed, paper_name="ml-1m"), sas_users)
        lite = record("Lite-LLM4Rec_sampling", "ml-1m", full, lite_metrics, seed=seed, paper_name="ml-1m",
                      model="lite_llm4rec", model_config={"item_llm": "all-MiniLM-L6-v2", "rec_llm": "all-MiniLM-L6-v2"},
                      latency={"ms_per_batch_median": 40.0 + seed})
        lite["protocol_variants"] = {"history masking off": {
            "evaluation": {"mask_history": False}, "metrics": {k: v - 0.05 for k, v in lite_metrics.items()}},
            "1+99 sampled candidates": {"skipped": "user 3 has only 50 items outside their history"}}
        write_record(record_path(results, "t3", "ml-1m", "Lite-LLM4Rec_sampling", seed), lite, lite_users)
    write_record(record_path(results, "t3", "ml-1m", "BERT4Rec", 0),
                 record("BERT4Rec", "ml-1m", full, {}, status="skipped", paper_name="ml-1m"))

    sections = {"P5": ({"encode": 20.0, "beam_search": 1500.0, "decode": 10.0, "other": 16.0}, 112.2),
                "P5_seq": ({"encode": 20.0, "beam_search": 1590.0, "decode": 10.0, "other": 16.0}, 112.2),
                "POD": ({"encode": 12.0, "beam_search": 1430.0, "decode": 10.0, "other": 16.0}, 85.0),
                "Lite-LLM4Rec": ({"encode": 5.0, "score": 0.8, "other": 0.3}, 20.0),
                "BERT4Rec": ({}, 21.0)}
    for run, (sec, length) in sections.items():
        metrics, users = ranked(rng.integers(1, 40, n_users))
        model_config = {"indexing": "sequential" if run == "P5_seq" else "random"} if run.startswith("P5") else {}
        rec = record(run, "ml-1m-partial", partial, metrics, experiment="gen", paper_name="ml-1m",
                     model="p5" if run.startswith("P5") else run.lower().replace("-", "_"), model_config=model_config,
                     latency={"ms_per_batch_median": sum(sec.values()) or 2.4, "sections_ms_median": sec},
                     input_length=length)
        if run.startswith("P5"):  # generative: P5's 1+99 control recorded under the old filtering rule
            rec["model_info"] = {"decoding": {"num_beams": 20}}
            sampled = {"candidates": "sampled", "num_negatives": 99}
            if run == "P5_seq":
                sampled["topk_lists"] = TOPK_SAMPLED_RULE
            rec["protocol_variants"] = {"1+99 sampled candidates": {
                "evaluation": sampled, "metrics": {k: v + 0.25 for k, v in metrics.items()}}}
        write_record(record_path(results, "gen", "ml-1m-partial", run, 0), rec, users)
        if run in ("P5", "Lite-LLM4Rec"):  # and on the paper's own ml-1m
            rec = {**rec, "dataset": "ml-1m", "data": {**rec["data"], "stats": full}}
            write_record(record_path(results, "gen", "ml-1m", run, 0), rec, users)
    # the same models timed on a second device: a figure of their own
    for run, ms in (("P5", 210.0), ("Lite-LLM4Rec", 3.1)):
        metrics, users = ranked(rng.integers(1, 40, n_users))
        write_record(record_path(results, "gen", "amazon-beauty", run, 0),
                     record(run, "amazon-beauty", stats(22363, 12101, 198502), metrics, experiment="gen",
                            latency={"ms_per_batch_median": ms}, device="Test GPU"), users)
    # scored on a seeded subset of users: never on the same axes as the all-user points
    metrics, users = ranked(rng.integers(1, 40, 64))
    write_record(record_path(results, "gen", "amazon-beauty", "LightLM", 0),
                 record("LightLM", "amazon-beauty", stats(22363, 12101, 198502), metrics, experiment="gen",
                        latency={"ms_per_batch_median": 150.0}, device="Test GPU",
                        users="seeded subset of 64 of 400"), users)

    for seed in (0, 1):
        for run, top in (("Lite-LLM4Rec", 20), ("fixT5", 35), ("fixHead", 30), ("Scratch", 60)):
            metrics, users = ranked(rng.integers(1, top, n_users))
            write_record(record_path(results, "abl", "ml-1m-partial", run, seed),
                         record(run, "ml-1m-partial", partial, metrics, experiment="abl", seed=seed,
                                paper_name="ml-1m", model="lite_llm4rec"), users)
    for run, top in (("Lite-LLM4Rec", 12), ("P5", 30), ("POD", 28)):
        metrics, users = ranked(rng.integers(1, top, n_users))
        write_record(record_path(results, "topn", "ml-1m-partial", run, 0),
                     record(run, "ml-1m-partial", partial, metrics, experiment="topn", candidates="sampled",
                            paper_name="ml-1m", model="lite_llm4rec" if run.startswith("Lite") else run.lower()),
                     users)
    for run, top in (("HLLM", 40), ("SASRec", 400)):  # SASRec cannot score items it never saw
        metrics, users = ranked(rng.integers(1, top, n_users))
        rec = record(run, "ml-1m-partial", partial, metrics, experiment="cold", model=run.lower())
        rec["cold_start"] = {"n_users": n_users, "held_out_items": [3, 5],
                             "metrics_other_users": {k: v + 0.1 for k, v in metrics.items()}}
        write_record(record_path(results, "cold", "ml-1m-partial", run, 0), rec, users)
    metrics, users = ranked(rng.integers(1, 200, n_users))
    write_record(record_path(results, "custom", "ml-100k", "MostPopular", 0),
                 record("MostPopular", "ml-100k", stats(943, 1349, 99287), metrics, experiment="custom"), users)


def build_synthetic(root):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cfgmod, "EXPERIMENTS_DIR", write_experiments(root / "experiments", EXPERIMENTS))
        hand_made_configs_are_current(patch)
        results, reports = root / "results", root / "reports"
        write_synthetic_results(results)
        return results, reports, build_reports(results, reports)


@pytest.fixture(scope="module")
def synthetic_reports(tmp_path_factory):
    """Built once for the read-only tests below (drawing the figures is the slow part)."""
    return build_synthetic(tmp_path_factory.mktemp("synthetic"))


def test_every_artefact_has_a_page_linked_from_the_index(synthetic_reports):
    _, reports, written = synthetic_reports
    index = (reports / "README.md").read_text()
    for artefact in ARTEFACTS:
        assert (reports / f"{artefact.page}.md").is_file()
        assert f"]({artefact.page}.md)" in index
    for page in ("datasets.md", "accuracy_latency.md", "protocol_controls.md", "custom.md"):
        assert f"]({page})" in index and (reports / page).is_file()
    # the protocol, stated once on the index
    assert "## Protocol" in index and "leave-one-out" in index and "data hash `bbbbbbbbbbbb`" in index
    assert "Device: Test CPU" in index and "Device: Test GPU" in index and "torch 2.13.0" in index
    assert "cccccccccc (" in index
    # pages nobody has run say how they would be filled
    table6 = (reports / "table6.md").read_text()
    assert "Not run" in table6 and "table6_item_llm_backbone" in table6
    # every markdown table has its CSV and LaTeX twin; LaTeX escapes and typesets ±
    for csv in (reports / "tables").glob("*.csv"):
        assert csv.with_suffix(".tex").is_file()
    tex = (reports / "tables" / "table3__t3__ml-1m.tex").read_text()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and r"Lite-LLM4Rec\_sampling" in tex
    # every figure embedded in a page exists as PNG and PDF
    pages = "".join(p.read_text() for p in reports.glob("*.md"))
    embedded = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", pages)
    assert len(embedded) >= 5
    for png in embedded:
        assert (reports / png).is_file() and (reports / png).with_suffix(".pdf").is_file()
    assert set(written) >= {reports / png for png in embedded}


def test_table3_intervals_significance_and_paper_comparison(synthetic_reports):
    results, reports, _ = synthetic_reports
    page = (reports / "table3.md").read_text()
    from benchmarks.records import read_per_user

    # the interval of SASRec's R@10 over its three seeds, by hand
    values = [__import__("json").loads(record_path(results, "t3", "ml-1m", "SASRec", s).read_text())["metrics"]["recall@10"]
              for s in (0, 1, 2)]
    half = scipy_stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3)
    assert f"{np.mean(values):.4f} ± {half:.4f}" in page and "n=3: 0, 1, 2" in page
    # the significance marker on Lite-LLM4Rec, and the test named with scipy's own p-value
    lite_row = next(line for line in page.splitlines() if line.startswith("| Lite-LLM4Rec_sampling | 0."))
    assert lite_row.count("*") == 4
    assert "paired t-test (scipy.stats.ttest_rel" in page and "Wilcoxon" in page
    mine = np.mean([read_per_user(record_path(results, "t3", "ml-1m", "Lite-LLM4Rec_sampling", s))["recall@10"]
                    for s in (0, 1, 2)], axis=0)
    base = np.mean([read_per_user(record_path(results, "t3", "ml-1m", "SASRec", s))["recall@10"] for s in (0, 1, 2)], axis=0)
    p = scipy_stats.ttest_rel(mine, base).pvalue
    sig_row = next(line for line in page.splitlines() if line.startswith("| Lite-LLM4Rec_sampling | R@10"))
    assert "SASRec" in sig_row and ("< 0.0001" if p < 1e-4 else f"{p:.4f}") in sig_row
    # the paper's row beside ours: SASRec with a difference; Lite-LLM4Rec ran MiniLM, so no difference
    paper = paper_reference()["table3_overall"]["ml-1m"]
    comparison = page.split("labelled as the paper's, beside ours")[1]
    assert f"{np.mean(values) - paper['SASRec']['R@10']:+.4f}" in comparison
    lite_line = next(line for line in comparison.splitlines() if line.startswith("| Lite-LLM4Rec_sampling"))
    assert "not comparable" in lite_line and "all-MiniLM-L6-v2 in place of the paper's T5" in lite_line
    assert "skipped: no weights for t5-large here" in page and "| GRU4Rec" in page and "not run" in page


def test_latency_pages_never_set_the_papers_times_against_ours(synthetic_reports):
    _, reports, _ = synthetic_reports
    table4 = (reports / "table4.md").read_text()
    on_paper_data, on_partial = table4.split("## ml-1m-partial")
    # the paper's ml-1m: its times are named as not comparable, never printed or subtracted
    assert "the paper timed its models on its own, unnamed GPU" in on_paper_data
    assert "1646" not in table4 and "paper ms/batch" not in table4
    assert "not the paper's ml-1m" in on_partial
    # only the models the paper's Table 4 prints: P5_seq (a protocol control) stays off it
    assert "| P5_seq" not in table4 and "| POD " in table4 and "| P5_seq" in (reports / "figure2.md").read_text()
    # input length does not depend on the device: on the paper's ml-1m it stands beside ours
    table5 = (reports / "table5.md").read_text()
    paper_part = table5.split("## ml-1m-partial")[0]
    assert "paper input length" in paper_part and "+0.0" in paper_part  # P5 112.2 vs the paper's 112.2
    assert "| P5 " in table5 and "unit" in table5
    figure2 = (reports / "figure2.md").read_text()
    assert "beam search share" in figure2 and "0.970" in figure2  # 1500 / 1546 ms
    assert "figures/figure2__gen__ml-1m-partial.png" in figure2


def test_views_across_pages(synthetic_reports):
    _, reports, _ = synthetic_reports
    accuracy = (reports / "accuracy_latency.md").read_text()
    # one figure per device: the Test GPU times never share an axis with the Test CPU ones
    # ml-1m and ml-1m-partial on the CPU and amazon-beauty on the GPU; ml-100k has one model: no figure
    assert accuracy.count("![") == 3 and "One model timed on this device" in accuracy
    assert "## amazon-beauty, Test GPU, batches of 32; users: all" in accuracy
    subset = accuracy.split("users: seeded subset of 64 of 400")[1]
    assert "One model timed on this device" in subset.split("##")[0]  # LightLM alone in its group
    assert "Pareto frontier" in accuracy
    controls = (reports / "protocol_controls.md").read_text()
    assert "history masking off" in controls and "-0.0500" in controls
    assert "1+99 sampled candidates: user 3 has only 50 items" in controls  # a skip says why
    # a generative model's 1+99 evaluation counts only when its beam was constrained to the candidates
    assert "gen / ml-1m-partial / P5, 1+99 sampled candidates: recorded before top-k lists were constrained" in controls
    assert "| P5_seq " in controls.split("Controls not measured")[0]
    assert "| P5 " not in controls.split("Controls not measured")[0].split("## Item indexing")[0]
    assert "| P5 (indexing=random) | P5_seq (indexing=sequential)" in controls
    assert "- gen / ml-1m-partial: P5_seq (indexing=sequential) against P5 (indexing=random), R@10 " in controls
    figure6 = (reports / "figure6.md").read_text()
    assert "sampled ranking (1 target + 99 sampled negatives" in figure6 and "figures/figure6__" in figure6
    ablation = (reports / "figure4_5.md").read_text()
    assert "| fixT5" in ablation and "figures/figure4_5__abl__ml-1m-partial.png" in ablation
    versus = ablation.split("Each row against Lite-LLM4Rec (paired over users;")[1]
    versus = versus.split("Records:")[0]
    assert "| Scratch " in versus and "| fixHead " in versus and "| fixT5 " in versus
    assert "| -0." in versus  # the synthetic ablations rank their targets lower than the full model
    custom = (reports / "custom.md").read_text()
    assert "MostPopular" in custom
    cold = (reports / "cold_start.md").read_text()
    assert "R@10 other users" in cold and "| HLLM" in cold and "| SASRec" in cold


def test_rebuild_removes_pages_of_records_that_went_away(tmp_path, monkeypatch):
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", write_experiments(tmp_path / "experiments", EXPERIMENTS))
    results, reports, _ = build_synthetic(tmp_path)
    figure = reports / "figures" / "figure6__topn__ml-1m-partial.png"
    assert figure.is_file()
    for path in (results / "topn").rglob("*"):
        if path.is_file():
            path.unlink()
    unrelated = reports / "notes.md"
    unrelated.write_text("kept: not written by a build")
    build_reports(results, reports)
    assert not figure.is_file() and not figure.with_suffix(".pdf").is_file()
    assert "Not run: no records yet" in (reports / "figure6.md").read_text()
    assert "figures/figure2__gen__ml-1m.png" in (reports / "figure2.md").read_text()  # the rest stays
    assert unrelated.is_file()


def test_latency_line_warns_when_rows_were_timed_on_different_devices():
    from benchmarks.reports.pages import latency_line

    full = stats(60, 80, 700)
    cpu = record("P5", "ml-1m", full, {}, device="CPU A", latency={"ms_per_batch_median": 5000.0})
    same = record("Lite-LLM4Rec", "ml-1m", full, {}, device="CPU A", latency={"ms_per_batch_median": 60.0})
    other = record("Lite-LLM4Rec", "ml-1m", full, {}, device="CPU B", latency={"ms_per_batch_median": 60.0})
    assert "different devices" not in latency_line([cpu, same])
    assert "different devices" in latency_line([cpu, other]) and "CPU A" in latency_line([cpu, other])
    # one CPU name, two instruction sets (bf16 native on one): two devices, each named with its sets
    amx = record("P5", "ml-1m", full, {}, device="CPU A",
                 latency={"ms_per_batch_median": 50.0, "cpu_features": ["avx2", "avx512_f", "amx_bf16"]})
    plain = record("Lite-LLM4Rec", "ml-1m", full, {}, device="CPU A",
                   latency={"ms_per_batch_median": 60.0, "cpu_features": ["avx2", "avx512_f"]})
    line = latency_line([amx, plain])
    assert "different devices" in line and "CPU A (avx2, avx512_f, amx_bf16)" in line and "CPU A (avx2, avx512_f) (" in line
    assert "different devices" not in latency_line([plain, dict(plain, run="P5")])


def test_a_latency_median_from_fewer_than_30_timed_batches_says_so_in_its_cell():
    from benchmarks.reports.pages import latency_line
    from benchmarks.reports.records import Record
    from benchmarks.reports.tables import few_batches_note

    full = stats(60, 80, 700)
    beam = record("P5", "ml-1m", full, {}, latency={"ms_per_batch_median": 5000.0, "n_batches": 3})
    timed = record("Lite-LLM4Rec", "ml-1m", full, {}, latency={"ms_per_batch_median": 60.0, "n_batches": 30})
    assert few_batches_note([Record(beam)]) == " (3 timed batches)"
    assert few_batches_note([Record(timed)]) == ""
    # a row of several seeds shows its fewest
    assert few_batches_note([Record(timed), Record({**beam, "seed": 1})]) == " (3 timed batches)"
    assert "30 timed batches (a row timed on fewer says so in its cell)" in latency_line([beam, timed])
    assert "median over 30 timed batches after" in latency_line([timed])


# ----------------------------------------------------------------------------- stars, convergence, curves


def _ranks_with_recall(n_users, recall_at_10, seed):
    """Ranks of n users of which a `recall_at_10` share rank within the top 10 (at 1..10)."""
    rng = np.random.default_rng(seed)
    hits = rng.permutation(n_users) < round(recall_at_10 * n_users)
    return np.where(hits, rng.integers(1, 11, n_users), rng.integers(30, 200, n_users)).astype(np.float64)


def _trained(stopped_by, best_epoch, epochs, values):
    return {"epochs": epochs, "seconds": float(epochs), "best_epoch": best_epoch, "stopped_by": stopped_by,
            "history": [{"epoch": e, "loss": 1.0 / e, "seconds": float(e), "valid": {"recall@10": v}}
                        for e, v in zip(range(1, epochs + 1), values)]}


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


def test_latency_tables_show_the_work_per_batch_and_the_share_of_peak(tmp_path, monkeypatch):
    exp_dir = write_experiments(tmp_path / "experiments", {"t3": "paper_table: table3_overall\nruns: {SASRec: {}, Old: {}}\n"})
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    results = tmp_path / "results"
    m = {"recall@10": 0.2, "recall@20": 0.3, "ndcg@10": 0.1, "ndcg@20": 0.12}
    write_record(record_path(results, "t3", "ml-1m", "SASRec", 0),
                 record("SASRec", "ml-1m", stats(100, 50, 2000), m,
                        latency={"gflop_per_batch": 13.6, "share_of_peak": 0.4567}))
    write_record(record_path(results, "t3", "ml-1m", "Old", 0), record("Old", "ml-1m", stats(100, 50, 2000), m))
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "table3.md").read_text()
    header = next(line for line in page.splitlines() if line.startswith("| model"))
    assert "| GFLOP/batch " in header and "| share of peak " in header
    assert re.search(r"\| SASRec +\|.*\| 13\.60 +\| 0\.457 ", page)


def test_rows_timed_as_published_and_at_their_best_with_both_ratios(tmp_path, monkeypatch):
    exp_dir = write_experiments(tmp_path / "experiments", {"t4": (
        "paper_table: table4_inference_ms_per_batch_of_32\nruns: {P5: {}, Lite-LLM4Rec: {}}\nproposed: [Lite-LLM4Rec]\n")})
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    results = tmp_path / "results"
    m = {"recall@10": 0.2, "recall@20": 0.3, "ndcg@10": 0.1, "ndcg@20": 0.12}
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


def test_runs_that_differ_only_in_their_backbone_are_compared_on_validation(tmp_path, monkeypatch):
    """P5 on two backbones (the second a row the paper's table does not list) and POD on one: the
    page compares the P5 pair on their validation metric, never on test numbers, and says when the
    comparison is not a finished choice (a row cut by its cap, other validation users)."""
    exp_dir = write_experiments(tmp_path / "experiments", {"gen": (
        "paper_table: table3_overall\nruns: {P5: {}, P5_big: {}, POD: {}}\n")})
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    results = tmp_path / "results"
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
