"""Inference settings (benchmarks/measurements.py): what each setting applies to a served model
and that everything is put back afterwards."""
from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from benchmarks.errors import ConfigError
from benchmarks.measurements import check_inference_settings, inference_setting, setting_label


class Served:
    """A scoring model as the runner sees one: a transformers backbone held as an attribute."""
    output = "scores"
    device = "cpu"

    def __init__(self):
        torch.manual_seed(0)
        config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=32, attn_implementation="eager")
        self.encoder = BertModel(config).eval()

    def score(self, ids):
        mask = (ids > 0).long()
        return self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.mean(1)


def test_attention_and_threads_apply_inside_the_setting_and_are_restored():
    model, ids = Served(), torch.tensor([[3, 4, 5, 0], [7, 8, 0, 0]])
    threads = torch.get_num_threads()
    eager = model.score(ids)
    setting = check_inference_settings([{"precision": "fp32", "attention": "sdpa", "threads": 1}])[0]
    with inference_setting(model, setting) as applied:
        assert model.encoder.config._attn_implementation == "sdpa" and torch.get_num_threads() == 1
        sdpa = model.score(ids)
    assert applied == {"precision": "fp32", "compile": False, "attention": "sdpa", "threads": 1}
    assert model.encoder.config._attn_implementation == "eager" and torch.get_num_threads() == threads
    # the same model, another kernel: the same scores up to rounding
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=1e-5)
    assert setting_label(applied) == "fp32 eager, sdpa attention, 1 threads"


def test_a_model_without_transformers_backbones_says_attention_was_not_applied():
    class Plain:
        output, device = "scores", "cpu"
        net = torch.nn.Linear(3, 3)

    with inference_setting(Plain(), {"precision": "fp32", "compile": False, "attention": "sdpa"}) as applied:
        pass
    assert applied["attention"].startswith("not supported") and setting_label(applied) == "fp32 eager"


def test_settings_without_the_new_keys_read_as_before_and_bad_ones_fail():
    # records made before attention and threads existed keep their settings' shape and labels
    assert check_inference_settings([{"precision": "bf16"}, {"compile": True}]) == [
        {"precision": "bf16", "compile": False}, {"precision": "fp32", "compile": True}]
    for bad in ({"attention": "flash"}, {"threads": 0}, {"threads": True}, {"precision": "fp16"}, {"cores": 2}):
        with pytest.raises(ConfigError, match="latency.settings entry"):
            check_inference_settings([bad])
