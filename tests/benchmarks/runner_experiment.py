"""The toy experiment the runner tests plan and run (test_runner*.py): MostPopular, the toy model
and a run that always skips, written under a test's tmp_path and planned on the toy ml-1m files;
and the toy run's resolved config."""
from benchmarks.config import load_experiment, parse_override, resolve_run
from benchmarks.models import Recommender, register
from benchmarks.planning import plan_runs
from benchmarks.runner import SkipRun
import tests.benchmarks.toy_models  # noqa: F401  (registers toy_next_item)


@register("always_skips")
class AlwaysSkips(Recommender):
    def fit(self, split, trainer):
        raise SkipRun("weights for 'imaginary-llm' not found in /nowhere")


def toy_plan(tmp_path, toy_ml1m, exp):
    """The experiment file `exp` planned on the toy ML-1m files, its data cache under tmp_path."""
    return plan_runs(set_name=None, experiments=[str(exp)], datasets=["ml-1m"],
                     overrides=[f"data.cache_dir={tmp_path / 'cache'}"], data_path=str(toy_ml1m))


def write_experiment(tmp_path, body=None):
    path = tmp_path / "toyexp.yaml"
    path.write_text(body or (
        "description: toy experiment\n"
        "paper_table: table3_overall\n"
        "datasets: [ml-1m]\n"
        "config: {train: {epochs: 8, patience: 3, lr: 0.05}, eval: {num_negatives: 20}, latency: {max_batches: 2, warmup_batches: 1, batch_size: 8}}\n"
        "runs:\n"
        "  MostPopular: {model: {name: most_popular}}\n"
        "  Toy: {model: {name: toy_next_item, dim: 8}}\n"
        "  Imaginary: {model: {name: always_skips}}\n"
    ))
    return path


def _toy_config(tmp_path, *overrides):
    name, exp = load_experiment(str(write_experiment(tmp_path)))
    return resolve_run(name, exp, "Toy", "ml-1m", 0, cli_overrides=[parse_override(o) for o in overrides]).config
