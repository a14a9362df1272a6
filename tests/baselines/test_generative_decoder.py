"""P5 / POD / LightLM and the w/o_d variant on a decoder-only backbone (the tiny random Llama that
goes through SmolLM2's GGUF conversion path)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from baselines.generative.decoder_only import left_align, prompt_then_target
from benchmarks.models import build_model

K = 20  # the paper's beam width, on the tiny byte-level vocabulary


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def build(name, toy, backbone, **params):
    torch.manual_seed(0)
    return build_model({"name": name, "backbone": backbone, **params}, toy[0], torch.device("cpu"))


def recommend(model, histories, k=K):
    model.module.eval()
    with torch.inference_mode():
        return model.recommend(model.prepare(histories), k).numpy()


def uneven_histories(split, n=6):
    """Test histories cut to different lengths, so a batch needs padding."""
    return [h[-(3 + 2 * i):] for i, h in enumerate(split.test_histories[:n])]


def test_loss_is_on_the_id_tokens_only(toy, tiny_llama):
    """Each row: the prompt, then the target's id tokens and the end of id, then padding; labels
    -100 everywhere but the target's tokens, which sit right after the row's own prompt. The loss
    is transformers' own causal-LM loss on those labels."""
    _, split = toy
    model = build("p5", toy, tiny_llama)
    assert model.causal and model.seq2seq is None and type(model.lm).__name__ == "LlamaForCausalLM"
    histories, targets = uneven_histories(split, 4), split.test_targets[:4]
    embeds, mask = model._embed(model.prepare(histories))
    labels = model.item_ids.labels(targets)
    inputs, real, full = prompt_then_target(embeds, mask, labels, model.lm.get_input_embeddings())
    for row, (hist, target) in enumerate(zip(histories, targets)):
        prompt_len = len(model.prompt.user_tokens(hist)[0])
        ids = model.item_ids.tokens[target] + (model.special["eos"],)
        assert real[row].sum() == prompt_len + len(ids) and real[row, : prompt_len + len(ids)].all()
        assert (full[row, :prompt_len] == -100).all() and (full[row, prompt_len + len(ids):] == -100).all()
        assert tuple(full[row, prompt_len: prompt_len + len(ids)].tolist()) == ids
        # the target's positions hold its tokens' own embeddings; the prompt's are unchanged
        assert torch.equal(inputs[row, prompt_len: prompt_len + len(ids)],
                           model.lm.get_input_embeddings()(torch.tensor(ids)))
        assert torch.equal(inputs[row, :prompt_len], embeds[row, :prompt_len])
    loss = model.loss((histories, targets))
    reference = model.lm(inputs_embeds=inputs, attention_mask=real, labels=full).loss
    assert torch.allclose(loss, reference, atol=1e-5)


@pytest.mark.parametrize("name,params", [("p5", {"constrained": True}), ("pod", {"constrained": True}),
                                         ("lightlm", {"ffn_width": 16}), ("p5", {})])
def test_twenty_beams_give_valid_unseen_items(toy, tiny_llama, name, params):
    """20-beam search through `generate`: under the trie every list holds 20 distinct valid items
    outside the user's history; unconstrained (end of id banned after a history item's tokens)
    no history item either, and non-item strings are dropped and counted."""
    dataset, split = toy
    model = build(name, toy, tiny_llama, **params)
    histories = split.test_histories[:5]
    ids = recommend(model, histories)
    assert model.params.num_beams == K and ids.shape == (5, K)
    for row, hist in zip(ids, histories):
        real = row[row > 0]
        assert not set(real.tolist()) & set(hist.tolist()) and len(set(real.tolist())) == len(real)
        assert real.max(initial=1) <= dataset.n_items
    if model.params.constrained:
        assert (ids > 0).all() and model.decoding.get("invalid_ids", 0) == 0
    else:
        assert model.decoding["invalid_ids"] > 0  # an untrained model spells non-items; none kept
    if name == "lightlm":
        mlp = model.lm.model.layers[0].mlp
        assert (mlp.gate_proj.out_features, mlp.up_proj.out_features, mlp.down_proj.in_features) == (16, 16, 16)
        assert "feed-forward width 16" in model.describe()["backbones"]


def test_batched_left_padding_lists_as_one_user_at_a_time(toy, tiny_llama):
    """Left padding, the attention mask and the positions it implies: a user's list does not
    depend on who else is in the batch."""
    _, split = toy
    model = build("pod", toy, tiny_llama, constrained=True)
    histories = uneven_histories(split)
    embeds, mask = left_align(*model._embed(model.prepare(histories)))
    assert (mask[:, -1] == 1).all() and (mask[0, 0] == 0)  # padded on the left, prompts end together
    batched = recommend(model, histories)
    alone = np.concatenate([recommend(model, [h]) for h in histories])
    assert np.array_equal(batched, alone)


def test_kv_cache_on_lists_as_cache_off_and_as_a_bare_generate(toy, tiny_llama, monkeypatch):
    """The timed path (the prompt read once per user, its cache copied to the beams) lists what
    a bare `generate` with its own cache lists, and what `generate` without a cache lists."""
    _, split = toy
    model = build("p5", toy, tiny_llama, constrained=True)
    histories = uneven_histories(split, 4)
    with_cache = recommend(model, histories)
    settings = model.generation_settings
    assert settings(K)["use_cache"] is True
    with torch.inference_mode():
        embeds, mask = left_align(*model._embed(model.prepare(histories)))
        bare = model.lm.generate(inputs_embeds=embeds, attention_mask=mask, **settings(K),
                                 **model.decoding_rule(histories, K, None))
    assert np.array_equal(model.sequences_to_items(bare, len(histories), K, K).numpy(), with_cache)
    monkeypatch.setattr(model, "generation_settings", lambda k: {**settings(k), "use_cache": False})
    assert np.array_equal(recommend(model, histories), with_cache)


def test_pod_prompt_vectors_are_trained_and_steer_the_output(toy, tiny_llama):
    _, split = toy
    model = build("pod", toy, tiny_llama, constrained=True)
    vectors = model.inputs.prompt_vectors
    assert vectors.shape == (3, model.lm.config.hidden_size) and model.params.prompt is None
    histories, targets = uneven_histories(split, 4), split.test_targets[:4]
    model.module.train()
    model.loss((histories, targets)).backward()
    assert vectors.grad is not None and vectors.grad.abs().sum() > 0
    before = recommend(model, histories)
    with torch.no_grad():
        vectors.add_(torch.randn_like(vectors) * 5.0)
    assert not np.array_equal(recommend(model, histories), before)


def test_without_decoder_scores_every_item_from_the_last_real_token(toy, tiny_llama):
    dataset, split = toy
    model = build("p5_encoder_only", toy, tiny_llama, item_text="id")
    assert model.causal and model.describe()["backbones"].endswith("(no generation)")
    model.module.eval()
    histories = uneven_histories(split, 4)
    with torch.no_grad():
        scores = model.score(model.prepare(histories))
        assert scores.shape == (4, dataset.n_items + 1) and torch.isinf(scores[:, 0]).all()
        assert torch.isfinite(scores[:, 1:]).all()
        alone = torch.cat([model.score(model.prepare([h])) for h in histories])
        assert torch.allclose(scores, alone, atol=1e-5)  # padding changes nothing
        # the head reads the state of the prompt's last token
        ids, words, mask = model.prepare(histories[:1])
        hidden = model.encoder(inputs_embeds=model.inputs(ids, words, mask)[0]).last_hidden_state
        assert torch.allclose(scores[:1], torch.cat([
            torch.full((1, 1), float("-inf")), model.item_projection_head(hidden[:, -1])[:, 1:]], 1), atol=1e-5)


def test_a_toy_experiment_through_the_runner(tmp_path, toy_ml1m, tiny_llama):
    import run_all

    exp = tmp_path / "gen.yaml"
    exp.write_text(
        "description: toy decoder-only generative rows\n"
        "datasets: [ml-1m]\n"
        "config: {train: {epochs: 1, batch_size: 32}, eval: {max_users: 8, protocol_controls: []},"
        " latency: {max_batches: 1, warmup_batches: 0, batch_size: 4}}\n"
        "runs:\n"
        f"  P5_tiny: {{model: {{name: p5, backbone: '{tiny_llama}', constrained: true}}}}\n"
        f"  P5_w/o_d_tiny: {{model: {{name: p5_encoder_only, backbone: '{tiny_llama}'}}}}\n"
    )
    assert run_all.main(["--experiments", str(exp), "--dataset", "ml-1m", "--data-path", str(toy_ml1m),
                         "--results-dir", str(tmp_path / "results"), "--reports-dir", str(tmp_path / "reports"),
                         "-o", f"data.cache_dir={tmp_path / 'cache'}", "--quiet"]) == 0
    folder = tmp_path / "results" / "gen" / "ml-1m"
    p5 = json.loads((folder / "P5_tiny__seed0.json").read_text())
    variant = json.loads((folder / "P5_w_o_d_tiny__seed0.json").read_text())
    for record in (p5, variant):
        assert record["status"] == "ok" and 0.0 <= record["metrics"]["recall@20"] <= 1.0
        assert "decoder-only" in record["model_info"]["backbones"] and record["model_info"]["backbone_weights"]
    assert {"encode", "beam_search", "decode"} <= set(p5["latency"]["sections_ms_median"])
    assert p5["latency"]["top_k"] == K and p5["model_info"]["decoding"]["num_beams"] == K
