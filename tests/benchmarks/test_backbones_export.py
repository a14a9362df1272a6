"""The fp16 copy of a backbone for offline GPU machines: half the bytes, loads as fp32 through
MINILM_PATH, and computes what the original computes up to fp16 rounding of the weights."""
import json
from pathlib import Path

import torch
from safetensors import safe_open

from benchmarks import backbones


def test_fp16_export_loads_through_minilm_path_and_matches_fp32(tmp_path, tiny_bert, monkeypatch, capsys):
    folder = tmp_path / "minilm-fp16"
    assert backbones.main(["--export-fp16", str(folder), "--model", tiny_bert]) == 0
    assert "MINILM_PATH=" in capsys.readouterr().out
    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        assert {weights.get_slice(k).get_dtype() for k in weights.keys()} == {"F16"}
    original_bytes = sum(p.stat().st_size for p in Path(tiny_bert).glob("*.safetensors"))
    assert (folder / "model.safetensors").stat().st_size < 0.6 * original_bytes
    assert json.loads((folder / "config.json").read_text())["dtype"] == "float32"
    assert (folder / "tokenizer.json").is_file()

    monkeypatch.setenv("MINILM_PATH", str(folder))
    assert backbones.resolve("all-MiniLM-L6-v2") == str(folder)
    copy = backbones.load_encoder("all-MiniLM-L6-v2").eval()
    original = backbones.load_encoder(tiny_bert).eval()
    assert all(p.dtype == torch.float32 for p in copy.parameters())
    tokenizer = backbones.load_tokenizer("all-MiniLM-L6-v2")
    batch = tokenizer(["Toy Story (1995), genres: Animation", "Heat"], return_tensors="pt", padding=True)
    with torch.no_grad():
        ours, reference = copy(**batch).last_hidden_state, original(**batch).last_hidden_state
    assert torch.allclose(ours, reference, atol=2e-2, rtol=0)
    assert not torch.equal(ours, reference)  # really the rounded copy, not the original again
