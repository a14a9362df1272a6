"""How fast a run is, as its record says: training throughput and share of peak, inference settings
(precision, compile) timed and evaluated beside the published run, a failing setting recorded with
its error, and bf16 counted as native only on a CPU with bf16 instructions."""
import numpy as np
import pytest

from benchmarks.config import load_experiment, parse_override, resolve_run
from benchmarks.models import build_model
from benchmarks.planning import plan_runs
from benchmarks.runner import Runner
from benchmarks.split import leave_one_out
from benchmarks.training import Trainer
import tests.benchmarks.toy_models  # noqa: F401  (registers toy_next_item)
from tests.benchmarks.runner_experiment import _toy_config, toy_plan, write_experiment


def test_training_records_its_throughput_and_share_of_peak(tmp_path, toy_dataset):
    from torch.utils.flop_counter import FlopCounterMode

    name, exp = load_experiment(str(write_experiment(tmp_path)))
    cfg = resolve_run(name, exp, "Toy", "ml-1m", 0, cli_overrides=[parse_override("train.epochs=2")]).config
    model = build_model(cfg["model"], toy_dataset, __import__("torch").device("cpu"))
    split = leave_one_out(toy_dataset)
    batch = model.training_batches(split, 0, np.random.default_rng(0), int(cfg["train"]["batch_size"]))[0]
    with FlopCounterMode(display=False) as counter:
        model.loss(batch).backward()  # forward and backward of one step
    model.module.zero_grad()
    result = Trainer(cfg["train"], cfg["eval"], seed=0, progress=False).fit(model, split)
    work = result["throughput"]
    assert work["gflop_per_step"] * 1e9 == counter.get_total_flops() > 0
    steps = 2 * len(model.training_batches(split, 0, np.random.default_rng(0), int(cfg["train"]["batch_size"])))
    assert work["steps_per_second"] * result["seconds"] == pytest.approx(steps, rel=0.05)
    assert work["peak"]["dtype"] == "float32" and 0 < work["share_of_peak"] == pytest.approx(
        work["achieved_tflops"] / work["peak"]["tflops"])


def test_inference_settings_are_timed_and_evaluated_beside_the_published_run(tmp_path, toy_ml1m, monkeypatch):
    """latency.settings: each setting times the trained model again and evaluates it again; bf16
    autocast reaches the model's matrix multiplies, compile wraps its score (spied here: a real
    compile costs half a minute) and is undone afterwards."""
    import torch

    import benchmarks.measurements as measurements

    compiled = []
    monkeypatch.setattr(measurements.torch, "compile",
                        lambda fn, mode=None: compiled.append(mode) or (lambda *a, **k: fn(*a, **k)))
    exp = write_experiment(tmp_path, "datasets: [ml-1m]\nconfig: {train: {epochs: 2}, latency: {max_batches: 2, "
                                     "warmup_batches: 1, batch_size: 8, settings: [{precision: bf16}, "
                                     "{precision: fp32, compile: true}]}}\n"
                                     "runs:\n  Toy: {model: {name: toy_next_item, dim: 8}}\n")
    plan = toy_plan(tmp_path, toy_ml1m, exp)
    seen_dtypes = []
    original = tests.benchmarks.toy_models.ToyNextItem.score
    monkeypatch.setattr(tests.benchmarks.toy_models.ToyNextItem, "score",
                        lambda self, batch: seen_dtypes.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
                        or original(self, batch))
    record = Runner(tmp_path / "results", progress=False).run(plan.runs[0])
    settings = record["inference_settings"]
    assert [s["label"] for s in settings] == ["bf16 eager", "fp32 compiled"] and compiled == ["default"]
    assert torch.bfloat16 in seen_dtypes  # the bf16 setting reached the model
    for s in settings:
        assert s["latency"]["n_batches"] == 2 and set(s["metrics"]) == set(record["metrics"])
    assert settings[1]["metrics"] == pytest.approx(record["metrics"])  # fp32, the same model
    # the share of peak of a bf16 setting is against the bf16 peak, the published one's fp32
    assert record["latency"]["peak"]["dtype"] == record["latency"]["compute_dtype"] == "float32"
    assert settings[0]["latency"]["peak"]["dtype"] == settings[0]["latency"]["compute_dtype"] == "bfloat16"
    with pytest.raises(Exception, match="latency.settings"):
        plan_runs(set_name=None, experiments=[str(exp)], datasets=["ml-1m"], data_path=str(toy_ml1m),
                  overrides=[f"data.cache_dir={tmp_path / 'cache'}", "latency.settings=[{precision: fp16}]"])


def test_a_failing_inference_setting_is_recorded_with_its_error_and_the_run_keeps_its_record(
        tmp_path, toy_ml1m, monkeypatch):
    """torch.compile failing (no compiler, an unsupported operator) after hours of training must not
    cost the run: the setting is recorded with its error, the other settings and the published
    measurement stand, and the latency page names the failure instead of leaving it out."""
    import warnings as warnings_mod

    import benchmarks.measurements as measurements
    from benchmarks.reports.inference import inference_table
    from benchmarks.reports.records import Record

    def broken_compile(fn, mode=None):
        def call(*args, **kwargs):
            raise RuntimeError("InductorError: no working C++ compiler\nsecond line")
        return call

    monkeypatch.setattr(measurements.torch, "compile", broken_compile)
    exp = write_experiment(tmp_path, "datasets: [ml-1m]\nconfig: {train: {epochs: 1}, latency: {max_batches: 2, "
                                     "warmup_batches: 1, batch_size: 8, settings: [{precision: fp32, compile: true}, "
                                     "{precision: bf16}]}}\n"
                                     "runs:\n  Toy: {model: {name: toy_next_item, dim: 8}}\n")
    plan = toy_plan(tmp_path, toy_ml1m, exp)
    with warnings_mod.catch_warnings(record=True) as caught:
        warnings_mod.simplefilter("always")
        record = Runner(tmp_path / "results", progress=False).run(plan.runs[0])
    assert record["status"] == "ok" and record["metrics"]
    failed, bf16 = record["inference_settings"]
    assert failed == {"setting": {"precision": "fp32", "compile": True}, "label": "fp32 compiled",
                      "error": "RuntimeError: InductorError: no working C++ compiler"}
    assert bf16["label"] == "bf16 eager" and bf16["latency"]["n_batches"] == 2
    assert any("fp32 compiled failed" in str(w.message) for w in caught)
    table = inference_table({"Toy": [Record(record)]}, proposed={"Toy"})
    [row] = table.to_dict("records")
    assert row["settings that failed"] == "fp32 compiled (RuntimeError: InductorError: no working C++ compiler)"
    assert row["best setting"] in ("bf16 eager", "as published")
    # every setting failed: the row still shows, as published
    record["inference_settings"] = [failed]
    [row] = inference_table({"Toy": [Record(record)]}, proposed={"Toy"}).to_dict("records")
    assert row["best setting"] == "as published" and row["speed-up"] == "1.00x"


def test_inference_settings_under_cold_start_score_the_same_users_as_the_record(tmp_path, toy_ml1m):
    """With items held out, the record's metrics are those of the cold-start users; a setting's
    metrics must be over the same users (an fp32 setting then equals them), while the timer serves
    every evaluated user as the published measurement does."""
    exp = write_experiment(tmp_path, "datasets: [ml-1m]\nconfig: {split: {holdout_items: 0.2}, train: {epochs: 2}, "
                                     "latency: {max_batches: 2, warmup_batches: 1, batch_size: 8, "
                                     "settings: [{precision: fp32}]}}\n"
                                     "runs:\n  Toy: {model: {name: toy_next_item, dim: 8}}\n")
    plan = toy_plan(tmp_path, toy_ml1m, exp)
    record = Runner(tmp_path / "results", progress=False).run(plan.runs[0])
    assert 0 < record["cold_start"]["n_users"] < record["data"]["stats"]["users"]
    # the record's validation is the early-stopping one: every user, not the cold-start users only
    training = record["training"]
    best = next(e for e in training["history"] if e["epoch"] == training["best_epoch"])
    assert record["valid_metrics"] == pytest.approx(best["valid"])
    from benchmarks.records import read_per_user
    valid = read_per_user(Runner(tmp_path / "results").path(plan.runs[0]), "valid")
    assert len(valid["user_index"]) == record["data"]["stats"]["users"]
    setting = record["inference_settings"][0]
    assert setting["metrics"] == pytest.approx(record["metrics"])
    assert setting["latency"]["batch_size"] == record["latency"]["batch_size"] == 8


def test_bf16_counts_as_native_only_with_bf16_instructions(monkeypatch):
    # oneDNN takes bf16 on any AVX-512 CPU, but without AVX512-BF16 or AMX it converts to fp32 for
    # the arithmetic (a Lite-LLM4Rec step at half fp32's speed on an Intel Xeon): not native
    import benchmarks.precision as precision_mod

    torch = __import__("torch")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    avx512 = {"avx2": True, "avx512_f": True, "avx512_bw": True, "avx512_vl": True, "avx512_dq": True}
    assert not precision_mod.cpu_has_native_bf16(avx512)
    assert precision_mod.cpu_has_native_bf16({**avx512, "avx512_bf16": True})
    assert precision_mod.cpu_has_native_bf16({**avx512, "amx_bf16": True, "amx_tile": True})
    assert precision_mod.cpu_has_native_bf16({"architecture": "arm64", "bf16": True})
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert not precision_mod.cpu_has_native_bf16({**avx512, "amx_bf16": True})  # no oneDNN kernels: not used


def test_bf16_training_on_a_cpu_without_bf16_instructions_says_so(tmp_path, toy_dataset, monkeypatch):
    import warnings as warnings_mod
    import benchmarks.precision as precision_mod

    torch = __import__("torch")
    assert isinstance(precision_mod.cpu_has_native_bf16(), bool)  # the real check, before the patches
    split = leave_one_out(toy_dataset)
    cfg = _toy_config(tmp_path, "train.epochs=1", "train.precision=bf16")
    for native, expected in [(False, 1), (True, 0)]:
        monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda native=native: native)
        model = build_model(cfg["model"], toy_dataset, torch.device("cpu"))
        with warnings_mod.catch_warnings(record=True) as caught:
            warnings_mod.simplefilter("always")
            Trainer(cfg["train"], cfg["eval"], seed=0, progress=False).fit(model, split)
        said = [w for w in caught if "no bf16 instructions" in str(w.message)]
        assert len(said) == expected, (native, [str(w.message) for w in caught])
    # fp32 never warns, whatever the CPU
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: False)
    with warnings_mod.catch_warnings(record=True) as caught:
        warnings_mod.simplefilter("always")
        precision_mod.warn_if_bf16_is_emulated("fp32", "cpu")
    assert not caught
