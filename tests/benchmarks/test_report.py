"""Reports from synthetic records: every page, figure and index; paper numbers only where
comparable; missing and skipped cells; confidence intervals and the significance marker.
Stars and the significance tests unit by unit: test_report_significance.py; further columns,
rows and readings of the tables: test_report_tables.py."""
import re

import numpy as np
import pytest
from scipy import stats as scipy_stats

from benchmarks import config as cfgmod
from benchmarks.evaluate import TOPK_SAMPLED_RULE
from benchmarks.records import record_path, write_record
from benchmarks.reports import build_reports, paper_reference
from benchmarks.reports.catalogue import declared_pages
from benchmarks.reports.records import Record
from benchmarks.reports.tables import Column, missing_row
from tests.benchmarks.report_records import hand_made_configs_are_current, ranked, record, stats, write_experiments
from tests.benchmarks.report_records import every_record_current  # noqa: F401 (autouse: hand-made configs count as current)

ARTEFACTS = [page.spec for page in declared_pages()]  # every page the shipped experiment files declare

PAPER_ML1M = (6040, 3706, 994169)  # the paper's ml-1m (Table 8)


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
           " table5_avg_input_length, figure2_latency_breakdown, table2_decoder_and_title_variants]\n"
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
            rec["model_info"] = {"decoding": {"num_beams": 20, "counts": {"lists": 400, "short_lists": 100,
                                                                          "invalid_ids": 300}}}
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
    # how many generative lists came out short qualifies metrics: said where metrics are shown
    assert "returned fewer items" not in table5 + figure2
    assert "- P5: 25% of the lists its beam search returned (100 of 400," in (reports / "table2.md").read_text()
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
    assert "Timed again" not in line
    again = latency_line([amx, dict(plain, retimed={"at": "2026-12-04T05:00:00+00:00", "replaced": {}})])
    assert again.endswith("Timed again after training, from the kept trained model (`--retime`; the record keeps "
                          "the times it replaced): Lite-LLM4Rec.")


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
