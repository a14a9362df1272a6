"""P5 / POD / LightLM and the decoder-free variants on tiny random backbones."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines import generative as gen
from benchmarks.latency import measure_latency
from benchmarks.models import build_model
from benchmarks.training import Trainer

TRAIN = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "adam_eps": 1e-6, "weight_decay": 0.0,
         "warmup_ratio": 0.0, "lr_schedule": "constant", "max_grad_norm": None, "patience": 10,
         "eval_every": 1, "valid_metric": "recall@5", "max_minutes": None, "precision": "fp32"}
EVAL = {"ks": [5], "mask_history": True, "batch_size": 64, "max_users": 4, "user_subset_seed": 0}  # cheap validation
K = 10


@pytest.fixture(scope="module")
def tiny_t5_tokenized(tmp_path_factory):
    """A tiny random T5 with MiniLM's WordPiece tokenizer (no T5 tokenizer ships offline)."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from benchmarks import backbones

    folder = tmp_path_factory.mktemp("tiny-t5-tok")
    tokenizer = AutoTokenizer.from_pretrained(backbones.resolve("all-MiniLM-L6-v2"))
    torch.manual_seed(7)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                      num_heads=2, decoder_start_token_id=0, pad_token_id=0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def build(name, toy, backbone, **params):
    dataset, _ = toy
    torch.manual_seed(0)
    return build_model({"name": name, "backbone": backbone, **params}, dataset, torch.device("cpu"))


def lists(model, histories, k=K):
    return model.recommend(model.prepare(histories), k).numpy()


@pytest.mark.parametrize("name,params", [("lightlm", {}), ("p5", {"constrained": True}),
                                         ("pod", {"constrained": True})])
def test_constrained_beam_search_returns_k_distinct_valid_non_history_items(toy, tiny_bert, name, params):
    dataset, split = toy
    model = build(name, toy, tiny_bert, num_beams=K, **params)
    histories = split.test_histories[:6]
    ids = lists(model, histories)
    assert ids.shape == (6, K)
    for row, hist in zip(ids, histories):
        assert len(set(row)) == K and row.min() >= 1 and row.max() <= dataset.n_items
        assert not set(row) & set(hist.tolist())
    assert model.decoding.get("invalid_ids", 0) == 0 and model.decoding["short_lists"] == 0


def test_unconstrained_decoding_never_lists_history_and_drops_non_items(toy, tiny_bert):
    dataset, split = toy
    model = build("p5", toy, tiny_bert, num_beams=K)
    histories = split.test_histories[:6]
    ids = lists(model, histories)
    for row, hist in zip(ids, histories):
        real = row[row > 0]
        assert not set(real.tolist()) & set(hist.tolist())
        assert len(set(real.tolist())) == len(real) and real.max(initial=1) <= dataset.n_items
    # an untrained model generates strings that are not item ids: dropped and counted, never replaced
    counts = model.decoding
    assert counts["lists"] == 6 and counts["invalid_ids"] > 0
    assert counts["short_lists"] == sum((row == 0).any() for row in ids)


def test_ban_history_items_bans_end_of_id_only_after_a_history_item(toy, tiny_bert):
    model = build("p5", toy, tiny_bert)
    eos = model.special["eos"]
    history_item, other_item = 3, 4
    banned = [{model.item_ids.tokens[history_item]}]
    rule = gen.BanHistoryItems(banned, num_beams=2, eos_id=eos)
    start = model.special["start"]
    rows = torch.tensor([[start, *model.item_ids.tokens[history_item]],
                         [start, *model.item_ids.tokens[other_item]]])
    scores = rule(rows, torch.zeros(2, model.tokenizer.vocab_size))
    assert scores[0, eos] == float("-inf") and torch.isfinite(scores[0]).sum() == scores.shape[1] - 1
    assert torch.isfinite(scores[1]).all()


def test_trie_follows_item_ids_and_leaves_out_history(toy, tiny_bert):
    model = build("lightlm", toy, tiny_bert)
    ids = model.item_ids
    constraint = gen.TrieConstraint(ids, model.special["pad"], excluded=[ids.prefix_counts(np.array([5]))])
    start = torch.tensor([model.special["start"]])
    target = ids.tokens[5] + (ids.eos_id,)
    # walking item 5's path: at its last step the end of id is not allowed (5 is history)
    for j in range(len(target)):
        allowed = constraint(0, torch.cat([start, torch.tensor(target[:j], dtype=torch.long)]))
        others = [i for i in range(1, len(ids.tokens)) if ids.tokens[i][:j] == target[:j] and i != 5]
        assert (target[j] in allowed) == (bool(others) and any(
            (ids.tokens[i] + (ids.eos_id,))[j] == target[j] for i in others))
    assert constraint(0, torch.cat([start, torch.tensor([999_999])])) == [model.special["pad"]]


@pytest.mark.parametrize("name", ["p5", "lightlm"])
def test_sampled_candidates_constrain_the_beam_to_each_users_candidates(toy, tiny_bert, name):
    """1 + C sampled candidates (Figure 6): every listed item is one of the user's own candidates
    and the list is full, so the model ranks its candidates instead of having a catalogue-wide
    list filtered to them (which left P5 its full-ranking hits and nothing more)."""
    from benchmarks.evaluate import sample_candidates

    dataset, split = toy
    model = build(name, toy, tiny_bert, num_beams=K, **({"ffn_width": 16} if name == "lightlm" else {}))
    model.module.eval()
    histories, targets = split.test_histories[:6], split.test_targets[:6]
    candidates = torch.from_numpy(sample_candidates(histories, targets, dataset.n_items, 11, 0))
    with torch.inference_mode():
        listed = model.recommend(model.prepare(histories), K, candidates=candidates).numpy()
    for row, user_candidates in zip(listed, candidates.numpy()):
        assert len(set(row)) == K and set(row) <= set(user_candidates)
    with pytest.raises(ValueError, match="candidates"):
        model.recommend(model.prepare(histories), K, candidates=candidates[:, :K - 1])


def test_timed_path_equals_a_bare_generate_call(toy, tiny_bert):
    """No strawman and no shortcut: the path the timer measures returns the same lists as a plain
    `generate` on the same model and batch (encoder run inside generate)."""
    from transformers import LogitsProcessorList

    _, split = toy
    model = build("p5", toy, tiny_bert, num_beams=K)
    model.module.eval()
    histories = split.test_histories[:4]
    batch = model.prepare(histories)
    with torch.inference_mode():
        timed = model.recommend(batch, K)
        embeds, mask = model._embed(batch)
        banned = [{model.item_ids.tokens[i] for i in np.unique(h)} for h in histories]
        bare = model.seq2seq.generate(
            inputs_embeds=embeds, attention_mask=mask, **model.generation_settings(K),
            logits_processor=LogitsProcessorList([gen.BanHistoryItems(banned, K, model.special["eos"])]))
        bare_ids = model.sequences_to_items(bare, len(histories), K, K)
    assert torch.equal(timed, bare_ids)


def test_latency_sections_account_for_the_measured_total(toy, tiny_bert):
    """The model's named sections, timed inside `recommend`, against the total the timer measures
    around the whole call on its own clock: they fit inside it and cover nearly all of it ("other",
    the rest, is the per-user decoding rules and the call itself)."""
    _, split = toy
    model = build("pod", toy, tiny_bert, num_beams=K)
    model.module.eval()
    lat = measure_latency(model, split.test_histories, batch_size=4, top_k=K, warmup_batches=0, max_batches=1)
    sections = dict(lat["sections_ms_median"])
    other = sections.pop("other")
    assert set(sections) == {"encode", "beam_search", "decode"}
    named, total = sum(sections.values()), lat["ms_per_batch_median"]
    assert all(ms > 0 for ms in sections.values())
    assert named <= total and 0.0 <= other <= total
    assert named >= 0.9 * total, (sections, total)
    assert other == pytest.approx(total - named, rel=1e-6, abs=1e-9)  # "other" is the remainder, no more
    assert sections["beam_search"] > sections["decode"]


@pytest.mark.parametrize("name,params", [("p5", {}), ("pod", {}), ("lightlm", {"ffn_width": 16}),
                                         ("p5_encoder_only", {"item_text": "id"}),
                                         ("p5_encoder_only", {"item_text": "title"}),
                                         ("p5_encoder_only", {"prompt": None, "prompt_vectors": 3})])
def test_every_model_and_variant_trains_a_step(toy, tiny_bert, name, params):
    _, split = toy
    model = build(name, toy, tiny_bert, **params)
    batches = model.training_batches(split, 0, np.random.default_rng(0), 8)
    before = [p.detach().clone() for p in model.trainable_parameters()]
    result = Trainer({**TRAIN, "epochs": 1}, EVAL, seed=0, progress=False).fit(model, split)
    assert np.isfinite(result["history"][0]["loss"]) and len(batches) > 1
    moved = [not torch.equal(b, p.detach()) for b, p in zip(before, model.trainable_parameters())]
    assert sum(moved) > len(moved) // 2


def test_variant_scores_every_item_and_titles_change_the_input(toy, tiny_bert):
    dataset, split = toy
    ids = build("p5_encoder_only", toy, tiny_bert, item_text="id")
    titles = build("p5_encoder_only", toy, tiny_bert, item_text="title")
    scores = ids.score(ids.prepare(split.test_histories[:3]))
    assert scores.shape == (3, dataset.n_items + 1) and torch.isinf(scores[:, 0]).all()
    hist = split.test_histories[:1]
    assert not torch.equal(ids.prepare(hist)[0], titles.prepare(hist)[0])


def test_a_short_training_run_lowers_the_generative_loss(toy, tiny_bert):
    _, split = toy
    model = build("p5", toy, tiny_bert)
    result = Trainer({**TRAIN, "epochs": 4, "lr": 3e-3, "eval_every": 4}, EVAL, seed=0,
                     progress=False).fit(model, split)
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < losses[0] - 0.5


def test_pod_reads_fewer_tokens_than_p5_and_lengths_count_prompt_vectors(toy, tiny_bert):
    _, split = toy
    p5 = build("p5", toy, tiny_bert)
    pod = build("pod", toy, tiny_bert)
    hist = split.test_histories[:5]
    p5_len, pod_len = p5.input_length(hist), pod.input_length(hist)
    assert (pod_len < p5_len).all()
    assert pod_len[0] == pod.prepare(hist[:1])["mask"].sum().item() + 3
    assert p5_len[0] == p5.prepare(hist[:1])["mask"].sum().item()


def test_whole_word_ids_mark_each_items_tokens(toy, tiny_bert):
    _, split = toy
    model = build("p5", toy, tiny_bert)
    hist = split.test_histories[0][-3:]
    tokens, words = model.prompt.user_tokens(hist)
    for k, item in enumerate(hist, start=1):
        marked = [t for t, w in zip(tokens, words) if w == k]
        assert tuple(marked) == model.item_ids.tokens[item]


def test_item_indexings(toy, tiny_bert):
    dataset, split = toy
    n = dataset.n_items
    rand = gen.random_indexing(n, seed=0)
    assert len(set(rand[1:])) == n and rand != gen.random_indexing(n, seed=1)
    with pytest.warns(UserWarning, match="leaks"):
        seq = gen.sequential_indexing(split.train, n)
    first = split.train[0]
    assert [seq[i] for i in first[:3]] == ["item_1", "item_2", "item_3"]
    collab = gen.collaborative_indexing(split.train, n, n_clusters=4, leaf_size=8)
    assert len(set(collab[1:])) == n
    # the toy users walk item cycles: items that follow each other share a longer id prefix than
    # random pairs of items
    depth = lambda a, b: next((i for i, (x, y) in enumerate(zip(a.split("-"), b.split("-"))) if x != y),  # noqa: E731
                              min(len(a.split("-")), len(b.split("-"))))
    neighbours = np.mean([depth(collab[s[i]], collab[s[i + 1]]) for s in split.train for i in range(len(s) - 1)])
    rng = np.random.default_rng(0)
    randoms = np.mean([depth(collab[a], collab[b]) for a, b in rng.integers(1, n + 1, size=(500, 2))])
    assert neighbours > randoms


def test_lightlm_cuts_feed_forward_width_keeping_the_pretrained_slice(toy, tiny_bert):
    from transformers import AutoModel

    model = build("lightlm", toy, tiny_bert, ffn_width=16)
    encoder_layer = model.seq2seq.encoder.encoder.layer[0]
    assert encoder_layer.intermediate.dense.out_features == 16
    assert encoder_layer.output.dense.in_features == 16
    assert model.seq2seq.decoder.bert.encoder.layer[0].intermediate.dense.out_features == 16
    original = AutoModel.from_pretrained(tiny_bert).encoder.layer[0]
    assert torch.equal(encoder_layer.intermediate.dense.weight, original.intermediate.dense.weight[:16])
    assert torch.equal(encoder_layer.output.dense.weight, original.output.dense.weight[:, :16])


def test_t5_backbone_generates_valid_lists(toy, tiny_t5_tokenized):
    dataset, split = toy
    model = build("lightlm", toy, tiny_t5_tokenized, num_beams=K, ffn_width=8)
    assert type(model.seq2seq).__name__ == "T5ForConditionalGeneration"
    assert model.seq2seq.config.d_ff == 8
    assert model.seq2seq.encoder.block[0].layer[-1].DenseReluDense.wi.out_features == 8
    ids = lists(model, split.test_histories[:3])
    assert ids.shape == (3, K) and ids.min() >= 1 and ids.max() <= dataset.n_items


def test_unknown_settings_fail_before_work(toy, tiny_bert):
    with pytest.raises(ValueError, match="indexing"):
        build("p5", toy, tiny_bert, indexing="semantic")
    with pytest.raises(ValueError, match="history"):
        build("p5", toy, tiny_bert, prompt="no placeholder here")
    with pytest.raises(ValueError, match="ffn_width"):
        build("lightlm", toy, tiny_bert, ffn_width=10_000)
    with pytest.raises(ValueError, match="item_text"):
        build("p5_encoder_only", toy, tiny_bert, item_text="genre")


def test_title_variant_reads_the_title_alone_by_default(toy, tiny_bert):
    """w/o_d_TID writes item titles instead of ids, as the paper's Table 2: the title alone (the
    toy movies' "Movie 5 (1955)"), not the dataset's item text with its genres, unless asked."""
    dataset, _ = toy
    assert dataset.item_titles[1].startswith("Movie ") and "genres" in dataset.item_texts[1]
    assert "genres" not in " ".join(dataset.item_titles)
    model = build("p5_encoder_only", toy, tiny_bert, item_text="title")
    words = model.tokenizer(dataset.item_titles[3], add_special_tokens=False)["input_ids"]
    assert list(model.prompt.item_tokens[3]) == words
    text = build("p5_encoder_only", toy, tiny_bert, item_text="title", title_text="text")
    assert list(text.prompt.item_tokens[3]) == text.tokenizer(dataset.item_texts[3], add_special_tokens=False)["input_ids"]
    assert model.describe()["item_text"] == "title (title)"


@pytest.mark.parametrize("name,params", [("p5", {}), ("pod", {}), ("lightlm", {}), ("p5_encoder_only", {"item_text": "title"})])
def test_a_model_pickles_whole_and_ranks_the_same_after_loading(toy, tiny_bert, name, params):
    """--keep-models saves the trained Recommender whole (torch.save) for --retime: every part
    it built (prompts, trie, tokenizer) must pickle and load to the same model."""
    import io

    _, split = toy
    model = build(name, toy, tiny_bert, **({"num_beams": K} if name != "p5_encoder_only" else {}), **params)
    model.module.eval()  # as trained and measured: no dropout
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    histories = split.test_histories[:4]
    if name == "p5_encoder_only":
        assert torch.equal(loaded.score(loaded.prepare(histories)), model.score(model.prepare(histories)))
    else:
        assert np.array_equal(lists(loaded, histories), lists(model, histories))
