"""HLLM on tiny random backbones (a GGUF-converted Llama and a BERT): the learnable [ITEM]
embedding and its gradients, the KV-cached frozen Item LLM equal to the full pass, the causal User
LLM, InfoNCE with masked negatives, chunks that make every training position a target, the frozen
table and the end-to-end Item LLM (batch items only; one table per evaluation), training, and the
cold-start hold-out that lets it rank items never trained on."""
import json

import numpy as np
import pytest
import torch

from baselines import hllm
from baselines.hllm import causal_attention_mask, info_nce
from benchmarks.evaluate import evaluate
from benchmarks.models import build_model
from benchmarks.split import hold_out_items, leave_one_out
from benchmarks.training import Trainer

TRAIN = {"epochs": 3, "batch_size": 16, "lr": 1e-3, "adam_eps": 1e-6, "weight_decay": 0.0,
         "warmup_ratio": 0.0, "lr_schedule": "constant", "max_grad_norm": None, "patience": 10,
         "eval_every": 1, "valid_metric": "recall@10", "max_minutes": None, "precision": "fp32"}
EVAL = {"ks": [10, 20], "mask_history": True, "batch_size": 16}


pytestmark = pytest.mark.usefixtures("one_thread")


def build(dataset, tmp_path, tiny_bert, **params):
    section = {"name": "hllm", "item_llm": tiny_bert, "user_llm": tiny_bert, "item_max_length": 16,
               "item_cache_dir": str(tmp_path / "vectors"), "num_negatives": 16, "max_seq_length": 8}
    section.update(params)
    torch.manual_seed(0)
    return build_model(section, dataset, torch.device("cpu"))


def one_step(model, split, lr=1e-2):
    batch = model.training_batches(split, 0, np.random.default_rng(0), 16)[0]
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=lr)
    model.module.train()
    loss = model.loss(batch)
    loss.backward()
    optimizer.step()
    return loss.item()


def test_item_embedding_is_the_item_token_final_state(toy_dataset, tiny_llama):
    """End to end: "<instruction><text>" then the learnable [ITEM] embedding; the embedding is the
    final state there, as one plain pass over that input gives it."""
    from benchmarks import backbones

    tokenizer, llm = backbones.load_tokenizer(tiny_llama), backbones.load_encoder(tiny_llama).eval()
    texts = toy_dataset.item_texts[1:4]
    ids, lengths = hllm.tokenize_texts(tokenizer, texts, "Compress: ", 16)
    assert ids.shape[0] == 4 and lengths[0] == 1 and (lengths[1:] <= 15).all()
    item_llm = hllm.TextItemLLM(llm, ids, lengths)
    token = torch.randn(backbones.hidden_size(llm)) * 0.02
    with torch.no_grad():
        vectors = item_llm(torch.tensor([1, 2, 3]), token)
        for row, text in enumerate(texts):
            tokens = tokenizer("Compress: " + text, truncation=True, max_length=15)["input_ids"]
            words = llm.get_input_embeddings()(torch.tensor([tokens]))
            hidden = llm(inputs_embeds=torch.cat([words, token.view(1, 1, -1)], 1)).last_hidden_state[0, -1]
            assert torch.allclose(vectors[row], hidden, atol=1e-5)


def test_cached_frozen_item_llm_equals_the_full_pass_and_trains_the_item_token(toy_dataset, tmp_path, tiny_llama):
    """frozen_cached: the texts' keys and values once, then one [ITEM] position per item: the same
    embeddings as the end-to-end pass at the same weights; the [ITEM] embedding gets gradients,
    the frozen Item LLM none."""
    from benchmarks import backbones

    tokenizer, llm = backbones.load_tokenizer(tiny_llama), backbones.load_encoder(tiny_llama).eval()
    ids, lengths = hllm.tokenize_texts(tokenizer, toy_dataset.item_texts[1:], "Compress: ", 16)
    full = hllm.TextItemLLM(llm, ids, lengths)
    cached = hllm.CachedItemLLM(llm, ids, lengths, batch_size=16, device=torch.device("cpu"))
    token = torch.randn(backbones.hidden_size(llm)) * 0.02
    items = torch.tensor([3, 1, 7, 2, 9])
    with torch.no_grad():
        assert torch.allclose(cached(items, token), full(items, token), atol=1e-5)
    model = build(toy_dataset, tmp_path, tiny_llama, item_llm_training="frozen_cached")
    assert isinstance(model.module.item_llm, hllm.CachedItemLLM)
    model.module.train()
    model.loss(model.training_batches(leave_one_out(toy_dataset), 0, np.random.default_rng(0), 8)[0]).backward()
    assert model.module.item_token.grad is not None and model.module.item_token.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.module.item_llm.llm.parameters())
    assert not any(p.requires_grad for p in model.module.item_llm.llm.parameters())


def test_a_cpu_training_step_runs_attention_on_the_math_kernel(toy_dataset, tmp_path, tiny_llama, monkeypatch):
    """PyTorch's fused CPU attention has a slow backward for HLLM's short queries
    (model.training_attention): every attention call of a training loss, the frozen_cached Item
    LLM's and the User LLM's, runs with the fused kernels off; scoring keeps PyTorch's choice."""
    model = build(toy_dataset, tmp_path, tiny_llama, item_llm_training="frozen_cached")
    split = leave_one_out(toy_dataset)
    fused, real = [], torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: fused.append(torch.backends.cuda.flash_sdp_enabled()) or real(*a, **k))
    model.module.train()
    model.loss(model.training_batches(split, 0, np.random.default_rng(0), 8)[0]).backward()
    assert len(fused) >= 4 and not any(fused)  # both LLMs' layers, all on the math kernel
    fused.clear()
    model.module.eval()
    with torch.no_grad():
        model.score(model.prepare(split.valid_histories[:4]))
    assert fused and all(fused)


def test_end_to_end_item_token_and_item_llm_both_get_gradients(toy_dataset, tmp_path, tiny_llama):
    model = build(toy_dataset, tmp_path, tiny_llama)
    assert model.params.item_llm_training == "end_to_end" and model.item_table_info["norm"] == "none"  # a decoder
    model.module.train()
    model.loss(model.training_batches(leave_one_out(toy_dataset), 0, np.random.default_rng(0), 8)[0]).backward()
    assert model.module.item_token.grad.abs().sum() > 0
    grads = [p.grad for p in model.module.item_llm.llm.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_training_chunks_make_every_training_position_a_target_every_epoch(toy_dataset, tmp_path, tiny_bert):
    model = build(toy_dataset, tmp_path, tiny_bert, item_llm_training="frozen", max_seq_length=4)
    split = leave_one_out(toy_dataset)
    for epoch in range(2):
        pairs = {}
        for inputs, targets, _ in model.training_batches(split, epoch, np.random.default_rng(epoch), 16):
            for row_in, row_t in zip(inputs, targets):
                n = int((row_t > 0).sum())
                assert (row_in[1:n] == row_t[:n - 1]).all() and n <= 4  # each input predicts the next
                for a, b in zip(row_in[:n], row_t[:n]):
                    pairs[(int(a), int(b))] = pairs.get((int(a), int(b)), 0) + 1
        expected = {}
        for seq in split.train:
            for a, b in zip(seq[:-1], seq[1:]):
                expected[(int(a), int(b))] = expected.get((int(a), int(b)), 0) + 1
        assert pairs == expected  # every consecutive training pair once, and nothing else


def test_user_llm_is_causal(toy_dataset, tmp_path, tiny_bert):
    model = build(toy_dataset, tmp_path, tiny_bert, item_llm_training="frozen")
    net = model.module.eval()
    vectors = torch.randn(2, 6, 32)
    real = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    changed = vectors.clone()
    changed[:, 3] = torch.randn(2, 32)  # another item at position 3
    with torch.no_grad():
        before, after = net.user_states(vectors, real), net.user_states(changed, real)
    assert torch.allclose(before[:, :3], after[:, :3], atol=1e-6)  # t < 3 cannot see position 3
    assert not torch.allclose(before[:, 3:4], after[:, 3:4], atol=1e-3)  # t >= 3 can
    assert not torch.allclose(before[0, 4:], after[0, 4:], atol=1e-3)
    mask = causal_attention_mask(real, torch.float32)
    assert mask.shape == (2, 1, 6, 6) and mask[1, 0, 5, 4] < -1e30 and mask[1, 0, 5, 5] == 0  # padding sees itself only
    with torch.no_grad():  # a padded position or an empty history never gives NaN
        assert torch.isfinite(net.user_states(vectors, torch.zeros(2, 6, dtype=torch.bool))).all()


@pytest.mark.parametrize("scale", ["token_embeddings", "none"])
def test_user_llm_reads_inputs_at_its_token_embedding_norm(toy_dataset, tmp_path, tiny_bert, scale):
    model = build(toy_dataset, tmp_path, tiny_bert, item_llm_training="frozen", user_input_scale=scale)
    seen = {}
    model.module.user_llm.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(inputs=kwargs["inputs_embeds"].detach()), with_kwargs=True)
    histories = leave_one_out(toy_dataset).test_histories[:4]
    model.module.eval()
    with torch.no_grad():
        model.score(model.prepare(histories))
    items = model.prepare(histories)
    norms = seen["inputs"].norm(dim=-1)
    assert torch.all(norms[items == 0] == 0)  # padding stays zero
    tokens = model.module.user_llm.get_input_embeddings().weight.norm(dim=1).mean()
    if scale == "token_embeddings":
        assert torch.allclose(norms[items > 0], tokens.expand(int((items > 0).sum())), rtol=1e-4)
    else:  # the z-scored table as it is: norm about sqrt(width), far above the tokens'
        assert torch.equal(seen["inputs"], model.module.frozen_table[items])
        assert norms[items > 0].min() > 2 * tokens


def test_info_nce_masks_negatives_equal_to_the_positive():
    torch.manual_seed(0)
    predicted, items = torch.randn(4, 8), torch.randn(10, 8)
    positive_ids = torch.tensor([1, 2, 3, 4])
    scale = torch.tensor(np.log(1 / 0.07))
    without = info_nce(predicted, items[positive_ids], items[[5, 6, 7]], positive_ids, torch.tensor([5, 6, 7]), scale)
    with_copies = info_nce(predicted, items[positive_ids], items[[5, 6, 7, 1, 3]], positive_ids,
                           torch.tensor([5, 6, 7, 1, 3]), scale)
    # rows 0 and 2 (items 1 and 3) see their own positive among the negatives: masked, so their
    # loss is unchanged; rows 1 and 3 get items 1 and 3 as real negatives, so theirs rises
    per_row = lambda negs: torch.stack([info_nce(predicted[r:r + 1], items[positive_ids[r:r + 1]], items[negs],  # noqa: E731
                                                 positive_ids[r:r + 1], torch.tensor(negs), scale) for r in range(4)])
    a, b = per_row([5, 6, 7]), per_row([5, 6, 7, 1, 3])
    assert torch.allclose(a[[0, 2]], b[[0, 2]], atol=1e-4) and (b[[1, 3]] > a[[1, 3]]).all()
    assert torch.isfinite(with_copies) and with_copies > without
    # a perfect prediction and a high inverse temperature give a loss near zero
    assert info_nce(items[positive_ids], items[positive_ids], items[[5, 6, 7]], positive_ids,
                    torch.tensor([5, 6, 7]), torch.tensor(np.log(100.0))) < without


def test_frozen_item_table_is_cached_and_keyed(toy_dataset, tmp_path, tiny_bert, monkeypatch):
    model = build(toy_dataset, tmp_path, tiny_bert, item_llm_training="frozen")
    assert model.item_table_info["cache"] == "miss" and model.module.item_llm is None
    assert model.module.frozen_table.shape == (toy_dataset.n_items + 1, 32)
    assert not any("table" in k for k in model.module.state_dict())  # not snapshotted per epoch

    def no_item_llm(*a, **k):
        raise AssertionError("the Item LLM ran although its table is cached")

    monkeypatch.setattr(hllm.item_llm, "TextItemLLM", no_item_llm)
    again = build(toy_dataset, tmp_path, tiny_bert, item_llm_training="frozen")
    assert again.item_table_info["cache"] == "hit"
    assert torch.equal(again.module.frozen_table, model.module.frozen_table)
    with pytest.raises(AssertionError, match="cached"):  # another instruction is another table
        build(toy_dataset, tmp_path, tiny_bert, item_llm_training="frozen", item_instruction="Describe: ")


def test_frozen_training_lowers_the_loss_and_trains_only_the_user_side(toy_dataset, tmp_path, tiny_bert):
    # unscaled input: with user_input_scale token_embeddings this toy run (tiny random BERT) stays
    # at the uniform loss; the test is about what trains, not about the input scale
    model = build(toy_dataset, tmp_path, tiny_bert, item_llm_training="frozen", user_input_scale="none")
    table = model.module.frozen_table.clone()
    split = leave_one_out(toy_dataset)
    result = Trainer({**TRAIN, "epochs": 12, "lr": 1e-2}, EVAL, seed=0, progress=False).fit(model, split)
    losses = [h["loss"] for h in result["history"]]
    assert np.mean(losses[-2:]) < 0.5 * losses[0], losses
    assert result["best_valid"]["recall@10"] > 0.4  # the toy users walk a cycle; popularity gets ~0.1
    assert torch.equal(model.module.frozen_table, table)
    scores = model.score(model.prepare(split.test_histories[:4]))
    assert scores.shape == (4, toy_dataset.n_items + 1) and torch.isinf(scores[:, 0]).all()
    assert torch.isfinite(scores[:, 1:]).all() and scores[:, 1:].abs().max() <= 1.0 + 1e-5  # cosines
    json.dumps(model.describe())


def test_end_to_end_embeds_only_batch_items_and_one_table_per_evaluation(toy_dataset, tmp_path, tiny_bert):
    model = build(toy_dataset, tmp_path, tiny_bert)
    split = leave_one_out(toy_dataset)
    batch = model.training_batches(split, 0, np.random.default_rng(0), 4)[0]
    mentioned = set(np.unique(np.concatenate([batch[0].ravel(), batch[1].ravel(), batch[2]]))) - {0}
    assert len(mentioned) < toy_dataset.n_items
    seen = []
    item_llm = model.module.item_llm
    hook = item_llm.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    before = model.module.item_token.detach().clone()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.module.train()
    model.loss(batch).backward()
    optimizer.step()
    assert seen == [len(mentioned)]  # one Item LLM call, on exactly the batch's distinct items
    assert not torch.equal(model.module.item_token, before)  # the learnable [ITEM] embedding trained
    seen.clear()
    evaluate(model, split.test_histories, split.test_targets, batch_size=8)  # 8 batches
    evaluate(model, split.valid_histories, split.valid_targets, batch_size=8)
    assert model.item_table_computations == 1 and sum(seen) == toy_dataset.n_items
    model.module.load_state_dict(model.module.state_dict())  # as the trainer restoring weights
    model.score(model.prepare(split.test_histories[:2]))
    assert model.item_table_computations == 2
    hook.remove()


def test_end_to_end_training_lowers_the_loss(toy_dataset, tmp_path, tiny_bert):
    model = build(toy_dataset, tmp_path, tiny_bert)
    split = leave_one_out(toy_dataset)
    result = Trainer({**TRAIN, "epochs": 6, "lr": 3e-3}, EVAL, seed=0, progress=False).fit(model, split)
    losses = [h["loss"] for h in result["history"]]
    assert np.mean(losses[-2:]) < 0.5 * losses[0], losses
    assert result["best_valid"]["recall@10"] > 0.4


def test_config_errors(toy_dataset, tmp_path, tiny_bert):
    from benchmarks.config import ConfigError

    with pytest.raises(ConfigError, match="item_llm_training"):
        build(toy_dataset, tmp_path, tiny_bert, item_llm_training="half")
    with pytest.raises(ConfigError, match="negatives"):
        build(toy_dataset, tmp_path, tiny_bert, num_negatives=0, in_batch_negatives=False)
    with pytest.raises(ConfigError, match="causal"):  # a bidirectional encoder's text states depend on [ITEM]
        build(toy_dataset, tmp_path, tiny_bert, item_llm_training="frozen_cached")


# ----------------------------------------------------------------------------- cold start


def test_hold_out_removes_items_from_training_only(toy_dataset):
    full = leave_one_out(toy_dataset)
    split = hold_out_items(full, 0.2, seed=3)
    held = split.held_out_items
    assert len(held) == round(0.2 * toy_dataset.n_items) and len(np.unique(held)) == len(held)
    assert np.array_equal(held, hold_out_items(full, 0.2, seed=3).held_out_items)  # seeded
    assert not np.array_equal(held, hold_out_items(full, 0.2, seed=4).held_out_items)
    for user in range(split.n_users):
        assert not np.isin(split.train[user], held).any()
        assert not np.isin(split.valid_histories[user], held).any()
        # the rest of the training sequence is unchanged, in order
        assert list(split.train[user]) == [i for i in full.train[user] if i not in held]
    assert np.array_equal(split.test_targets, full.test_targets)
    assert np.array_equal(split.valid_targets, full.valid_targets)
    assert all(np.array_equal(a, b) for a, b in zip(split.test_histories, full.test_histories))
    assert np.isin(split.test_targets, held).any()  # some users have a held-out target


def test_hllm_never_trains_on_held_out_items_and_scores_them(toy_dataset, tmp_path, tiny_bert):
    split = hold_out_items(leave_one_out(toy_dataset), 0.2, seed=0)
    held = split.held_out_items
    model = build(toy_dataset, tmp_path, tiny_bert, item_llm_training="frozen")
    for epoch in range(3):
        for inputs, targets, negatives in model.training_batches(split, epoch, np.random.default_rng(epoch), 16):
            assert not np.isin(inputs, held).any() and not np.isin(targets, held).any()
            assert not np.isin(negatives, held).any()
    Trainer({**TRAIN, "epochs": 2}, EVAL, seed=0, progress=False).fit(model, split)
    cold = np.flatnonzero(np.isin(split.test_targets, held))
    scores = model.score(model.prepare([split.test_histories[u] for u in cold]))[:, torch.from_numpy(held)]
    assert torch.isfinite(scores).all()
    assert scores.std(dim=1).min() > 1e-4  # held-out items get scores that differ from each other
    assert scores.std(dim=0).max() > 1e-4  # and that depend on the user


def test_runner_records_the_cold_start_users(tmp_path, toy_ml1m, tiny_bert):
    import run_all
    from benchmarks import records as recmod

    exp = tmp_path / "cold.yaml"
    exp.write_text(
        "description: toy cold start\n"
        "datasets: [ml-1m]\n"
        "config: {split: {holdout_items: 0.2}, train: {epochs: 2, batch_size: 16},"
        " latency: {max_batches: 1, warmup_batches: 1, batch_size: 8}}\n"
        "runs:\n"
        "  MostPopular: {model: {name: most_popular}}\n"
        f"  HLLM: {{model: {{name: hllm, item_llm: '{tiny_bert}', user_llm: '{tiny_bert}', item_max_length: 16,"
        f" item_llm_training: frozen, num_negatives: 16, item_cache_dir: '{tmp_path / 'vectors'}'}}}}\n"
    )
    assert run_all.main(["--experiments", str(exp), "--dataset", "ml-1m", "--data-path", str(toy_ml1m),
                         "--results-dir", str(tmp_path / "results"), "--reports-dir", str(tmp_path / "reports"),
                         "-o", f"data.cache_dir={tmp_path / 'cache'}", "--quiet"]) == 0
    folder = tmp_path / "results" / "cold" / "ml-1m"
    pop = json.loads((folder / "MostPopular__seed0.json").read_text())
    rec = json.loads((folder / "HLLM__seed0.json").read_text())
    held = set(rec["cold_start"]["held_out_items"])
    assert pop["cold_start"]["held_out_items"] == rec["cold_start"]["held_out_items"]  # same seeded items
    per_user = recmod.read_per_user(folder / "HLLM__seed0.json")
    n = rec["cold_start"]["n_users"]
    assert 0 < n < 60 and per_user["rank"].shape == (n,) and "cold start" in rec["evaluation"]["users"]
    assert np.isclose(per_user["recall@20"].mean(), rec["metrics"]["recall@20"])
    # these users' targets are exactly the held-out ones
    from benchmarks.data import load_dataset
    dataset = load_dataset(rec["config"]["data"], verbose=False)
    targets = [dataset.sequences[u][-1] for u in per_user["user_index"].astype(int)]
    assert set(targets) <= held
    # popularity never counted a held-out item: it ranks them last, behind every trained item
    assert pop["metrics"]["recall@20"] == 0.0 and pop["cold_start"]["metrics_other_users"]["recall@20"] > 0
    assert set(rec["cold_start"]["metrics_all_users"]) == set(rec["metrics"])
