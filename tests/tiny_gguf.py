"""A tiny random Llama written as a GGUF file with the `gguf` package's writer, so that tests go
through the same conversion path as the real SmolLM2 GGUF (benchmarks.backbones.convert_gguf)
without downloading it: 2 layers, width 32, a byte-level BPE vocabulary (GPT-2's byte alphabet
plus three special tokens)."""
from pathlib import Path

import gguf
import numpy as np

def byte_tokens() -> list[str]:
    """GPT-2's byte-level alphabet: every byte as a printable unicode character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    table = dict(zip(bs, map(chr, cs)))
    return [table[b] for b in range(256)]

def write_tiny_llama_gguf(path: Path, seed: int = 0, width: int = 32, layers: int = 2, heads: int = 4,
                          kv_heads: int = 2, ff: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    tokens = ["<unk>", "<s>", "</s>"] + byte_tokens()
    vocab = len(tokens)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_block_count(layers); w.add_context_length(128); w.add_embedding_length(width)
    w.add_feed_forward_length(ff); w.add_head_count(heads); w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(10000.0); w.add_layer_norm_rms_eps(1e-5); w.add_rope_dimension_count(width // heads)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre("default")
    w.add_token_list(tokens); w.add_token_types([3, 3, 3] + [1] * 256)
    w.add_token_scores([0.0] * vocab)
    w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0); w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    f = lambda *shape: (rng.standard_normal(shape) * 0.05).astype(np.float32)  # noqa: E731
    w.add_tensor("token_embd.weight", f(vocab, width))
    hd = width // heads
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(width, np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", f(width, width))
        w.add_tensor(f"blk.{i}.attn_k.weight", f(kv_heads * hd, width))
        w.add_tensor(f"blk.{i}.attn_v.weight", f(kv_heads * hd, width))
        w.add_tensor(f"blk.{i}.attn_output.weight", f(width, width))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(width, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", f(ff, width))
        w.add_tensor(f"blk.{i}.ffn_up.weight", f(ff, width))
        w.add_tensor(f"blk.{i}.ffn_down.weight", f(width, ff))
    w.add_tensor("output_norm.weight", np.ones(width, np.float32))
    w.add_tensor("output.weight", f(vocab, width))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    return path
