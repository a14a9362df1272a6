"""tools/profile_latency.py: one row's served batches, the timer's numbers beside the profiler's."""
from __future__ import annotations

import re

import pytest

from benchmarks.errors import ConfigError
from tools.profile_latency import main, parse_setting


def test_a_row_is_profiled_with_its_work_its_share_of_peak_and_its_operators(tmp_path, toy_ml1m, tiny_bert, capsys):
    exp = tmp_path / "toyexp.yaml"
    exp.write_text("description: toy\ndatasets: [ml-1m]\nconfig: {latency: {batch_size: 4, warmup_batches: 1}}\n"
                   f"runs:\n  Lite: {{model: {{name: lite_llm4rec, item_llm: '{tiny_bert}', rec_llm: '{tiny_bert}', "
                   f"item_cache_dir: '{tmp_path / 'vectors'}'}}}}\n")
    out = tmp_path / "profile.md"
    assert main(["--experiment", str(exp), "--run", "Lite", "--dataset", "ml-1m", "--data-path", str(toy_ml1m),
                 "--batches", "2", "--setting", "threads=1", "-o", f"data.cache_dir={tmp_path / 'cache'}",
                 "--out", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("# Latency profile: ") and "fp32 eager, 1 threads" in page
    assert "2 timed batches" in page and "aten::addmm" in page  # the encoder's linear layers
    assert "aten::bernoulli" not in page  # served in eval mode: no dropout
    share = float(re.search(r"share of peak ([\d.]+)%", page).group(1))
    assert 0 < share < 1000 and float(re.search(r"([\d.e-]+) GFLOP per batch", page).group(1)) > 0


def test_settings_parse_as_latency_settings_entries():
    assert parse_setting("precision=bf16,compile=true,attention=sdpa,threads=2") == {
        "precision": "bf16", "compile": True, "attention": "sdpa", "threads": 2}
    assert parse_setting(None) == {"precision": "fp32", "compile": False}
    with pytest.raises(ConfigError):
        parse_setting("precision=fp16")
