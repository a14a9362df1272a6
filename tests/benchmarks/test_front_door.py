"""The front door: the --list forms, one model in one command, a model of one's own in one file
(examples/byo_model), every bad command-line value answered with exit code 2 and no traceback,
--report-only refusing a results folder with nothing to report, the first command on a clone
whose records are all there, the console script, and the README's command lines."""
import re
import shlex
import tomllib
from pathlib import Path

import pytest

import run_all
from benchmarks import cli as cli_mod
from benchmarks.planning import plan_runs
from benchmarks.reports.catalogue import declared_pages, files_named_by
from benchmarks.reports.records import load_records

from .test_runner import cli
from .test_variants import toy_experiment

REPO = Path(__file__).resolve().parents[2]
BYO = REPO / "examples" / "byo_model"


def folders(tmp_path):
    return ["--results-dir", str(tmp_path / "results"), "--reports-dir", str(tmp_path / "reports"),
            "-o", f"data.cache_dir={tmp_path / 'cache'}", "--quiet"]


def test_every_list_form_lists_what_exists_one_line_each(capsys):
    assert run_all.main(["--list-models"]) == 0
    out = capsys.readouterr().out
    for name in ("lite_llm4rec", "most_popular", "p5_encoder_only", "SASRec", "GRU4Rec", "package.module:Class"):
        assert re.search(rf"^  {re.escape(name)} ", out, re.M), name
    assert run_all.main(["--list-experiments"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  table3_overall +rows MostPopular, GRU4Rec, SASRec", out, re.M)
    assert re.search(r"^  gpu +table3_overall, table1_2_4_5_generative", out, re.M)
    assert run_all.main(["--list-datasets"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  ml-100k +ml-100k +embedded", out, re.M)
    assert re.search(r"^  ml-1m +ml-1m +give --data-path; files: ratings.dat, movies.dat", out, re.M)


def test_one_model_in_one_command(tmp_path, toy_ml1m, capsys):
    # a RecBole model by its own name (any case), a registered name, a class by its path
    assert plan_runs(set_name=None, models=["sasrec"]).runs[0].config["model"]["recbole_model"] == "SASRec"
    path = "examples.byo_model.transitions:Transitions"
    args = ["--model", f"most_popular,{path}", "--dataset", "ml-1m", "--data-path", str(toy_ml1m), *folders(tmp_path)]
    assert run_all.main(args) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "results" / "quick" / "ml-1m"
    assert sorted(p.name for p in folder.glob("*.json")) == ["Transitions__seed0.json", "most_popular__seed0.json"]
    header = next(line for line in out.splitlines() if line.startswith("| model"))
    assert all(column in header for column in ("R@10", "N@20", "ms/batch", "stopped by", "record"))
    assert re.search(r"^\| Transitions +\| ml-1m +\| 0 +\| +\| 1\.0000", out, re.M)  # the cycle, learnt
    assert "python run_all.py --report-only" in out and not (tmp_path / "reports").exists()
    # with an override: a variant beside it; the main record untouched
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert run_all.main(["--model", "most_popular"] + args[2:] + ["-o", "train.epochs=1"]) == 0
    assert len(list(folder.glob("most_popular__seed0__h*.json"))) == 1
    assert all((folder / name).read_bytes() == content for name, content in before.items())
    # its page is the quick experiment's own; no paper table reads it
    assert run_all.main(["--report-only", "--results-dir", str(tmp_path / "results"),
                         "--reports-dir", str(tmp_path / "reports")]) == 0
    page = (tmp_path / "reports" / "quick.md").read_text()
    assert page.startswith("# Models run by themselves") and "| Transitions " in page and "Variant records" in page
    assert "quick" not in (tmp_path / "reports" / "table3.md").read_text()


def test_your_own_model_in_one_file_is_starred_where_it_wins_on_every_page_it_feeds(tmp_path, toy_ml1m):
    experiment = BYO / "byo_example.yaml"
    args = ["--experiments", str(experiment), "--runs", "MostPopular,Transitions", "--dataset", "ml-1m",
            "--data-path", str(toy_ml1m), *folders(tmp_path)]
    assert run_all.main(args) == 0
    records = load_records(tmp_path / "results")
    assert {r.run for r in records} == {"MostPopular", "Transitions"}
    assert all(r.experiment_file == str(experiment) for r in records)
    fed = [page.spec.page for page in declared_pages(files_named_by(records)) if page.fed_by("byo_example", None)]
    assert fed == ["byo_example"]
    for name in fed:
        page = (tmp_path / "reports" / f"{name}.md").read_text()
        row = next(line for line in page.splitlines() if line.startswith("| Transitions "))
        assert row.count("*") == 4  # R@10, R@20, N@10, N@20: significantly above MostPopular
        assert "the proposed model (Transitions)" in page  # named from the experiment, not the paper's
        assert "Significance against the best baseline" in page
    assert "Transitions" in (tmp_path / "reports" / "accuracy_latency.md").read_text()
    index = (tmp_path / "reports" / "README.md").read_text()
    assert "[Your model: Transitions against the baselines](byo_example.md)" in index


BAD_VALUES = [
    (["--seeds", "a"], "--seeds must be comma-separated whole numbers"),
    (["--seeds", ","], "--seeds must be comma-separated whole numbers"),
    (["--shard", "0/2"], "shards count from 1"),
    (["--dataset", "ml-5m"], "unknown dataset preset 'ml-5m'"),
    (["--data-path", "/nowhere/at/all"], "--data-path '/nowhere/at/all' does not exist"),
    (["--data-root", __file__], "is not a folder"),
    (["--reports-dir", __file__], "--reports-dir"),
    (["--device", "gpu"], "device must be cpu, cuda, cuda:N or auto"),
    (["-o", "train.epochs"], "must look like key.subkey=value"),
    (["-o", "train.lrr=1"], "unknown config key 'train.lrr'"),
    (["--model", "NoSuchModel"], "unknown model 'NoSuchModel'"),
    (["--model", "no_such_module:Model"], "cannot import 'no_such_module'"),
    (["--model", "benchmarks.models:ModelParams"], "not a subclass of benchmarks.models.Recommender"),
    (["--model", "SASRec", "--experiments", "table3_overall"], "--model runs one model by itself"),
    (["--tag", "a b"], "--tag must be"),
    (["--with-variants", ","], "--with-variants needs at least one tag"),
    (["--set", "nope"], "unknown experiment set 'nope'"),
    (["--experiments", "table99"], "unknown experiment 'table99'"),
    (["--experiments", "table3_overall", "--runs", "Nope"], "unknown run(s) ['Nope']"),
]


@pytest.mark.parametrize("argv, message", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_bad_command_line_value_exits_2_with_a_clear_message(tmp_path, argv, message, capsys):
    assert run_all.main(argv + ["--list", "--results-dir", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_an_unknown_option_exits_2_with_the_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_all.main(["--modle", "SASRec"])
    assert exit_.value.code == 2 and "unrecognized arguments: --modle" in capsys.readouterr().err


def test_report_only_refuses_a_results_folder_with_nothing_to_report(tmp_path, capsys):
    reports = tmp_path / "reports"
    assert run_all.main(["--report-only", "--results-dir", str(tmp_path / "resluts"), "--reports-dir", str(reports)]) == 2
    assert "--results-dir" in (err := capsys.readouterr().err) and "does not exist: nothing to report" in err
    (tmp_path / "empty").mkdir()
    assert run_all.main(["--report-only", "--results-dir", str(tmp_path / "empty"), "--reports-dir", str(reports)]) == 2
    assert "holds no records: nothing to report" in capsys.readouterr().err
    assert not reports.exists()  # nothing rebuilt from nothing


def test_a_call_that_trains_nothing_says_so_and_how_to_train(tmp_path, toy_ml1m, capsys):
    exp = toy_experiment(tmp_path)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--runs", "MostPopular")) == 0
    assert "Nothing trained" not in capsys.readouterr().out
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--runs", "MostPopular")) == 0
    out = capsys.readouterr().out
    assert "[report] " in out and "reports" in out
    assert "Nothing trained: all 1 run(s) already have records" in out
    assert "--force" in out and "python run_all.py --model SASRec --dataset ml-100k" in out


def test_the_console_script_is_run_all():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["llm4rec-bench"].partition(":")
    assert (module, name) == ("benchmarks.cli", "main") and run_all.main is cli_mod.main


def readme_commands() -> list[str]:
    """Every `python run_all.py ...` (or llm4rec-bench ...) command line in the README's code."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S):
        for line in block.splitlines():
            for part in re.split(r"[;|&]", line.split("  #")[0]):
                match = re.search(r"(?:python3? run_all\.py|llm4rec-bench)(.*)", part)
                if match:
                    commands.append(match.group(1).strip())
    return commands


def test_every_command_line_in_the_readme_parses_and_names_what_exists():
    commands = readme_commands()
    assert len(commands) > 20 and any("--model" in c for c in commands) and "--list-models" in commands
    for text in commands:
        text = text.replace("$i", "1")
        args = cli_mod.parser().parse_args(shlex.split(text))
        if not (args.data_path or args.data_root):  # the README's data folders are the reader's
            cli_mod.check_args(args)
        for experiment in cli_mod.names(args.experiments) or []:
            assert Path(experiment).suffix or experiment in {p.stem for p in (REPO / "benchmarks" / "experiments").glob("*.yaml")}, text


def test_the_readmes_own_model_runs_by_its_path(tmp_path, toy_ml1m, monkeypatch, capsys):
    """The README's model of one's own, as printed, in a file of the folder run from."""
    section = (REPO / "README.md").read_text().split("## Your own model, in one file")[1]
    (tmp_path / "mymodel.py").write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    monkeypatch.chdir(tmp_path)
    assert run_all.main(["--model", "mymodel:Popular", "--dataset", "ml-1m", "--data-path", str(toy_ml1m),
                         *folders(tmp_path)]) == 0
    assert re.search(r"^\| Popular +\| ml-1m +\| 0 +\| +\| 0\.\d{4}", capsys.readouterr().out, re.M)
    record = tmp_path / "results" / "quick" / "ml-1m" / "Popular__seed0.json"
    assert '"smoothing": 1.0' in record.read_text()
