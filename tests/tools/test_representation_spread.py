"""tools/representation_spread.py: a collapsed encoder is told from a working one."""
from __future__ import annotations

import pytest
import torch

from benchmarks.models import build_model
from tests.baselines.conftest import toy  # noqa: F401 - the fixture
from tools import representation_spread as rs


def encoder_only(toy, backbone):
    dataset, _ = toy
    torch.manual_seed(0)
    return build_model({"name": "p5_encoder_only", "backbone": backbone}, dataset, torch.device("cpu"))


def test_a_working_encoder_spreads_users_and_a_collapsed_one_does_not(toy, tiny_bert):
    model = encoder_only(toy, tiny_bert)
    working = rs.spread(model, n_users=12)
    assert set(working["layers"]) == {"encoder.encoder.layer.0", "encoder.encoder.layer.1"}
    assert working["layers"]["encoder.encoder.layer.1"]["relative"] > 0.1
    assert working["scores"]["relative"] > 1e-3
    assert working["lists"]["users"] == 12

    # the collapse seen in training: the last block maps every token to one vector (here its
    # output LayerNorm's gain set to 0, so every state is the LayerNorm's bias)
    with torch.no_grad():
        model.encoder.encoder.layer[1].output.LayerNorm.weight.zero_()
        model.encoder.encoder.layer[1].output.LayerNorm.bias.normal_()
    collapsed = rs.spread(model, n_users=12)
    assert collapsed["layers"]["encoder.encoder.layer.1"]["relative"] < 1e-5
    assert collapsed["layers"]["encoder.encoder.layer.0"]["relative"] > 0.1  # the earlier block still spreads
    assert collapsed["scores"]["relative"] < 1e-5
    # one ranking for everyone: lists differ only by the history masked out of them
    assert collapsed["lists"]["mean_jaccard"] > working["lists"]["mean_jaccard"]


def test_a_top_k_model_is_read_through_its_lists(toy, tiny_bert):
    dataset, _ = toy
    torch.manual_seed(0)
    model = build_model({"name": "p5", "backbone": tiny_bert, "num_beams": 10, "constrained": True}, dataset,
                        torch.device("cpu"))
    report = rs.spread(model, n_users=4)
    assert "scores" not in report
    assert report["lists"]["users"] == 4 and 10 <= report["lists"]["distinct_items"] <= 40
    assert any(".layer." in name for name in report["layers"])  # the encoder's blocks, read once


def test_command_line_reads_a_kept_model_and_refuses_a_missing_one(toy, tiny_bert, tmp_path, capsys):
    path = tmp_path / "kept.pt"
    torch.save({"record_finished": None, "model": encoder_only(toy, tiny_bert)}, path)
    assert rs.main([str(path), "--users", "6"]) == 0
    out = capsys.readouterr().out
    assert "6 validation users' top-10 lists" in out and "encoder.encoder.layer.1" in out
    assert rs.main([str(tmp_path / "missing.pt")]) == 2


def test_a_checkpoint_is_read_into_the_model_its_run_declares(toy, tiny_bert, tmp_path, monkeypatch):
    """--run: the experiment file's model section (here POD_w/o_d's, with its prompt vectors), the
    checkpoint's weights in it; the toy data and a tiny backbone stand in for ml-100k and MiniLM."""
    import benchmarks.data
    import benchmarks.models

    dataset, _ = toy
    built = []
    build = benchmarks.models.build_model

    def tiny(section, data, device):
        built.append(section)
        return build({**section, "backbone": tiny_bert}, data, device)

    monkeypatch.setattr(benchmarks.data, "load_dataset", lambda cfg, verbose=False: dataset)
    monkeypatch.setattr(benchmarks.models, "build_model", tiny)
    trained = tiny({"name": "p5_encoder_only", "item_text": "id", "prompt": None, "prompt_vectors": 3},
                   dataset, torch.device("cpu"))
    with torch.no_grad():  # collapsed, as a training would have left it
        trained.encoder.encoder.layer[1].output.LayerNorm.weight.zero_()
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": trained.module.state_dict(), "best_state": None, "epoch": 3}, path)

    model = rs.model_from_checkpoint(path, "table1_2_4_5_generative/ml-100k/POD_w/o_d", "model")
    assert built[-1]["prompt_vectors"] == 3 and built[-1]["name"] == "p5_encoder_only"
    assert rs.spread(model, n_users=8)["scores"]["relative"] < 1e-5
    with pytest.raises(ValueError, match="no 'best_state' weights"):
        rs.model_from_checkpoint(path, "table1_2_4_5_generative/ml-100k/POD_w/o_d", "best_state")
    assert rs.main([str(path), "--run", "table1_2_4_5_generative/POD_w/o_d"]) == 2  # no dataset part
    assert rs.main([str(path), "--run", "table1_2_4_5_generative"]) == 2


def test_only_the_outermost_numbered_blocks_are_read():
    """A T5 block holds sub-layers named layer.0, layer.1: the block is read, not its parts."""
    from transformers import T5Config, T5EncoderModel

    encoder = T5EncoderModel(T5Config(vocab_size=32, d_model=8, d_kv=4, d_ff=16, num_layers=2, num_heads=2))
    holder = type("Holder", (), {"module": torch.nn.ModuleDict({"encoder": encoder})})()
    names = [name for name, _ in rs.numbered_blocks(holder)]
    assert names == ["encoder.encoder.block.0", "encoder.encoder.block.1"]
