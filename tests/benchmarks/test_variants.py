"""Records keyed by what made them: a run whose config differs from its experiment file's is a
variant beside the main record (never over it), named by --tag, its set or a short hash, listed
as such, kept out of the tables unless --with-variants; failure records under --keep-going; a
text-reading model refusing items without text."""
import json
import re

import pytest

import run_all
from benchmarks import config as cfgmod
from benchmarks.config import ConfigError
from benchmarks.models import Recommender, register
from benchmarks.planning import plan_runs
from benchmarks.runner import Runner
from benchmarks.variants import check_tag, describe, parse_record_name, variant_tag
from tests.conftest import write_ml1m

from .test_runner import cli, written

TOY = ("description: toy experiment\npaper_table: null\ndatasets: [ml-1m]\n"
       "config: {train: {epochs: 3, lr: 0.05}, eval: {num_negatives: 20},"
       " latency: {max_batches: 1, warmup_batches: 0, batch_size: 16}}\n"
       "runs:\n  MostPopular: {model: {name: most_popular}}\n  Toy: {model: {name: toy_next_item, dim: 8}}\n")


def toy_experiment(tmp_path, body=TOY, name="toyexp"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(body)
    return path


def test_the_tag_names_what_made_the_variant():
    epochs = {"train.epochs": [300, 2]}
    assert variant_tag({}) is None  # the experiment's own config: the main record
    assert variant_tag({}, tag="mine") == "mine"  # --tag always names a variant
    assert re.fullmatch(r"h[0-9a-f]{8}", variant_tag(epochs))
    assert variant_tag(epochs) == variant_tag({"train.epochs": [5, 2]})  # the same -o, the same name
    assert variant_tag(epochs) != variant_tag({"train.epochs": [300, 3]})
    budget = {"train.epochs": [20, 300], "device": ["cpu", "auto"]}
    assert variant_tag(budget, set_name="gpu", set_keys=("train.epochs", "device")) == "gpu"
    more = {**budget, "eval.ks": [[10, 20], [5]]}
    assert re.fullmatch(r"gpu-[0-9a-f]{8}", variant_tag(more, set_name="gpu", set_keys=("train.epochs", "device")))
    assert parse_record_name("SASRec__seed0__gpu.json") == ("SASRec", 0, "gpu")
    assert parse_record_name("P5_w_o_d__seed2.json") == ("P5_w_o_d", 2, None)
    assert parse_record_name("SASRec__seed0.per_user.safetensors") is None
    for bad in ("", "a b", "a/b", "_x", "x" * 41, "a.b"):
        with pytest.raises(ConfigError, match="--tag"):
            check_tag(bad)
    assert describe({"train.epochs": [300, 2], "split.holdout_seed": [0, "(absent)"]}) == \
        "train.epochs 300 -> 2; made before split.holdout_seed existed"


def test_a_sets_config_makes_its_runs_the_sets_variants(tmp_path, monkeypatch):
    sets = tmp_path / "sets.yaml"
    sets.write_text("budget:\n  experiments: [table3_overall]\n  datasets: [ml-100k]\n  runs: [MostPopular]\n"
                    "  config: {train: {epochs: 7}}\n"
                    "elsewhere:\n  experiments: [table3_overall]\n  datasets: [ml-100k]\n  runs: [MostPopular]\n"
                    "  config: {device: auto}\n"
                    "plain:\n  experiments: [table3_overall]\n  datasets: [ml-100k]\n  runs: [MostPopular]\n")
    monkeypatch.setattr(cfgmod, "SETS_FILE", sets)
    runner = Runner(tmp_path / "results", progress=False)

    def placed(**kwargs):
        spec = plan_runs(**kwargs).runs[0]
        return runner.placement(spec)[0], runner.path(spec).name

    assert placed(set_name="plain") == (None, "MostPopular__seed0.json")
    assert placed(set_name="budget") == ("budget", "MostPopular__seed0__budget.json")
    # a set that moves its runs to another device: its variants too (GPU records never replace CPU ones) ...
    assert placed(set_name="elsewhere")[0] == "elsewhere"
    # ... but --device alone is where a run ran, not another run: the main record
    assert placed(set_name="plain", overrides=["device=auto"])[0] is None
    tag, name = placed(set_name="budget", overrides=["eval.ks=[5,10]", "train.valid_metric=recall@5"])
    assert re.fullmatch(r"budget-[0-9a-f]{8}", tag) and name == f"MostPopular__seed0__{tag}.json"
    assert placed(set_name="budget", tag="mine") == ("mine", "MostPopular__seed0__mine.json")
    # the cache's folder and the missing-text guard are no part of what a run is
    assert placed(set_name="plain", overrides=["data.cache_dir=/elsewhere", "data.allow_missing_text=true"])[0] is None


def test_overrides_write_a_variant_that_never_replaces_the_main_record(tmp_path, toy_ml1m, capsys):
    import tests.benchmarks.toy_models  # noqa: F401  (registers toy_next_item)

    exp = toy_experiment(tmp_path)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp)) == 0
    folder = tmp_path / "results" / "toyexp" / "ml-1m"
    main = {p.name: p.read_bytes() for p in folder.iterdir()}
    stamps = written(folder)
    over = cli(tmp_path, toy_ml1m, exp, "--runs", "Toy", "-o", "train.epochs=1")
    assert run_all.main(over) == 0
    variants = sorted(p.name for p in folder.glob("Toy__seed0__h*.json"))
    assert len(variants) == 1 and variants[0].startswith("Toy__seed0__h")
    tag = parse_record_name(variants[0])[2]
    assert all(folder.joinpath(name).read_bytes() == content for name, content in main.items())
    assert {p: stamps[p] for p in stamps} == {p: written(folder)[p] for p in stamps}  # not even rewritten
    record = json.loads((folder / variants[0]).read_text())
    assert record["variant"] == {"tag": tag, "differs": {"train.epochs": [3, 1]}}
    assert record["training"]["epochs"] == 1
    # --list names it as a variant and what differs; the same overrides again: done, not re-run
    capsys.readouterr()
    assert run_all.main(over + ["--list"]) == 0
    out = capsys.readouterr().out
    assert f"toyexp/ml-1m/Toy/seed0 [variant {tag}]" in out and out.splitlines()[0].endswith("done")
    assert f"variant {tag}: differs from the experiment file in train.epochs 3 -> 1" in out
    # the tables: the main record's row; the variant apart, with what differs, never starred
    page = (tmp_path / "reports" / "toyexp.md").read_text()
    main_table, variant_part = page.split("Variant records (configs that differ from the experiment file)")
    main_toy = json.loads((folder / "Toy__seed0.json").read_text())["metrics"]["recall@10"]
    assert re.search(rf"\| Toy +\| {main_toy:.4f}", main_table)
    assert re.search(rf"\| Toy +\| {tag} +\| {record['metrics']['recall@10']:.4f}", variant_part)
    assert "train.epochs 3 -> 1" in variant_part and "*" not in variant_part.split("Records:")[0]
    # --with-variants: the variant stands in for the row, marked in the `variant` column
    assert run_all.main(["--report-only", "--results-dir", str(tmp_path / "results"), "--reports-dir",
                         str(tmp_path / "reports"), "--with-variants", tag]) == 0
    page = (tmp_path / "reports" / "toyexp.md").read_text()
    assert re.search(rf"\| Toy +\| {record['metrics']['recall@10']:.4f} .*\| {tag} +\|", page)
    assert "standing in for the experiment's" in page and "Variant records" not in page


def test_files_that_hash_otherwise_under_a_preset_make_a_variant(tmp_path, toy_ml1m):
    exp = toy_experiment(tmp_path)
    other = write_ml1m(tmp_path / "other-ml1m", seed=5)  # other ratings, read as the same preset

    def spec(folder):
        return plan_runs(set_name=None, experiments=[str(exp)], datasets=["ml-1m"], runs=["MostPopular"],
                         overrides=[f"data.cache_dir={tmp_path / 'cache'}"], data_path=str(folder)).runs[0]

    results = tmp_path / "results"
    first = Runner(results, progress=False)
    first.run(spec(toy_ml1m))  # no preset folder here: the first files read define the dataset
    assert (results / "toyexp" / "ml-1m" / "MostPopular__seed0.json").is_file()
    runner = Runner(results, progress=False)
    tag, differs = runner.placement(spec(other))
    assert tag and set(differs) == {"data.source_hash"}
    runner.run(spec(other))
    assert (results / "toyexp" / "ml-1m" / f"MostPopular__seed0__{tag}.json").is_file()
    assert json.loads((results / "toyexp" / "ml-1m" / "MostPopular__seed0.json").read_text())["data"]["source_hash"] \
        != json.loads((results / "toyexp" / "ml-1m" / f"MostPopular__seed0__{tag}.json").read_text())["data"]["source_hash"]
    # the same files in another folder are the same dataset: the main record, done
    import shutil
    copy = shutil.copytree(toy_ml1m, tmp_path / "copy")
    assert Runner(results, progress=False).placement(spec(copy))[0] is None
    assert Runner(results, progress=False).is_done(spec(copy))


@register("fails_when_told")
class FailsWhenTold(Recommender):
    failing = True

    def fit(self, split, trainer):
        if FailsWhenTold.failing:
            raise RuntimeError("the toy model fell over")
        return {"epochs": 0}

    def score(self, batch):
        import torch
        return torch.zeros(len(batch), self.n_items + 1)


def test_keep_going_records_each_failure_builds_the_reports_and_exits_1(tmp_path, toy_ml1m, capsys, monkeypatch):
    exp = toy_experiment(tmp_path, TOY + "  Fragile: {model: {name: fails_when_told}}\n")
    monkeypatch.setattr(FailsWhenTold, "failing", True)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--runs", "MostPopular,Fragile", "--keep-going")) == 1
    err = capsys.readouterr().err
    assert "1 run(s) failed" in err and "toyexp/ml-1m/Fragile/seed0: RuntimeError: the toy model fell over" in err
    path = tmp_path / "results" / "toyexp" / "ml-1m" / "Fragile__seed0.json"
    failure = json.loads(path.read_text())
    assert failure["status"] == "failed" and failure["error"] == "RuntimeError: the toy model fell over"
    assert "Traceback" in failure["traceback"] and "fell over" in failure["traceback"]
    assert failure["data"]["stats"]["users"] == 60  # it got as far as its data
    assert (tmp_path / "results" / "toyexp" / "ml-1m" / "MostPopular__seed0.json").is_file()  # the others ran
    page = (tmp_path / "reports" / "toyexp.md").read_text()  # the reports were built
    assert re.search(r"\| Fragile +\| failed: RuntimeError: the toy model fell over", page)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--runs", "Fragile", "--list")) == 0
    assert "to retry (failed: RuntimeError: the toy model fell over)" in capsys.readouterr().out
    monkeypatch.setattr(FailsWhenTold, "failing", False)  # retried on the next call, and it runs
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--runs", "Fragile", "--keep-going")) == 0
    finished = path.read_bytes()
    assert json.loads(finished)["status"] == "ok"
    # a failure never replaces a finished record (here: --force redoing it)
    monkeypatch.setattr(FailsWhenTold, "failing", True)
    assert run_all.main(cli(tmp_path, toy_ml1m, exp, "--runs", "Fragile", "--keep-going", "--force")) == 1
    assert path.read_bytes() == finished and "its finished record was kept" in capsys.readouterr().err
    # without --keep-going a failure stops the call (no report): the traceback is the bug's
    with pytest.raises(RuntimeError, match="fell over"):
        run_all.main(cli(tmp_path, toy_ml1m, exp, "--runs", "Fragile", "--force"))


@register("reads_titles")
class ReadsTitles(Recommender):
    @classmethod
    def reads_item_text(cls, params):
        return True

    def fit(self, split, trainer):
        return {"epochs": 0}

    def score(self, batch):
        import torch
        return torch.zeros(len(batch), self.n_items + 1)


def test_a_text_reading_model_refuses_items_without_text(tmp_path, capsys):
    folder = write_ml1m(tmp_path / "untitled")
    (folder / "movies.dat").write_text("1::Movie 1 (1951)::Drama\n", encoding="latin-1")  # one title of 80
    exp = toy_experiment(tmp_path, TOY + "  Reader: {model: {name: reads_titles}}\n")
    assert run_all.main(cli(tmp_path, folder, exp, "--runs", "Reader")) == 2
    err = capsys.readouterr().err
    assert "have no text of their own" in err and "'reads_titles' reads item text" in err
    assert re.search(r"(79|[5-7]\d) of the \d+ items", err) and "data.allow_missing_text=true" in err
    assert "Traceback" not in err
    assert run_all.main(cli(tmp_path, folder, exp, "--runs", "Reader,MostPopular")) == 2  # MostPopular reads none,
    assert run_all.main(cli(tmp_path, folder, exp, "--runs", "MostPopular")) == 0          # and runs on its own
    assert run_all.main(cli(tmp_path, folder, exp, "--runs", "Reader", "-o", "data.allow_missing_text=true")) == 0
    # the setting allows, it does not change the run: its record is the main one
    assert (tmp_path / "results" / "toyexp" / "ml-1m" / "Reader__seed0.json").is_file()


def test_ml1m_without_movies_dat_is_refused(tmp_path, capsys):
    folder = write_ml1m(tmp_path / "no-movies")
    (folder / "movies.dat").unlink()
    assert run_all.main(cli(tmp_path, folder, toy_experiment(tmp_path), "--runs", "MostPopular")) == 2
    err = capsys.readouterr().err
    assert "movies.dat: file not found" in err and "Traceback" not in err
