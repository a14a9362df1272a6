"""Lite-LLM4Rec on tiny random backbones: pooling, item-vector cache, strategies, ablations,
second stage, training, and clear skips for backbones that are not here."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from benchmarks import backbones
from benchmarks.models import SkipRun, build_model
from benchmarks.split import leave_one_out
from benchmarks.training import Trainer
from lite_llm4rec import item_llm
from benchmarks.tensors import masked_mean
from benchmarks.split import all_samples, sampling_samples

TRAIN = {"epochs": 3, "batch_size": 16, "lr": 1e-3, "adam_eps": 1e-6, "weight_decay": 0.0,
         "warmup_ratio": 0.0, "lr_schedule": "constant", "max_grad_norm": None, "patience": 10,
         "eval_every": 1, "valid_metric": "recall@10", "max_minutes": None, "precision": "fp32"}
EVAL = {"ks": [10, 20], "mask_history": True, "batch_size": 64}


def build(dataset, tmp_path, tiny_bert, **params):
    section = {"name": "lite_llm4rec", "item_llm": tiny_bert, "rec_llm": tiny_bert,
               "item_cache_dir": str(tmp_path / "vectors"), "item_max_length": 16, "dropout": 0.1}
    section.update(params)
    torch.manual_seed(0)
    return build_model(section, dataset, torch.device("cpu"))


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module, prefix):
    after = module.state_dict()
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_masked_mean_ignores_padding():
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = masked_mean(hidden, mask)
    assert torch.allclose(pooled[0], hidden[0, :3].mean(0))
    assert torch.allclose(pooled[1], hidden[1].mean(0))
    hidden[0, 3:] = 1e6  # whatever sits at padded positions does not matter
    assert torch.allclose(masked_mean(hidden, mask)[0], pooled[0])


def test_user_vector_does_not_depend_on_padding_length(toy_dataset, tmp_path, tiny_bert):
    model = build(toy_dataset, tmp_path, tiny_bert)
    model.module.eval()
    short, long = toy_dataset.sequences[0][:4], toy_dataset.sequences[1][:12]
    with torch.no_grad():
        alone = model.score(model.prepare([short]))
        padded = model.score(model.prepare([short, long]))  # short is padded to 12 here
    assert torch.allclose(alone[0], padded[0], atol=1e-5)
    assert torch.isinf(alone[0, 0]) and alone.shape == (1, toy_dataset.n_items + 1)


def test_item_vector_cache_hit_and_invalidation(toy_dataset, tmp_path, tiny_bert, monkeypatch):
    cache = tmp_path / "vectors"
    first, info = item_llm.item_vectors(toy_dataset, tiny_bert, max_length=16, cache_dir=cache, progress=False)
    assert info["cache"] == "miss" and first.shape == (toy_dataset.n_items + 1, 32)
    assert torch.all(first[0] == 0)
    stored = list(cache.glob("*.safetensors"))
    assert len(stored) == 1 and torch.equal(load_file(str(stored[0]))["item_vectors"], first)

    def no_encoding(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(item_llm, "encode_texts", no_encoding)
    again, info = item_llm.item_vectors(toy_dataset, tiny_bert, max_length=16, cache_dir=cache, progress=False)
    assert info["cache"] == "hit" and torch.equal(again, first)
    monkeypatch.undo()
    # another max length, another pooling, other item texts: each recomputes
    _, info = item_llm.item_vectors(toy_dataset, tiny_bert, max_length=8, cache_dir=cache, progress=False)
    assert info["cache"] == "miss"
    _, info = item_llm.item_vectors(toy_dataset, tiny_bert, max_length=16, pooling="pooler", cache_dir=cache, progress=False)
    assert info["cache"] == "miss"
    toy_dataset.item_texts[1] = "a different title"
    changed_text, info = item_llm.item_vectors(toy_dataset, tiny_bert, max_length=16, cache_dir=cache, progress=False)
    assert info["cache"] == "miss" and not torch.equal(changed_text[1], first[1])
    assert len(list(cache.glob("*.safetensors"))) == 4


def test_item_vectors_are_mean_pooled_token_states(toy_dataset, tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    vectors = item_llm.encode_texts(toy_dataset.item_texts[1:3], tiny_bert, max_length=16, progress=False)
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert).eval()
    for row, text in enumerate(toy_dataset.item_texts[1:3]):
        tokens = tokenizer(text, return_tensors="pt", truncation=True, max_length=16)
        with torch.no_grad():
            expected = model(**tokens).last_hidden_state[0].mean(0)
        assert torch.allclose(vectors[row], expected, atol=1e-5)


def test_strategies_use_only_training_targets(toy_dataset):
    split = leave_one_out(toy_dataset)
    rng = np.random.default_rng(0)
    inputs, targets, users = sampling_samples(split.train, 5, rng)
    assert len(targets) == sum(1 for s in split.train if len(s) >= 2)  # one segment per user
    assert users.tolist() == [u for u, s in enumerate(split.train) if len(s) >= 2]
    for user, (inp, tgt) in enumerate(zip(inputs, targets)):
        seq = split.train[user]
        segment = list(inp) + [tgt]
        assert 2 <= len(segment) <= 6
        starts = [i for i in range(len(seq)) if list(seq[i : i + len(segment)]) == segment]
        assert starts, "a sampling sample must be a contiguous segment of the training part"
        assert tgt not in (split.valid_targets[user], split.test_targets[user])
    inputs, targets, users = all_samples(split.train, 5)
    assert len(targets) == sum(len(s) - 1 for s in split.train)
    assert users.tolist() == [u for u, s in enumerate(split.train) for _ in range(1, len(s))]
    position = 0
    for user, seq in enumerate(split.train):
        for t in range(1, len(seq)):
            assert list(inputs[position]) == list(seq[max(0, t - 5) : t]) and targets[position] == seq[t]
            assert targets[position] not in (split.valid_targets[user], split.test_targets[user])
            position += 1


def _one_training_step(model, dataset):
    split = leave_one_out(dataset)
    batch = model.training_batches(split, 0, np.random.default_rng(0), 32)[0]
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.module.train()
    model.loss(batch).backward()
    optimizer.step()


def test_full_model_trains_everything_but_the_item_vectors(toy_dataset, tmp_path, tiny_bert):
    model = build(toy_dataset, tmp_path, tiny_bert)
    before = snapshot(model.module)
    _one_training_step(model, toy_dataset)
    assert changed(before, model.module, "rec_llm.") and changed(before, model.module, "item_projection_head.")
    assert not changed(before, model.module, "item_vectors.")  # frozen in the first stage


def test_fix_rec_llm_freezes_exactly_the_rec_llm(toy_dataset, tmp_path, tiny_bert):
    model = build(toy_dataset, tmp_path, tiny_bert, fix_rec_llm=True)
    assert not any(p.requires_grad for p in model.module.rec_llm.parameters())
    assert all(p.requires_grad for p in model.module.item_projection_head.parameters())
    before = snapshot(model.module)
    _one_training_step(model, toy_dataset)
    assert not changed(before, model.module, "rec_llm.")
    assert changed(before, model.module, "item_projection_head.")


def test_fix_head_freezes_exactly_the_head(toy_dataset, tmp_path, tiny_bert):
    model = build(toy_dataset, tmp_path, tiny_bert, fix_head=True)
    before = snapshot(model.module)
    _one_training_step(model, toy_dataset)
    assert not changed(before, model.module, "item_projection_head.")
    assert changed(before, model.module, "rec_llm.")


def test_scratch_reinitialises_the_rec_llm_only(toy_dataset, tmp_path, tiny_bert):
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(tiny_bert).state_dict()
    full = build(toy_dataset, tmp_path, tiny_bert).module.rec_llm.state_dict()
    scratch_model = build(toy_dataset, tmp_path, tiny_bert, rec_llm_init="scratch")
    scratch = scratch_model.module.rec_llm.state_dict()
    weight = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(full[weight], pretrained[weight])
    assert not torch.equal(scratch[weight], pretrained[weight])
    assert scratch.keys() == pretrained.keys()  # same architecture
    # the Item LLM's vectors are the same pretrained ones either way, up to the one factor that
    # matches them to each encoder's own token embeddings (scale_to_token_embeddings)
    unit = lambda v: torch.nn.functional.normalize(v[1:], dim=1)  # noqa: E731
    assert torch.allclose(unit(scratch_model.module.item_vectors.weight),
                          unit(build(toy_dataset, tmp_path, tiny_bert).module.item_vectors.weight), atol=1e-6)


def test_t5_rec_llm_loads_only_the_encoder_and_mlp_maps_widths(toy_dataset, tmp_path, tiny_bert, tiny_t5):
    from transformers import T5EncoderModel

    model = build(toy_dataset, tmp_path, tiny_bert, rec_llm=tiny_t5)
    assert isinstance(model.module.rec_llm, T5EncoderModel)
    adapter = model.module.item_adapter
    assert isinstance(adapter[0], torch.nn.Linear) and (adapter[0].in_features, adapter[0].out_features) == (32, 24)
    scores = model.score(model.prepare(toy_dataset.sequences[:3]))
    assert scores.shape == (3, toy_dataset.n_items + 1)


@pytest.mark.parametrize("strategy", ["sampling", "all"])
def test_short_training_lowers_the_loss(toy_dataset, tmp_path, tiny_bert, strategy):
    model = build(toy_dataset, tmp_path, tiny_bert, strategy=strategy)
    split = leave_one_out(toy_dataset)
    epochs = 20 if strategy == "sampling" else 4  # sampling sees one segment per user an epoch
    result = Trainer({**TRAIN, "epochs": epochs, "lr": 3e-3}, EVAL, seed=0, progress=False).fit(model, split)
    losses = [h["loss"] for h in result["history"]]
    assert np.mean(losses[-2:]) < losses[0] - 0.1, losses


def test_second_stage_fine_tunes_item_vectors_and_never_ends_worse(toy_dataset, tmp_path, tiny_bert):
    split = leave_one_out(toy_dataset)
    trainer = Trainer({**TRAIN, "epochs": 3, "lr": 3e-3}, EVAL, seed=0, progress=False)
    first_only = build(toy_dataset, tmp_path, tiny_bert, finetune_item_vectors=False)
    initial = first_only.module.item_vectors.weight.detach().clone()
    result1 = first_only.fit(split, trainer)
    assert "stage1" not in result1 and first_only.describe()["stages"] == 1
    assert torch.equal(first_only.module.item_vectors.weight, initial)  # the first stage never moves them

    # two stages (the default), the second at train.lr: the default 2e-5 is for 300-epoch runs
    model = build(toy_dataset, tmp_path, tiny_bert, stage2_epochs=4, stage2_lr=None)
    assert torch.equal(model.module.item_vectors.weight, initial)
    result = model.fit(split, trainer)
    assert result["stage1"]["epochs"] == 3 and result["stage2_epochs"] == 4 and result["epochs"] == 7
    assert result["stage1"]["best_valid"] == result1["best_valid"]  # the same first stage
    # the second stage starts where the first ended (its epoch 0) and never ends below it
    assert result["history"][0]["epoch"] == 0
    assert result["history"][0]["valid"]["recall@10"] == result1["best_valid"]["recall@10"]
    assert result["best_valid"]["recall@10"] >= result1["best_valid"]["recall@10"]
    assert model.module.item_vectors.weight.requires_grad and model.describe()["stages"] == 2
    if result["best_epoch"] > 0:  # a second-stage epoch won: its vectors are not the Item LLM's
        assert not torch.equal(model.module.item_vectors.weight, initial)
    else:
        assert torch.equal(model.module.item_vectors.weight, initial)
    assert result["best_epoch"] > 0  # on the toy cycle, learning the item table helps


def test_second_stage_learning_rate_is_its_own_setting(toy_dataset, tmp_path, tiny_bert, monkeypatch):
    from benchmarks.errors import ConfigError

    split = leave_one_out(toy_dataset)
    seen, real = [], Trainer.fit

    def spy(self, model, split, **kwargs):
        seen.append((self.cfg["lr"], self.cfg["epochs"]))
        return real(self, model, split, **kwargs)

    monkeypatch.setattr(Trainer, "fit", spy)
    trainer = Trainer({**TRAIN, "epochs": 1, "lr": 3e-3}, EVAL, seed=0, progress=False)
    build(toy_dataset, tmp_path, tiny_bert, stage2_epochs=2, stage2_lr=1e-4).fit(split, trainer)
    build(toy_dataset, tmp_path, tiny_bert, stage2_epochs=2, stage2_lr=None).fit(split, trainer)  # null: train.lr
    build(toy_dataset, tmp_path, tiny_bert, stage2_epochs=2).fit(split, trainer)  # the default, chosen on validation
    # the later runs' first stage: from the cache
    assert seen == [(3e-3, 1), (1e-4, 2), (3e-3, 2), (2e-5, 2)]
    with pytest.raises(ConfigError, match="stage2_lr"):
        build(toy_dataset, tmp_path, tiny_bert, stage2_lr=0)


def test_a_finished_first_stage_is_cached_and_the_second_stage_after_it_is_the_same(
        toy_dataset, tmp_path, tiny_bert, monkeypatch):
    """The `_stage1` row leaves its first stage for the two-stage row (lite_llm4rec/stage_cache.py):
    trained once, and the second stage after a cached first stage draws what it would have drawn."""
    split = leave_one_out(toy_dataset)
    trainer = Trainer({**TRAIN, "epochs": 2, "lr": 3e-3}, EVAL, seed=0, progress=False)
    fits, real = [], Trainer.fit

    def spy(self, model, split, **kwargs):
        fits.append(self.cfg["epochs"])
        return real(self, model, split, **kwargs)

    monkeypatch.setattr(Trainer, "fit", spy)
    first = build(toy_dataset, tmp_path, tiny_bert, finetune_item_vectors=False)
    result1 = first.fit(split, trainer)
    assert fits == [2] and "from_cache" not in result1
    [entry] = (tmp_path / "lite_stage1").iterdir()
    assert (entry / "done").is_file() and (entry / "weights.safetensors").is_file()

    heard = []
    cached_trainer = Trainer({**TRAIN, "epochs": 2, "lr": 3e-3}, EVAL, seed=0, progress=False,
                             on_validation=lambda metrics, epoch, seconds: heard.append((epoch, seconds)))
    two = build(toy_dataset, tmp_path, tiny_bert, stage2_epochs=3)
    result2 = two.fit(split, cached_trainer)
    assert fits == [2, 3]  # the first stage came from the cache: only the second trained
    assert result2["stage1"]["from_cache"] == entry.name
    assert result2["stage1"]["best_valid"] == result1["best_valid"]
    # the cached curve reaches a tuning trial's pruner with the seconds it cost, then stage 2's
    assert heard[:2] == [(h["epoch"], h["seconds"]) for h in result1["history"] if "valid" in h]

    # the same two-stage run with no cache to read trains both stages and ends the same
    fresh = build(toy_dataset, tmp_path / "elsewhere", tiny_bert, stage2_epochs=3)
    result3 = fresh.fit(split, trainer)
    assert fits == [2, 3, 2, 3] and "from_cache" not in result3["stage1"]
    assert [h.get("valid") for h in result3["history"]] == [h.get("valid") for h in result2["history"]]
    assert all(torch.equal(a, b) for a, b in zip(snapshot_of(fresh), snapshot_of(two)))

    # another first-stage setting is another key; a second-stage setting is not
    other = build(toy_dataset, tmp_path, tiny_bert, finetune_item_vectors=False, dropout=0.2)
    other.fit(split, trainer)
    assert len(list((tmp_path / "lite_stage1").iterdir())) == 2
    build(toy_dataset, tmp_path, tiny_bert, stage2_epochs=1, stage2_lr=1e-4).fit(split, trainer)
    assert len(list((tmp_path / "lite_stage1").iterdir())) == 2 and fits[-2:] == [2, 1]


def snapshot_of(model):
    return [v for _, v in sorted(model.module.state_dict().items())]


def test_missing_backbone_is_a_clear_skip(toy_dataset, tmp_path, tiny_bert, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SkipRun, match="t5-nonexistent-size.*Hugging Face cache"):
        build(toy_dataset, tmp_path, tiny_bert, rec_llm="t5-nonexistent-size")
    with pytest.raises(backbones.BackboneUnavailable, match="local folder"):
        backbones.load_encoder(str(tmp_path / "not-a-model"))


def test_standardized_item_vectors_keep_padding_zero_and_differences():
    from benchmarks.tensors import standardize_item_vectors

    raw = torch.cat([torch.zeros(1, 8), 5.0 + 0.1 * torch.randn(50, 8)])  # a shared offset
    out = standardize_item_vectors(raw)
    assert torch.all(out[0] == 0)
    assert torch.allclose(out[1:].mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(out[1:].std(0), torch.ones(8), atol=1e-5)
    # an affine map per dimension: the order of items along each dimension is unchanged
    assert torch.equal(out[1:].argsort(0), raw[1:].argsort(0))


def test_item_vectors_are_scaled_to_the_rec_llm_token_embeddings(toy_dataset, tmp_path, tiny_bert):
    scaled = build(toy_dataset, tmp_path, tiny_bert)
    raw = build(toy_dataset, tmp_path, tiny_bert, item_vector_scale="none")
    tokens = scaled.module.rec_llm.get_input_embeddings().weight
    vectors, unscaled = scaled.module.item_vectors.weight, raw.module.item_vectors.weight
    assert torch.isclose(vectors[1:].norm(dim=1).mean(), tokens.norm(dim=1).mean(), rtol=1e-4)
    assert torch.all(vectors[0] == 0)
    # one factor for all items: directions and relative norms are kept
    ratio = vectors[1:].norm(dim=1) / unscaled[1:].norm(dim=1)
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4) and not torch.isclose(ratio[0], torch.tensor(1.0))
    with pytest.raises(Exception, match="item_vector_scale"):
        build(toy_dataset, tmp_path, tiny_bert, item_vector_scale="unit")


def test_item_vector_cache_key_follows_the_weights_content_not_file_times(tmp_path, tiny_bert):
    import os
    import shutil

    from benchmarks.tensors import cache_key

    folder = tmp_path / "copy"
    shutil.copytree(tiny_bert, folder)
    key = cache_key(str(folder), "mean", 16, "data")
    weights = next(folder.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # a reinstall
    assert cache_key(str(folder), "mean", 16, "data") == key
    with open(weights, "r+b") as f:  # other weights under the same name
        f.seek(-8, os.SEEK_END)
        f.write(b"\x01" * 8)
    assert cache_key(str(folder), "mean", 16, "data") != key
    assert cache_key(str(folder), "mean", 16, "other data") != cache_key(str(folder), "mean", 16, "data")


def test_input_transforms_follow_the_rec_llm_positions(toy_dataset, tmp_path, tiny_bert, tiny_t5):
    """A BERT-style Recommendation LLM adds absolute positions, then normalises: the item vectors
    are standardised and scaled to its token embeddings. T5 (relative positions) reads them as
    they are, unless a setting asks."""
    bert = build(toy_dataset, tmp_path, tiny_bert)
    assert bert.describe()["input_transforms"] == ["standardize", "scale to token embeddings"]
    t5 = build(toy_dataset, tmp_path, tiny_bert, rec_llm=tiny_t5)
    assert t5.describe()["input_transforms"] == []
    raw = item_llm.item_vectors(toy_dataset, tiny_bert, max_length=16, pooling="mean", batch_size=64,
                                cache_dir=str(tmp_path / "vectors"), device=torch.device("cpu"))[0]
    assert torch.allclose(t5.module.item_vectors.weight, raw)
    forced = build(toy_dataset, tmp_path, tiny_bert, rec_llm=tiny_t5, item_vector_norm="standardize")
    assert forced.describe()["input_transforms"] == ["standardize"]


def test_rec_llm_dropout_is_the_backbones_own(toy_dataset, tmp_path, tiny_bert, tiny_t5):
    model = build(toy_dataset, tmp_path, tiny_bert, rec_llm_dropout=0.7)
    layers = [m.p for m in model.module.rec_llm.modules() if isinstance(m, torch.nn.Dropout)]
    assert layers and all(p == 0.7 for p in layers)
    assert model.describe()["rec_llm_dropout"] == {"hidden_dropout_prob": 0.7, "attention_probs_dropout_prob": 0.7}
    assert build(toy_dataset, tmp_path, tiny_bert).describe()["rec_llm_dropout"]["hidden_dropout_prob"] == 0.1
    t5 = build(toy_dataset, tmp_path, tiny_bert, rec_llm=tiny_t5, rec_llm_dropout=0.3)
    assert t5.describe()["rec_llm_dropout"] == {"dropout_rate": 0.3}
    assert all(m.p == 0.3 for m in t5.module.rec_llm.modules() if isinstance(m, torch.nn.Dropout))


def test_head_has_no_bias_and_the_softmax_leaves_out_the_users_other_items(toy_dataset, tmp_path, tiny_bert):
    model = build(toy_dataset, tmp_path, tiny_bert)
    assert model.module.item_projection_head.bias is None
    assert build(toy_dataset, tmp_path, tiny_bert, head_bias=True).module.item_projection_head.bias is not None
    split = leave_one_out(toy_dataset)
    batch = model.training_batches(split, 0, np.random.default_rng(0), 8)[0]
    items, targets, users = batch
    mask = model._other_history_items(torch.from_numpy(users), torch.from_numpy(targets))
    for row, (user, target) in enumerate(zip(users, targets)):
        expected = set(split.train[user].tolist()) - {int(target)}
        assert set(torch.nonzero(mask[row]).flatten().tolist()) == expected
        assert not mask[row, split.valid_targets[user]]  # only training items: never the validation target
    model.module.eval()
    masked = model.loss(batch)
    plain = build(toy_dataset, tmp_path, tiny_bert, exclude_history_in_loss=False)
    plain.module.load_state_dict(model.module.state_dict())
    plain.module.eval()
    assert masked < plain.loss(plain.training_batches(split, 0, np.random.default_rng(0), 8)[0])


def test_two_stage_fit_resumes_from_its_stage_checkpoints(toy_dataset, tmp_path, tiny_bert):
    """Both stages leave a final checkpoint: a second fit of the same run (a later sitting) trains
    nothing and ends with the same weights and result."""
    split = leave_one_out(toy_dataset)
    trainer = Trainer({**TRAIN, "epochs": 2}, EVAL, seed=0, progress=False, checkpoint=tmp_path / "ck.pt",
                      checkpoint_minutes=0)
    model = build(toy_dataset, tmp_path, tiny_bert, stage2_epochs=2)
    first = model.fit(split, trainer)
    assert (tmp_path / "ck.pt").is_file() and (tmp_path / "ck.pt.stage2").is_file()
    again = build(toy_dataset, tmp_path, tiny_bert, stage2_epochs=2)
    again.loss = lambda batch: (_ for _ in ()).throw(AssertionError("trained again"))
    second = again.fit(split, trainer)
    assert second["best_valid"] == first["best_valid"] and second["epochs"] == first["epochs"]
    after, before = snapshot(again.module), snapshot(model.module)
    assert all(torch.equal(after[k], before[k]) for k in after)
