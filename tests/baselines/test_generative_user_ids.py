"""The user's id in the generative models' prompts ("user_<index>", as P5, POD and LightLM write it),
on the tiny random backbones of test_generative.py and test_generative_decoder.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.latency import measure_latency
from tests.baselines.test_generative import build


def user_id_tokens(model, user):
    return list(model.tokenizer(f"user_{user}", add_special_tokens=False)["input_ids"])


def contains(tokens, part):
    return any(tokens[i:i + len(part)] == part for i in range(len(tokens) - len(part) + 1))


@pytest.mark.parametrize("name", ["p5", "lightlm", "p5_encoder_only"])
def test_the_prompt_of_user_7_holds_the_tokens_of_user_7_as_one_whole_word(toy, tiny_bert, name):
    _, split = toy
    model = build(name, toy, tiny_bert)
    assert model.params.user_in_prompt and model.reads_user_ids
    history = split.test_histories[7][-3:]
    tokens, words = model.prompt.user_tokens(history, 7)
    user = user_id_tokens(model, 7)
    assert len(user) > 1  # split by the backbone's tokenizer: user, _, 7 (WordPiece)
    at = next(i for i in range(len(tokens)) if tokens[i:i + len(user)] == user)
    # P5's sentence: "... interaction history of user_7 : <items> ..."; the id is whole word 1
    before = model.tokenizer.decode(tokens[:at], skip_special_tokens=True)
    assert before.endswith("interaction history of")
    assert words[at:at + len(user)] == [1] * len(user) and words.count(1) == len(user)
    for k, item in enumerate(history, start=2):  # the items are the whole words after it
        assert tuple(t for t, w in zip(tokens, words) if w == k) == model.prompt.item_tokens[item]


def test_pod_writes_the_user_id_before_the_items(toy, tiny_bert):
    """POD (lileipisces/POD, utils.py): "user_{} item_{} item_{} ..." after its prompt vectors."""
    _, split = toy
    model = build("pod", toy, tiny_bert)
    history = split.test_histories[3][-2:]
    tokens, words = model.prompt.user_tokens(history, 3)
    head = len(model.prompt.head)
    user = user_id_tokens(model, 3)
    assert tokens[head:head + len(user)] == user and words[head:head + len(user)] == [1] * len(user)
    assert tuple(tokens[head + len(user):head + len(user) + len(model.prompt.item_tokens[history[0]])]) == \
        model.prompt.item_tokens[history[0]]
    # input_length counts the id's tokens, and the prompt vectors
    assert model.input_length([history], users=[3])[0] == len(tokens) + 3
    assert model.input_length([history], users=[3])[0] == model.input_length([history])[0] + len(user)


@pytest.mark.parametrize("name", ["p5", "pod", "p5_encoder_only"])
def test_two_users_with_equal_histories_get_different_inputs(toy, tiny_bert, name):
    _, split = toy
    model = build(name, toy, tiny_bert)
    history = split.test_histories[0]
    batch = model.prepare([history, history], users=np.array([4, 17]))
    ids = batch["input_ids"] if isinstance(batch, dict) else batch[0]
    assert not torch.equal(ids[0], ids[1])
    assert contains(ids[0].tolist(), user_id_tokens(model, 4)) and contains(ids[1].tolist(), user_id_tokens(model, 17))


def test_user_in_prompt_false_reads_no_user_id(toy, tiny_bert):
    _, split = toy
    model = build("p5", toy, tiny_bert, user_in_prompt=False)
    assert not model.reads_user_ids and model.inputs.whole_word_embeddings.num_embeddings == model.window + 1
    history = split.test_histories[0]
    ids = model.prepare([history, history], users=np.array([4, 17]))["input_ids"]
    assert torch.equal(ids[0], ids[1])
    assert "interaction history of the user :" in model.tokenizer.decode(ids[0], skip_special_tokens=True)
    assert model.training_batches(split, 0, np.random.default_rng(0), 8)[0].__len__() == 2


@pytest.mark.parametrize("name,strategy", [("p5", "sampling"), ("p5", "all"), ("p5_encoder_only", "sampling")])
def test_training_batches_carry_each_samples_user(toy, tiny_bert, name, strategy):
    _, split = toy
    model = build(name, toy, tiny_bert, strategy=strategy)
    batches = model.training_batches(split, 0, np.random.default_rng(0), 8)
    for histories, targets, users in batches:
        for history, target, user in zip(histories, targets, users):
            sequence = list(split.train[user])
            window = [*history, target]
            assert any(sequence[i:i + len(window)] == window for i in range(len(sequence)))
    histories, targets, users = batches[0]
    loss = model.loss(batches[0])
    assert torch.isfinite(loss)
    # the loss reads the batch's users: other users, another loss (an untrained model's, nearly equal)
    model.module.eval()  # no dropout
    assert model.loss(batches[0]).item() != model.loss((histories, targets, (users + 1) % split.n_users)).item()


def test_the_latency_timer_prepares_the_prompts_with_the_users(toy, tiny_bert, monkeypatch):
    _, split = toy
    model = build("pod", toy, tiny_bert, num_beams=10)
    model.module.eval()
    seen = []
    prepare = model.prepare
    monkeypatch.setattr(model, "prepare", lambda histories, users=None: seen.append(list(users)) or
                        prepare(histories, users=users))
    users = np.array([9, 4, 30, 2])
    lat = measure_latency(model, [split.test_histories[u] for u in users], batch_size=2, top_k=10,
                          warmup_batches=0, max_batches=2, count_flops=False, users=users)
    assert seen == [[9, 4], [30, 2]]
    expected = model.input_length([split.test_histories[u] for u in users], users=users).mean()
    assert lat["input_length_mean"] == pytest.approx(expected)


def test_decoder_only_prompts_hold_the_user_id(toy, tiny_llama, one_thread):
    _, split = toy
    model = build("p5", toy, tiny_llama, constrained=True)
    assert model.causal and model.reads_user_ids
    history = split.test_histories[0]
    batch = model.prepare([history, history], users=np.array([5, 12]))
    assert contains(batch["input_ids"][1].tolist(), user_id_tokens(model, 12))
    model.module.eval()
    with torch.inference_mode():
        ids = model.recommend(batch, 20)
    assert ids.shape == (2, 20) and (ids > 0).all()
