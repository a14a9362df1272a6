import json
import time

import numpy as np
import pytest
import torch

from benchmarks import latency
from benchmarks.latency import CPU_FEATURES, device_description, measure_latency, section

ENCODE_S = 0.004
SCORE_S = 0.002
WARMUP_S = 0.05
PREPARE_S = 0.03


class SleepyScores:
    """A 'scores' model whose inference time is known: encode + score sleeps per batch."""

    output = "scores"

    def __init__(self, n_items=50, slow_calls=0, prepare_sleep=0.0):
        self.n_items = n_items
        self.device = torch.device("cpu")
        self.module = torch.nn.Linear(2, 2).to(torch.float64)
        self.calls = 0
        self.slow_calls = slow_calls
        self.prepare_sleep = prepare_sleep

    def prepare(self, histories):
        time.sleep(self.prepare_sleep)
        return len(histories)

    def score(self, batch):
        self.calls += 1
        if self.calls <= self.slow_calls:  # a slow first call, like CUDA / JIT warm-up
            time.sleep(WARMUP_S)
        with section("encode"):
            time.sleep(ENCODE_S)
        with section("score"):
            time.sleep(SCORE_S)
            return torch.rand(batch, self.n_items + 1)

    def input_length(self, histories):
        return np.array([len(h) for h in histories], dtype=np.float64)


def histories(n, length=3):
    return [np.arange(1, length + 1, dtype=np.int64) + i % 5 for i in range(n)]


def test_sections_warmup_other_and_json():
    model = SleepyScores(slow_calls=3)
    res = measure_latency(model, histories(40), batch_size=8, top_k=5, warmup_batches=3)
    json.dumps(res)
    assert res["n_batches"] == 5 and model.calls == 8  # 3 warm-up + every full batch once
    assert res["batch_size"] == 8 and res["warmup_batches"] == 3 and res["top_k"] == 5
    s = res["sections_ms_median"]
    assert set(s) == {"encode", "score", "other"}
    assert ENCODE_S * 1000 <= s["encode"] < ENCODE_S * 1000 + 6
    assert SCORE_S * 1000 <= s["score"] < SCORE_S * 1000 + 6
    assert 0 <= s["other"] < 6
    # The slow warm-up calls do not reach the median.
    total = (ENCODE_S + SCORE_S) * 1000
    assert total <= res["ms_per_batch_median"] < total + 10
    assert res["ms_per_batch_median"] <= res["ms_per_batch_p90"]
    assert res["ms_per_batch_mean"] < WARMUP_S * 1000
    assert res["device"] == "cpu" and res["device_name"]
    assert res["torch_threads"] == torch.get_num_threads()
    assert res["dtype"] == "float64"
    assert res["input_length_mean"] == 3.0 and res["mask_history"] is True


def test_prepare_is_not_timed():
    model = SleepyScores(prepare_sleep=PREPARE_S)
    res = measure_latency(model, histories(12), batch_size=4, warmup_batches=1)
    # timed: encode + score (6 ms of sleep); with prepare it would be 36 ms. The bound sits half
    # way, as a machine under load oversleeps (16.2 ms seen with the tests niced behind a training)
    assert res["ms_per_batch_median"] < (ENCODE_S + SCORE_S + PREPARE_S / 2) * 1000 < (ENCODE_S + SCORE_S + PREPARE_S) * 1000


def test_batches_partial_and_cycling():
    model = SleepyScores()
    # 10 users in batches of 4: the partial batch of 2 is dropped.
    # count_flops off: with no warm-up batch, counting the work would take one more (untimed) call
    res = measure_latency(model, histories(10), batch_size=4, warmup_batches=0, count_flops=False)
    assert res["n_batches"] == 2 and model.calls == 2
    # Fewer users than one batch: the only batch is timed, at its real size.
    res = measure_latency(SleepyScores(), histories(3), batch_size=8, warmup_batches=1)
    assert res["n_batches"] == 1 and res["batch_size"] == 3
    # Warm-up plus measured beyond the data: batches are reused.
    model = SleepyScores()
    res = measure_latency(model, histories(8), batch_size=4, warmup_batches=2, max_batches=5)
    assert res["n_batches"] == 5 and model.calls == 7


def test_mask_history_excludes_history_from_topk():
    class Constant(SleepyScores):
        def score(self, batch):
            # Items 1..3 score highest; they are every user's history below.
            s = torch.zeros(batch, self.n_items + 1)
            s[:, 0] = 100.0
            s[:, 1:4] = 10.0
            return s

    seen = []
    original = torch.topk

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out.indices + 1)
        return out

    hist = [np.array([1, 2, 3])] * 4
    try:
        torch.topk = spy
        measure_latency(Constant(), hist, batch_size=4, top_k=3, warmup_batches=0)
        masked = seen[-1]
        measure_latency(Constant(), hist, batch_size=4, top_k=3, warmup_batches=0, mask_history=False)
        unmasked = seen[-1]
    finally:
        torch.topk = original
    assert not set(masked.flatten().tolist()) & {0, 1, 2, 3}
    assert set(unmasked.flatten().tolist()) == {1, 2, 3}


def test_section_outside_a_timer_is_a_no_op():
    assert latency._ACTIVE.get() is None
    with section("anything") as s:
        x = 1
    assert x == 1 and s.timer is None
    measure_latency(SleepyScores(), histories(4), batch_size=4, warmup_batches=0)
    assert latency._ACTIVE.get() is None  # the timer does not leak out of measure_latency
    # Cheap enough to leave in a model's hot path.
    start = time.perf_counter()
    for _ in range(10000):
        with section("x"):
            pass
    assert (time.perf_counter() - start) / 10000 < 20e-6


def test_nested_sections_are_not_double_counted():
    class Nested(SleepyScores):
        def score(self, batch):
            with section("outer"):
                time.sleep(ENCODE_S)
                with section("inner"):
                    time.sleep(SCORE_S)
            return torch.rand(batch, self.n_items + 1)

    res = measure_latency(Nested(), histories(8), batch_size=4, warmup_batches=0)
    s = res["sections_ms_median"]
    assert s["outer"] >= s["inner"] >= SCORE_S * 1000
    assert 0 <= s["other"] < 6


def test_topk_model_and_no_sections():
    class Topk:
        output = "topk"
        n_items = 30
        device = torch.device("cpu")
        calls = []

        def prepare(self, histories):
            return len(histories)

        def recommend(self, batch, k):
            self.calls.append(k)
            time.sleep(SCORE_S)
            return torch.arange(1, k + 1).repeat(batch, 1)

        def input_length(self, histories):
            return np.full(len(histories), 7.0)

    model = Topk()
    res = measure_latency(model, histories(8), batch_size=4, top_k=6, warmup_batches=1)
    json.dumps(res)
    assert model.calls == [6, 6, 6]
    assert res["sections_ms_median"] == {}
    assert res["dtype"] == "n/a" and res["input_length_mean"] == 7.0
    assert SCORE_S * 1000 <= res["ms_per_batch_median"] < SCORE_S * 1000 + 10


def test_device_description_cpu():
    d = device_description(torch.device("cpu"))
    assert d["device"] == "cpu" and isinstance(d["device_name"], str) and d["device_name"]
    assert d["torch_threads"] == torch.get_num_threads()
    # which bf16 and vector instructions the CPU has: a latency or a training time depends on them
    caps = torch.cpu.get_capabilities()
    assert d["cpu_features"] == [name for name in CPU_FEATURES if caps.get(name)]
    assert ("avx512_bf16" in d["cpu_features"]) == bool(caps.get("avx512_bf16"))


def test_bad_arguments():
    with pytest.raises(ValueError):
        measure_latency(SleepyScores(), [], batch_size=4)
    with pytest.raises(ValueError):
        measure_latency(SleepyScores(n_items=5), histories(4), top_k=6)


def test_work_per_batch_and_share_of_the_measured_peak():
    """FLOPs are counted by FlopCounterMode in the first warm-up batch (no extra call), the peak is
    measured in the same call, and the share is their ratio at the timed median."""
    from torch.utils.flop_counter import FlopCounterMode

    class Linear:
        output = "scores"

        def __init__(self):
            self.n_items, self.device, self.calls = 40, torch.device("cpu"), 0
            self.module = torch.nn.Linear(16, 41)

        def prepare(self, histories):
            return torch.ones(len(histories), 16)

        def score(self, batch):
            self.calls += 1
            return self.module(batch)

        def input_length(self, histories):
            return np.ones(len(histories))

    model = Linear()
    res = measure_latency(model, histories(16), batch_size=8, top_k=5, warmup_batches=1, max_batches=2)
    assert model.calls == 3  # one warm-up (counted) and two timed batches
    with FlopCounterMode(display=False) as counter:
        model.module(torch.ones(8, 16))
    assert res["gflop_per_batch"] * 1e9 == counter.get_total_flops() == 2 * 8 * 16 * 41
    peak = res["peak"]
    assert peak["tflops"] > 0 and peak["dtype"] == "float32" and peak["shape"] == [1024, 1024, 1024]
    assert peak["threads"] == torch.get_num_threads()
    achieved = res["gflop_per_batch"] / res["ms_per_batch_median"]  # GFLOP/ms = TFLOP/s
    assert res["achieved_tflops"] == pytest.approx(achieved) and res["share_of_peak"] == pytest.approx(achieved / peak["tflops"])


def test_the_peak_is_the_best_window_so_a_slowed_window_does_not_lower_it(monkeypatch):
    """Another process taking the core for part of the probe slows some windows; the attainable
    peak is the best window's rate, the slowed ones are kept beside it."""
    import benchmarks.latency as latency

    clock = iter(np.arange(0.0, 1e4, 0.01))  # each reading 10 ms later
    slowed = iter([False, True, False])  # the second window's matmuls take twice the time
    state = {"slow": False}

    class Clock(latency._Timer):
        def now(self):
            value = next(clock)
            if state["slow"]:
                next(clock)
            return value

    monkeypatch.setattr(latency, "_Timer", Clock)
    windows = []
    original_range = range

    def spy_range(n):
        for i in original_range(n):
            state["slow"] = next(slowed)
            windows.append(i)
            yield i

    monkeypatch.setattr(latency, "range", spy_range, raising=False)
    peak = latency.matmul_peak("cpu", seconds=0.06, windows=3)
    rates = peak["window_tflops"]
    assert len(rates) == 3 and rates[1] < rates[0] == rates[2] and peak["tflops"] == max(rates)


def test_matmul_peak_takes_a_smaller_square_when_one_product_outlasts_the_probe():
    # a probe shorter than any 1,024-square product (as bf16 is where the CPU emulates it)
    # halves the square down to 256 instead of running for seconds per window
    quick = latency.matmul_peak("cpu", seconds=1e-9, windows=2)
    assert quick["shape"] == [256, 256, 256] and quick["tflops"] > 0 and len(quick["window_tflops"]) == 2
    assert latency.matmul_peak("cpu", seconds=5.0, windows=1)["shape"] == [1024, 1024, 1024]


def test_a_compiled_setting_is_timed_compiled_although_its_work_is_counted_first():
    """The FLOP count runs eager (set_stance force_eager): torch.compile first met under
    FlopCounterMode stayed eager for every later call, so 'compiled' latencies were eager ones."""
    from torch._dynamo.utils import counters

    from benchmarks.measurements import inference_setting

    class LinearScores:
        n_items, device, output = 20, torch.device("cpu"), "scores"

        def __init__(self):
            self.layer = torch.nn.Linear(8, self.n_items + 1)

        def prepare(self, histories):
            return torch.ones(len(histories), 8)

        def score(self, batch):
            return self.layer(batch)

        def input_length(self, histories):
            return np.array([len(h) for h in histories], dtype=np.float64)

    torch._dynamo.reset()
    counters.clear()
    model = LinearScores()
    with inference_setting(model, {"precision": "fp32", "compile": True}):
        timed = measure_latency(model, [np.array([1, 2])] * 8, batch_size=4, warmup_batches=1, max_batches=2)
    assert timed["gflop_per_batch"] == pytest.approx(2 * 4 * 8 * 21 / 1e9)  # counted, on the eager path
    assert counters["frames"]["ok"] >= 1  # and the timed batches ran compiled
    torch._dynamo.reset()
