"""--keep-models and --retime (benchmarks/kept_models.py): trained models kept, timed again later
in one sitting, and only the records' latency blocks rewritten."""
import pytest

import run_all
from benchmarks.records import read_per_user, read_record, write_record
import tests.benchmarks.toy_models  # noqa: F401  (registers toy_next_item)
from tests.benchmarks.runner_experiment import write_experiment
from tests.benchmarks.test_runner import cli

BODY = (
    "description: toy experiment\n"
    "paper_table: table3_overall\n"
    "datasets: [ml-1m]\n"
    "config: {train: {epochs: 3, patience: 3, lr: 0.05}, eval: {protocol_controls: []},\n"
    "         latency: {max_batches: 2, warmup_batches: 1, batch_size: 8, settings: [{precision: bf16}]}}\n"
    "runs:\n"
    "  MostPopular: {model: {name: most_popular}}\n"
    "  Toy: {model: {name: toy_next_item, dim: 8}}\n"
)
TIMES = ("latency", "inference_settings", "retimed")


def test_kept_models_are_timed_again_and_only_their_times_change(tmp_path, toy_ml1m, monkeypatch, capsys, one_thread):
    monkeypatch.chdir(tmp_path)  # .cache/trained
    exp = write_experiment(tmp_path, BODY)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--keep-models")) == 0
    kept = {path.name.split("__")[2]: path for path in (tmp_path / ".cache" / "trained").glob("*.pt")}
    assert sorted(kept) == ["MostPopular", "Toy"]
    folder = tmp_path / "results" / "toyexp" / "ml-1m"
    paths = {name: folder / f"{name}__seed0.json" for name in kept}
    before = {name: read_record(path) for name, path in paths.items()}
    ranks = {name: read_per_user(path)["rank"].tolist() for name, path in paths.items()}

    capsys.readouterr()
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--list")) == 0
    assert "done, model kept\n" in capsys.readouterr().out  # --list says which runs --retime can time
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--retime")) == 0
    assert "[retime] toyexp/ml-1m/Toy/seed0: " in capsys.readouterr().out
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--list")) == 0
    assert "done, model kept, timed again 20" in capsys.readouterr().out
    assert "(`--retime`; the record keeps the times it replaced): MostPopular, Toy." in \
        (tmp_path / "reports" / "table3.md").read_text()  # the pages say which rows were timed again
    for name, path in paths.items():
        after = read_record(path)
        assert after["retimed"]["replaced"] == {key: before[name][key] for key in ("latency", "inference_settings")}
        assert after["retimed"]["environment"]["device"] == "cpu" and "commit" in after["retimed"]["environment"]["git"]
        assert after["latency"]["n_batches"] == 2 and after["latency"] != before[name]["latency"]  # timed again
        [setting] = after["inference_settings"]
        assert setting["label"] == before[name]["inference_settings"][0]["label"] and setting["latency"]["n_batches"] == 2
        # the kept model is the trained one: under bf16 it ranks as it did when the run measured it
        assert setting["metrics"] == before[name]["inference_settings"][0]["metrics"]
        assert {k: v for k, v in after.items() if k not in TIMES} == {k: v for k, v in before[name].items() if k not in TIMES}
        assert read_per_user(path)["rank"].tolist() == ranks[name]

    # a kept model from another training of the run is never timed in place of the record's
    retimed = read_record(paths["MostPopular"])
    write_record(paths["MostPopular"], {**retimed, "finished": "2030-01-01T00:00:00+00:00"})
    capsys.readouterr()
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--retime", "--runs", "MostPopular")) == 1
    assert "is from another training of this run" in capsys.readouterr().err
    assert read_record(paths["MostPopular"])["latency"] == retimed["latency"]

    # a run whose model was not kept is named, and its record keeps its times
    kept["Toy"].unlink()
    timed = read_record(paths["Toy"])
    capsys.readouterr()
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--retime")) == 1
    err = capsys.readouterr().err
    assert "toyexp/ml-1m/Toy/seed0: no kept model at" in err and "--keep-models" in err
    assert read_record(paths["Toy"]) == timed


@pytest.mark.parametrize("extra", [["--force"], ["--tune"], ["--keep-models"], ["--list"]])
def test_retime_refuses_what_would_train_or_do_something_else(tmp_path, toy_ml1m, capsys, extra):
    exp = write_experiment(tmp_path, BODY)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--retime", *extra)) == 2
    assert "--retime times the selected runs' kept models again" in capsys.readouterr().err


def test_retime_says_which_runs_have_no_record_yet(tmp_path, toy_ml1m, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exp = write_experiment(tmp_path, BODY)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--retime", "--runs", "MostPopular")) == 1
    assert "no finished record of this run: train it first" in capsys.readouterr().err
    assert not (tmp_path / "results" / "toyexp").exists()
