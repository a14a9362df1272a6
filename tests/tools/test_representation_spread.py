"""tools/representation_spread.py: a collapsed encoder is told from a working one."""
from __future__ import annotations

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
