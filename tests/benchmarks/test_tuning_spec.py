"""The tuning section and search spaces, checked strictly (every error names the file); the
default spaces of the model families (RecBole's own keys); the best settings of a finished
study as a config layer below the set and the command line, which keeps the run its
experiment's main record."""
import pytest

from benchmarks.config import ConfigError, load_experiment
from benchmarks.planning import plan_runs
from benchmarks.runner import Runner
from benchmarks.tuning.spec import parse_space, space_layer
from benchmarks.tuning.studies import StudyState
from benchmarks.variants import variant_tag

BASE = """description: toy
datasets: [ml-1m]
runs:
  MostPopular: {model: {name: most_popular}}
  Toy:
    model: {name: toy_next_item, dim: 8}
"""
TUNING = "tuning: {trials: 4, runs: [Toy]}\n"


def load(tmp_path, text):
    path = tmp_path / "tuned.yaml"
    path.write_text(text)
    return load_experiment(str(path))


@pytest.mark.parametrize("extra, message", [
    ("tuning: {trials: 4, runs: [Toy], budget: 3}\n", r"unknown tuning key\(s\) \['budget'\]"),
    ("tuning: {trials: 0, runs: [Toy]}\n", "tuning.trials must be a whole number >= 1"),
    ("tuning: {trials: 4, runs: [Nope]}\n", r"tuning.runs names \['Nope'\]"),
    ("tuning: {trials: 4}\n", "tuning.runs must be a non-empty list"),
    ("tuning: {trials: 4, runs: [Toy], metric: mrr@10}\n", "tuning.metric must be recall@K or ndcg@K"),
    ("tuning: {trials: 4, runs: [Toy], sampler: {name: grid}}\n", "tuning.sampler must be a mapping with 'name' one of"),
    ("tuning: {trials: 4, runs: [Toy], sampler: {name: random, n_startup_trials: 3}}\n",
     r"tuning.sampler 'random': unknown key\(s\) \['n_startup_trials'\]"),
    ("tuning: {trials: 4, runs: [Toy], pruner: {name: median, n_warmup_steps: -1}}\n",
     "tuning.pruner.n_warmup_steps must be a whole number >= 0"),
    ("    space: {train.lr: {type: float, low: 0.1, high: 0.01}}\n" + TUNING, "a float needs numbers low < high"),
    ("    space: {train.lr: {type: uniform, low: 0.01, high: 0.1}}\n" + TUNING, "'type' must be one of"),
    ("    space: {train.lr: {type: float, low: 0.0, high: 0.1, log: true}}\n" + TUNING, "a log scale needs low > 0"),
    ("    space: {train.lr: {type: float, low: 0.01, high: 0.1, step: 0.01}}\n" + TUNING, r"unknown key\(s\) \['step'\]"),
    ("    space: {model.dim: {type: categorical, choices: []}}\n" + TUNING, "'choices' must be a non-empty list"),
    ("    space: {model.dim: {type: categorical, choices: [4, 4]}}\n" + TUNING, "'choices' repeats a value"),
    ("    space: {model.dim: {type: int, low: 4, high: 8.5}}\n" + TUNING, "a int needs whole numbers"),
    ("    space: {x.1: {type: int, low: 4, high: 8}}\n" + TUNING, "must give every list item from 0 up"),
    ("    space: {train.lr: {type: float, low: 0.01, high: 0.1}}\n", r"give a 'space' but the experiment has no 'tuning'"),
    ("    space: {train.lr: {type: float, low: 0.01, high: 0.1}}\ntuning: {trials: 2, runs: [MostPopular]}\n",
     r"\['Toy'\] give a 'space' but are not in tuning.runs"),
])
def test_a_bad_tuning_section_or_space_is_an_error_naming_the_file(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as err:
        load(tmp_path, BASE + extra)
    assert "tuned.yaml" in str(err.value)


def test_space_keys_must_exist_in_the_runs_config_when_planned(tmp_path):
    import tests.benchmarks.toy_models  # noqa: F401

    for space, message in (("{train.lrr: {type: float, low: 0.01, high: 0.1}}", "unknown config key 'train.lrr'"),
                           ("{model.width: {type: int, low: 4, high: 8}}", "unknown key.*model.width")):
        path = tmp_path / "tuned.yaml"
        path.write_text(BASE + f"    space: {space}\n" + TUNING)
        with pytest.raises(ConfigError, match=message) as err:
            plan_runs(set_name=None, experiments=[str(path)], datasets=["ml-1m"])
        assert "tuned.yaml" in str(err.value)
    path.write_text(BASE + "    space: {model.dim: {type: int, low: 4, high: 8}}\n"
                    "tuning: {trials: 4, runs: [Toy], metric: ndcg@50}\n")
    with pytest.raises(ConfigError, match="tuning.metric 'ndcg@50' is not evaluated"):
        plan_runs(set_name=None, experiments=[str(path)], datasets=["ml-1m"])
    path.write_text(BASE + "tuning: {trials: 4, runs: [MostPopular]}\n")  # no space, and the model has none
    with pytest.raises(ConfigError, match="has no default search space: give the run a 'space:'"):
        plan_runs(set_name=None, experiments=[str(path)], datasets=["ml-1m"])


def test_a_tuned_setting_keeps_the_rows_other_settings_of_a_free_form_mapping(tmp_path):
    import tests.benchmarks.toy_models  # noqa: F401
    from benchmarks.config import resolve_run

    _, exp = load(tmp_path, BASE.replace("dim: 8}", "dim: 8}\n    train: {lr: 0.2, epochs: 4}"))
    cfg = resolve_run("tuned", exp, "Toy", "ml-1m", 0, tuned={"train": {"lr": 0.01}}).config
    assert cfg["train"]["lr"] == 0.01 and cfg["train"]["epochs"] == 4
    exp["runs"]["Toy"] = {"model": {"name": "recbole", "recbole_model": "SASRec", "recbole_config": {"n_layers": 1}}}
    cfg = resolve_run("tuned", exp, "Toy", "ml-1m", 0,
                      tuned={"model": {"recbole_config": {"learning_rate": 0.01}}}).config
    assert cfg["model"]["recbole_config"] == {"n_layers": 1, "learning_rate": 0.01}


def test_space_layer_sets_nested_keys_and_lists_item_by_item():
    assert space_layer({"train.lr": 0.01, "model.recbole_config.dropout_probs.1": 0.4,
                        "model.recbole_config.dropout_probs.0": 0.2, "model.recbole_config.hidden_size": 64}) == \
        {"train": {"lr": 0.01}, "model": {"recbole_config": {"dropout_probs": [0.2, 0.4], "hidden_size": 64}}}
    [param] = parse_space("f", {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
    assert param.describe() == "float in [0.0001, 0.01], log scale"


def test_default_spaces_use_recbole_keys_of_each_model():
    from baselines.recbole.settings import SUPPORTED_MODELS, default_search_space, model_yaml_keys

    for name in SUPPORTED_MODELS:
        space = parse_space(name, default_search_space(name))
        keys = {p.key.split(".")[2] for p in space}
        assert "learning_rate" in keys and len(space) <= 4  # small: a budget of 8 trials
        assert keys - {"learning_rate"} <= set(model_yaml_keys(name)), name
    assert {p.key for p in parse_space("NARM", default_search_space("NARM"))} >= {
        "model.recbole_config.dropout_probs.0", "model.recbole_config.dropout_probs.1"}


def test_table3_tunes_the_rows_that_converge_in_minutes_on_cpu():
    _, exp = load_experiment("table3_overall")
    tuning = exp["tuning"]
    assert tuning.trials == 8 and tuning.sampler == {"name": "tpe", "seed": 0, "n_startup_trials": 4}
    assert tuning.pruner["name"] == "median" and tuning.metric == "recall@10"
    assert tuning.runs == ("GRU4Rec", "SASRec", "NARM", "STAMP", "Lite-LLM4Rec_sampling")
    assert "BERT4Rec" in tuning.note and "E4SRec" in tuning.note


BEST = {"SASRec": {"model.recbole_config.learning_rate": 0.003, "model.recbole_config.hidden_size": 128,
                   "model.recbole_config.hidden_dropout_prob": 0.1, "model.recbole_config.attn_dropout_prob": 0.2},
        "NARM": {"model.recbole_config.learning_rate": 0.002, "model.recbole_config.hidden_size": 64,
                 "model.recbole_config.dropout_probs.0": 0.1, "model.recbole_config.dropout_probs.1": 0.3}}


class FinishedStudies:
    """A lookup whose every study is finished with the settings of BEST."""

    def state(self, ref):
        summary = {"study": ref.name, "finished": True, "counted": list(range(8)), "budget": {"trials": 8},
                   "storage": "sqlite:///results/tuning/studies.db",
                   "best": {"trial": 5, "value": 0.25, "params": BEST[ref.run]}}
        return StudyState(ref, summary, 8)


def test_a_run_with_its_studys_best_settings_is_the_main_record(tmp_path):
    plain = plan_runs(set_name=None, experiments=["table3_overall"], datasets=["ml-100k"], runs=["SASRec", "NARM"])
    tuned = plan_runs(set_name=None, experiments=["table3_overall"], datasets=["ml-100k"], runs=["SASRec", "NARM"],
                      studies=FinishedStudies())
    runner = Runner(tmp_path / "results", progress=False)
    for before, spec in zip(plain.runs, tuned.runs):
        assert spec.differs == {} and variant_tag(spec.differs) is None and runner.placement(spec)[0] is None
        assert spec.tuning["trials"] == 8 and spec.tuning["best_params"] == BEST[spec.run]
        assert before.tuning is None and "learning_rate" not in before.config["model"]["recbole_config"]
    sasrec, narm = (s.config["model"]["recbole_config"] for s in tuned.runs)
    assert sasrec == {"learning_rate": 0.003, "hidden_size": 128, "hidden_dropout_prob": 0.1, "attn_dropout_prob": 0.2}
    assert narm["dropout_probs"] == [0.1, 0.3]
    # above the tuned settings: the command line (a variant, differing in what it sets only)
    [spec] = plan_runs(set_name=None, experiments=["table3_overall"], datasets=["ml-100k"], runs=["SASRec"],
                       overrides=["train.patience=3"], studies=FinishedStudies()).runs
    assert spec.config["model"]["recbole_config"] == sasrec and spec.differs == {"train.patience": [10, 3]}
    # and a set's budget: the set's variant, as for any row
    [gpu] = [s for s in plan_runs(set_name="gpu", datasets=["ml-100k"], runs=["SASRec"], seeds=[0],
                                  studies=FinishedStudies()).runs if s.experiment == "table3_overall"]
    assert runner.placement(gpu)[0] == "gpu" and "model.recbole_config.learning_rate" not in gpu.set_keys


def test_a_neutral_key_added_after_a_study_leaves_its_digest_as_it_was():
    """eval.valid_max_users came after the STAMP study of ml-100k was stored: at its neutral value
    the digest is the one the study was stored under (the committed summary's), so the tuned row
    stays tuned; another value is another study."""
    import copy
    from pathlib import Path

    from benchmarks.tuning.studies import NEUTRAL_SINCE_STUDIES, study_ref

    _, exp = load_experiment("table3_overall")
    [spec] = plan_runs(set_name=None, experiments=["table3_overall"], datasets=["ml-100k"], runs=["STAMP"]).runs
    assert spec.config["eval"]["valid_max_users"] is None
    ref = study_ref(spec, exp["tuning"])
    without = copy.deepcopy(spec)
    del without.config["eval"]["valid_max_users"]
    assert study_ref(without, exp["tuning"]).digest == ref.digest
    other = copy.deepcopy(spec)
    other.config["eval"]["valid_max_users"] = 256
    assert study_ref(other, exp["tuning"]).digest != ref.digest
    assert NEUTRAL_SINCE_STUDIES == {"eval.valid_max_users": None, "model.stage2_lr": None}
    repo = Path(__file__).resolve().parents[2]
    assert (repo / "results" / "tuning" / "table3_overall" / "ml-100k" / f"STAMP__{ref.digest}.json").is_file()
