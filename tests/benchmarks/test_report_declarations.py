"""Report pages declared in experiment files (`report:`), the proposed rows (`proposed:`), strict
checks of both, the order of the pages, and old records brought up to date on loading."""
import numpy as np
import pytest

from benchmarks import config as cfgmod
from benchmarks.config import ConfigError
from benchmarks.records import record_path, write_record
from benchmarks.reports import build_reports
from benchmarks.reports.catalogue import declared_pages
from benchmarks.reports.records import OLD_TOPK_RULE, Record

from .report_records import ranked, record, stats, write_experiments
from .report_records import every_record_current  # noqa: F401 (autouse: hand-made configs count as current)

NEW_PAGE = """description: my own comparison
proposed: [Mine]
runs: {Base: {}, Mine: {}}
report:
  - page: my_comparison
    title: "My comparison"
    what: Mine against Base on a toy dataset
    columns: [metrics, training]
    metrics: [R@10, N@10]
    from_paper: false
"""


def test_a_page_declared_in_an_experiment_file_is_built_with_its_table(tmp_path, monkeypatch):
    exp_dir = write_experiments(tmp_path / "experiments", {
        "mine": NEW_PAGE,
        # a second experiment feeding the same page through its paper_table, without `proposed:`
        "more": "description: one more row\npaper_table: mine\nruns: {Other: {}, Mine: {}}\n"})
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    results = tmp_path / "results"
    rng = np.random.default_rng(0)
    for experiment, run, top in (("mine", "Base", 60), ("mine", "Mine", 8), ("more", "Other", 60), ("more", "Mine", 8)):
        metrics, users = ranked(rng.integers(1, top, 300))
        write_record(record_path(results, experiment, "toy", run, 0),
                     record(run, "toy", stats(300, 100, 5000), metrics, experiment=experiment), users)
    build_reports(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "my_comparison.md").read_text()
    assert page.startswith("# My comparison\n\nThis page: Mine against Base on a toy dataset.\n")
    assert "## toy (mine)" in page and "## toy (more)" in page  # both experiments feed it
    mine_part, more_part = page.split("## toy (more)")
    header = next(line for line in mine_part.splitlines() if line.startswith("| model "))
    assert "| R@10 " in header and "| N@10 " in header and "R@20" not in header and "| epochs " in header
    # `proposed: [Mine]` (model "mine", not lite_llm4rec): tested against Base and starred
    assert next(line for line in mine_part.splitlines() if line.startswith("| Mine ") and "| 0." in line).count("*") == 2
    assert "Significance against the best baseline" in mine_part and "| Mine " in mine_part.split("Significance")[1]
    # `more` names no proposed runs: the fallback (model lite_llm4rec) finds none, so no test
    assert "Significance" not in more_part and "*" not in more_part.split("| model ")[1].split("Records:")[0]
    assert (tmp_path / "reports" / "tables" / "my_comparison__mine__toy.csv").is_file()
    index = (tmp_path / "reports" / "README.md").read_text()
    assert "- [My comparison](my_comparison.md): Mine against Base on a toy dataset (4 finished record(s))" in index
    assert "](mine.md)" not in index and "](more.md)" not in index  # no page of their own: they feed one


def test_a_page_that_chooses_on_validation_shows_the_validation_metrics_first(tmp_path, monkeypatch):
    declared = NEW_PAGE.replace("columns: [metrics, training]", "columns: [validation, metrics, training]")
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", write_experiments(tmp_path / "experiments", {"mine": declared}))
    results, rng = tmp_path / "results", np.random.default_rng(0)
    for run, valid in (("Base", 0.2468), ("Mine", 0.1357)):
        metrics, users = ranked(rng.integers(1, 60, 300))
        rec = record(run, "toy", stats(300, 100, 5000), metrics, experiment="mine")
        rec["valid_metrics"] = {**metrics, "recall@10": valid}
        write_record(record_path(results, "mine", "toy", run, 0), rec, users)
    build_reports(results, tmp_path / "reports")
    lines = (tmp_path / "reports" / "my_comparison.md").read_text().splitlines()
    header = [c.strip() for c in next(x for x in lines if x.startswith("| model ")).split("|")[1:-1]]
    assert header[:5] == ["model", "valid R@10", "valid N@10", "R@10", "N@10"]
    first = lines[lines.index(next(x for x in lines if x.startswith("| model "))):]
    first = first[:first.index("")]  # the results table, not the significance table below it
    rows = {c[0]: c for c in ([x.strip() for x in line.split("|")[1:-1]] for line in first)}
    assert rows["Base"][1] == "0.2468" and rows["Mine"][1] == "0.1357"


def test_an_unknown_key_in_a_page_declaration_is_an_error_naming_file_and_key(tmp_path, monkeypatch):
    body = NEW_PAGE.replace("    from_paper: false\n", "    from_paper: false\n    colums: [metrics]\n")
    exp_dir = write_experiments(tmp_path / "experiments", {"mine": body})
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    with pytest.raises(ConfigError, match=r"mine\.yaml: report entry 1 \(page 'my_comparison'\): unknown key\(s\) \['colums'\]"):
        cfgmod.load_experiment("mine")
    with pytest.raises(ConfigError, match="colums"):  # the build stops too: no page silently dropped
        build_reports(tmp_path / "results", tmp_path / "reports")


@pytest.mark.parametrize("change, message", [
    (("    columns: [metrics, training]\n", "    columns: [metrics, speed]\n"), "'columns' must be a non-empty list of"),
    (("    from_paper: false\n", "    from_paper: no way\n"), "'from_paper' must be true or false"),
    (("    from_paper: false\n", "    from_paper: false\n    paper_layout: one_column\n"),
     "'paper_column' goes with paper_layout one_column"),
    (("  - page: my_comparison\n", "  - page: my comparison\n"), "'page' must be a file name"),
    (("    title: \"My comparison\"\n", ""), r"missing \['title'\]"),
    (("proposed: [Mine]\n", "proposed: [Mien]\n"), r"'proposed' names \['Mien'\], which are not runs"),
    (("    from_paper: false\n", "    from_paper: false\n    kind: chart\n"), r"'kind' must be one of \['table', 'verdict'\]"),
])
def test_page_declarations_and_proposed_runs_are_checked(tmp_path, monkeypatch, change, message):
    exp_dir = write_experiments(tmp_path / "experiments", {"mine": NEW_PAGE.replace(*change)})
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    with pytest.raises(ConfigError, match=message):
        cfgmod.load_experiment("mine")


def test_a_page_declared_twice_is_an_error_naming_both_files(tmp_path, monkeypatch):
    exp_dir = write_experiments(tmp_path / "experiments", {
        "mine": NEW_PAGE, "again": NEW_PAGE.replace("description: my own comparison", "description: again")})
    monkeypatch.setattr(cfgmod, "EXPERIMENTS_DIR", exp_dir)
    with pytest.raises(ConfigError, match=r"'my_comparison' is declared twice: in .*(again|mine)\.yaml and in .*(again|mine)\.yaml"):
        declared_pages()


def test_the_shipped_pages_in_the_order_of_the_index():
    pages = declared_pages()
    assert [p.spec.page for p in pages] == ["table1", "table2", "table3", "table4", "table5", "table6", "table7",
                                            "table9", "figure2", "figure4_5", "figure6", "lite_llm4rec_settings", "cold_start",
                                            "verdict"]
    declared_by = {p.spec.page: p.experiment for p in pages}
    assert declared_by["verdict"] == "table3_overall" and pages[-1].spec.kind == "verdict"
    assert declared_by["table3"] == "table3_overall" and declared_by["figure2"] == "table1_2_4_5_generative"
    assert declared_by["table9"] is None  # benchmarks/experiments/pages.yaml: no experiment feeds it yet
    assert cfgmod.load_experiment("table3_overall")[1]["proposed"] == [
        "Lite-LLM4Rec_sampling", "Lite-LLM4Rec_sampling_stage1", "Lite-LLM4Rec_all"]
    assert "pages" not in cfgmod.list_experiments()


def test_a_format_1_record_is_brought_up_to_date_on_loading():
    raw = record("P5", "ml-1m", stats(60, 80, 700), {"recall@10": 0.1}, latency={"ms_per_batch_median": 2.0})
    raw.update(record_format=1, model_info={"decoding": {"num_beams": 20}}, protocol_variants={
        "1+99 sampled candidates": {"evaluation": {"candidates": "sampled"}, "metrics": {"recall@10": 0.5}}})
    del raw["latency"]["dtype"], raw["evaluation"]["candidates"]
    raw["training"] = {"epochs": 7, "stage1": {"epochs": 3, "history": []}, "history": []}
    rec = Record(raw)
    assert rec.protocol_variants == {"1+99 sampled candidates": {"skipped": OLD_TOPK_RULE}}
    assert rec.latency["dtype"] == "n/a" and rec.evaluation["candidates"] == "full"
    assert [stage["epochs"] for stage in rec.stages] == [3, 7]
    assert "dtype" not in raw["latency"]  # the record as read is left alone
