import pytest

from benchmarks import config as cfgmod
from benchmarks.config import ConfigError, merge, parse_override


def test_unknown_keys_are_errors_at_every_layer(tmp_path):
    base = cfgmod.defaults()
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'"):
        merge(base, {"train": {"lrr": 1}})
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        merge(base, {"bogus": 1})
    exp = tmp_path / "exp.yaml"
    exp.write_text("runs: {A: {model: {name: most_popular}}}\nconfig: {eval: {kss: [1]}}\n")
    name, loaded = cfgmod.load_experiment(str(exp))
    with pytest.raises(ConfigError, match="eval.kss"):
        cfgmod.resolve_run(name, loaded, "A", "ml-100k", 0)
    exp.write_text("runs: {A: {model: {name: most_popular}}}\nrunz: 1\n")
    with pytest.raises(ConfigError, match="unknown experiment key"):
        cfgmod.load_experiment(str(exp))


def test_unknown_model_and_model_params_are_errors():
    name, exp = cfgmod.load_experiment("table3_overall")
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        cfgmod.resolve_run(name, exp, "MostPopular", "ml-100k", 0, cli_overrides=[parse_override("model.name=nope")])
    with pytest.raises(ConfigError, match="model.width"):
        cfgmod.resolve_run(name, exp, "MostPopular", "ml-100k", 0, cli_overrides=[parse_override("model.width=3")])


def test_layering_order_defaults_preset_experiment_run_cli(tmp_path):
    exp = tmp_path / "layers.yaml"
    exp.write_text(
        "datasets: [ml-1m-partial]\n"
        "config: {train: {lr: 0.1, epochs: 7}, eval: {ks: [5, 10]}}\n"
        "per_dataset: {ml-1m-partial: {train: {weight_decay: 0.3}}}\n"
        "runs: {A: {train: {lr: 0.2}, model: {name: most_popular},\n"
        "            per_dataset: {ml-1m-partial: {train: {warmup_ratio: 0.5}}, ml-100k: {train: {warmup_ratio: 0.9}}}}}\n"
    )
    name, loaded = cfgmod.load_experiment(str(exp))
    spec = cfgmod.resolve_run(name, loaded, "A", "ml-1m-partial", 3,
                              cli_overrides=[parse_override("train.epochs=2")])
    cfg = spec.config
    assert cfg["data"]["source"] == "ml-1m" and cfg["data"]["name"] == "ml-1m-partial"  # preset
    assert cfg["train"]["lr"] == 0.2            # run beats experiment
    assert cfg["train"]["epochs"] == 2          # CLI beats experiment
    assert cfg["train"]["weight_decay"] == 0.3  # per-dataset layer
    assert cfg["train"]["warmup_ratio"] == 0.5  # the run's own per-dataset layer, this dataset only
    assert cfg["train"]["adam_eps"] == 1e-6     # default kept
    assert cfg["eval"]["ks"] == [5, 10] and cfg["seed"] == 3


def test_parse_override_reads_yaml_values():
    assert parse_override("train.lr=1e-3") == {"train": {"lr": 0.001}}
    assert parse_override("eval.mask_history=false") == {"eval": {"mask_history": False}}
    assert parse_override("eval.ks=[5,10]") == {"eval": {"ks": [5, 10]}}
    assert parse_override("data.source=sequence-file") == {"data": {"source": "sequence-file"}}
    with pytest.raises(ConfigError):
        parse_override("train.lr")


def test_bad_values_and_unknown_names():
    name, exp = cfgmod.load_experiment("table3_overall")
    with pytest.raises(ConfigError, match="eval.candidates"):
        cfgmod.resolve_run(name, exp, "MostPopular", "ml-100k", 0, cli_overrides=[parse_override("eval.candidates=some")])
    with pytest.raises(ConfigError, match="valid_metric"):
        cfgmod.resolve_run(name, exp, "MostPopular", "ml-100k", 0, cli_overrides=[parse_override("train.valid_metric=recall@50")])
    with pytest.raises(ConfigError, match="unknown dataset preset"):
        cfgmod.resolve_run(name, exp, "MostPopular", "ml-5m", 0)
    with pytest.raises(ConfigError, match="unknown experiment"):
        cfgmod.load_experiment("table99")
    with pytest.raises(ConfigError, match="unknown experiment set"):
        cfgmod.load_set("nope")


def _settings(layer: dict, path: tuple = ()) -> dict:
    """{dotted key: value} of what a config layer sets. Under `model:` a value is taken whole (a
    model parameter such as recbole_config is replaced, not merged, by a later layer)."""
    out = {}
    for key, value in (layer or {}).items():
        here = path + (key,)
        if isinstance(value, dict) and not (len(here) == 2 and here[0] == "model"):
            out.update(_settings(value, here))
        else:
            out[".".join(here)] = value
    return out


def _at(cfg: dict, dotted: str):
    for key in dotted.split("."):
        cfg = cfg[key]
    return cfg


def test_every_shipped_experiment_resolves_to_what_it_sets_over_the_defaults():
    """Every run of every shipped experiment, on its own datasets and on every dataset its
    per-dataset sections name (the sets run them there): each resolves, holds every key of the
    defaults and of its model's defaults, and carries each value its experiment sets."""
    from benchmarks.data import LOADERS
    from benchmarks.models import model_class, params_class

    defaults, presets = cfgmod.defaults(), cfgmod.dataset_presets()
    resolved = 0
    for name in cfgmod.list_experiments():
        exp_name, exp = cfgmod.load_experiment(name)
        assert exp_name == name and exp["runs"], name
        named = set(exp.get("per_dataset") or {})
        named |= {d for entry in exp["runs"].values() for d in ((entry or {}).get("per_dataset") or {})}
        assert set(exp["datasets"]) | named <= set(presets), (name, sorted(named - set(presets)))
        for run, entry in exp["runs"].items():
            entry = dict(entry or {})
            run_per_dataset = entry.pop("per_dataset", None) or {}
            for dataset in sorted(set(exp["datasets"]) | named):
                spec = cfgmod.resolve_run(exp_name, exp, run, dataset, 0)
                cfg = spec.config
                assert (spec.experiment, spec.run, spec.dataset, spec.seed, cfg["seed"]) == (name, run, dataset, 0, 0)
                assert set(cfg) == set(defaults)
                for section, keys in defaults.items():
                    if isinstance(keys, dict) and section != "model":
                        assert set(cfg[section]) == set(keys), (name, run, section)
                assert cfg["data"]["name"] == dataset and cfg["data"]["source"] in LOADERS
                model = cfg["model"]
                model_defaults = params_class(model_class(model["name"])).defaults()
                assert set(model) == {"name"} | set(model_defaults), (name, run)
                expected = _settings({"data": presets[dataset]})
                for layer in (exp.get("config"), (exp.get("per_dataset") or {}).get(dataset), entry,
                              run_per_dataset.get(dataset)):
                    expected.update(_settings(layer))
                for key, value in expected.items():
                    assert _at(cfg, key) == value, (name, run, dataset, key)
                for key, value in model_defaults.items():  # the rest: the model's defaults
                    if f"model.{key}" not in expected:
                        assert model[key] == value, (name, run, key)
                resolved += 1
    assert resolved >= 40


# the optimiser recipes of the official code (table1_2_4_5_generative.yaml cites where each is read),
# at the learning rate chosen on validation for MiniLM (1e-4; the file says why the published 1e-3
# and 5e-4 are not used)
PUBLISHED_RECIPES = {
    "p5": {"lr": 1.0e-4, "weight_decay": 0.01, "max_grad_norm": 1.0, "warmup_ratio": 0.05, "lr_schedule": "linear"},
    "lightlm": {"lr": 1.0e-4, "weight_decay": 0.01, "max_grad_norm": 1.0, "warmup_ratio": 0.05, "lr_schedule": "linear"},
    "pod": {"lr": 1.0e-4, "weight_decay": 0.01, "max_grad_norm": None, "warmup_ratio": 0.0, "lr_schedule": "constant"},
}


def test_every_generative_row_of_every_experiment_trains_with_its_published_recipe():
    """P5, POD and LightLM, their decoder-free variants (p5_encoder_only: POD's when it has prompt
    vectors, else P5's) on any backbone and dataset, in every experiment file: one recipe each, so
    a row added or edited in one file cannot drift from the others."""
    checked = 0
    for name in cfgmod.list_experiments():
        _, exp = cfgmod.load_experiment(name)
        named = set(exp["datasets"]) | set(exp.get("per_dataset") or {})  # the sets run them there too
        for run in exp["runs"]:
            for dataset in sorted(named):
                model = cfgmod.resolve_run(name, exp, run, dataset, 0).config
                family = model["model"]["name"]
                if family == "p5_encoder_only":
                    family = "pod" if model["model"].get("prompt_vectors") else "p5"
                if family not in PUBLISHED_RECIPES:
                    continue
                train = model["train"]
                assert {k: train[k] for k in PUBLISHED_RECIPES[family]} == PUBLISHED_RECIPES[family], (name, run, dataset)
                checked += 1
    assert checked >= 30  # table1_2_4_5_generative's 15 rows on its datasets, Figure 6's P5 and POD


@pytest.mark.parametrize("cold_run, table3_run", [("HLLM", "HLLM"), ("Lite-LLM4Rec", "Lite-LLM4Rec_sampling")])
def test_cold_start_rows_train_as_their_table3_rows_on_every_cold_start_dataset(cold_run, table3_run):
    """cold_start.yaml says its rows are trained "the same as the models' table3_overall rows" and
    repeats those settings by hand (a file cannot refer to another's rows): a change to one file
    must reach the other. Only the split (the held-out items) may differ; a table3 row's tuned
    settings (a study) are not part of either file and are not compared."""
    _, cold = cfgmod.load_experiment("cold_start")
    _, table3 = cfgmod.load_experiment("table3_overall")
    for dataset in cold["datasets"]:
        cold_cfg = cfgmod.resolve_run("cold_start", cold, cold_run, dataset, 0).config
        table3_cfg = cfgmod.resolve_run("table3_overall", table3, table3_run, dataset, 0).config
        assert cold_cfg["split"] != table3_cfg["split"]  # the hold-out: what the experiment adds
        differing = sorted(section for section in cold_cfg if section != "split"
                           and cold_cfg[section] != table3_cfg[section])
        assert differing == [], (dataset, cold_run, {s: (cold_cfg[s], table3_cfg[s]) for s in differing})
