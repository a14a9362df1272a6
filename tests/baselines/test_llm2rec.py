"""LLM2Rec on the tiny random Llama (a GGUF-converted decoder, never real weights): bidirectional
attention through a 4D mask, the CSFT and MNTP batches, the SimCSE loss falling, the stage and
item-table caches (hit without recomputing, invalidated by a changed setting or other data), the
downstream SASRec over the frozen table, a stage cut mid-way and resumed from its checkpoint, and
the whole model through the shared runner."""
import json
import shutil

import numpy as np
import pytest
import torch

from baselines.llm2rec import LLM2RecSASRec, item_embeddings, pipeline, stages
from baselines.llm2rec.checkpoint import StageCheckpoint, checkpoint_file
from benchmarks import backbones
from benchmarks.models import build_model
from benchmarks.split import leave_one_out
from benchmarks.tensors import bidirectional_attention_mask

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_STAGES = {"csft_steps": 2, "csft_batch_size": 4, "csft_warmup_steps": 1, "mntp_steps": 2, "mntp_batch_size": 4,
               "simcse_steps": 2, "simcse_batch_size": 4, "simcse_warmup_steps": 1, "item_max_length": 16,
               "csft_max_history": 3, "llm_precision": "fp32", "embed_batch_size": 16}


def build(dataset, tmp_path, llm, **params):
    section = {"name": "llm2rec", "llm": llm, "cache_dir": str(tmp_path / "llm2rec"), "hidden_size": 16,
               "inner_size": 32, "max_seq_length": 6, **TINY_STAGES, **params}
    torch.manual_seed(0)
    return build_model(section, dataset, torch.device("cpu"))


def test_bidirectional_mask_lets_position_0_see_later_tokens(tiny_llama):
    llm = backbones.load_encoder(tiny_llama).eval()
    ids = torch.tensor([[40, 41, 42, 43, 44]])
    changed = ids.clone()
    changed[0, 2] = 90
    real = torch.tensor([[True, True, True, True, False]])  # the last position is padding
    with torch.no_grad():
        def first(x, mask):
            return llm(input_ids=x, attention_mask=mask).last_hidden_state[0, 0]
        bidirectional = bidirectional_attention_mask(real, llm.dtype)
        assert (first(ids, bidirectional) - first(changed, bidirectional)).abs().max() > 1e-4
        causal = real.long()  # the decoder's own (causal) attention
        assert torch.allclose(first(ids, causal), first(changed, causal), atol=1e-6)
        padded = ids.clone()
        padded[0, 4] = 91  # a padding token is never attended to
        assert torch.allclose(first(ids, bidirectional), first(padded, bidirectional), atol=1e-6)


def test_csft_batch_puts_the_loss_on_the_next_title_only(tiny_llama):
    tokenizer = backbones.load_tokenizer(tiny_llama)
    titles = ["", "Alpha (1990)", "Beta", "Gamma Ray"]
    samples = stages.csft_samples([np.array([1, 2, 3])], max_history=5)
    assert [(list(h), t) for h, t in samples] == [([1], 2), ([1, 2], 3)]
    batch = stages.csft_batch(tokenizer, titles, samples, max_length=64)
    row = batch["input_ids"][1][batch["real"][1]].tolist()
    assert tokenizer.decode(row[:-1]) == "Alpha (1990), Beta" + "Gamma Ray\n" and row[-1] == tokenizer.eos_token_id
    labelled = batch["labels"][1][batch["labels"][1] != stages.IGNORE].tolist()
    assert tokenizer.decode(labelled[:-1]) == "Gamma Ray\n" and labelled[-1] == tokenizer.eos_token_id
    assert (batch["labels"][~batch["real"]] == stages.IGNORE).all()
    cut = stages.csft_batch(tokenizer, titles, samples, max_length=8)  # cut from the left: the target stays
    assert cut["input_ids"].shape[1] == 8 and cut["labels"][1, -1] == tokenizer.eos_token_id


def test_mntp_masks_only_ordinary_tokens_and_its_loss_is_finite(tiny_llama):
    tokenizer = backbones.load_tokenizer(tiny_llama)
    lm = backbones.load_decoder(tiny_llama)
    rows = stages.tokenize_titles(tokenizer, ["Alpha Beta Gamma (1995)", "Delta"] * 8, 32)
    special = set(tokenizer.all_special_ids) | {stages.pad_id(tokenizer)}
    batch = stages.mntp_batch(rows, probability=0.5, mask_id=stages.mask_token_id(tokenizer), vocab_size=lm.config.vocab_size,
                              special=special, pad=stages.pad_id(tokenizer), rng=np.random.default_rng(0))
    chosen = batch["labels"] != stages.IGNORE
    assert chosen.any() and not (chosen & ~batch["real"]).any()
    assert (batch["input_ids"][chosen] == stages.mask_token_id(tokenizer)).float().mean() > 0.5  # about 80%
    assert torch.isfinite(stages.mntp_loss(lm, batch))


def test_simcse_loss_falls_on_a_toy_batch(tiny_llama):
    tokenizer = backbones.load_tokenizer(tiny_llama)
    encoder = backbones.load_encoder(tiny_llama, dropout=0.2)
    titles = ["Toy Story (1995)", "Heat (1995)", "Casino (1995)", "Babe (1995)", "Se7en (1995)", "Fargo (1996)"]
    batch = stages.pad_rows(stages.tokenize_titles(tokenizer, titles, 16), stages.pad_id(tokenizer))

    def loss():
        torch.manual_seed(0)  # the same dropout draws before and after
        return stages.simcse_loss(encoder, batch["input_ids"], batch["real"], scale=10.0)

    encoder.train()
    before = loss().item()
    info = stages.run_steps(encoder, lambda step: loss(), steps=6, lr=3e-3, warmup_steps=0, precision="fp32",
                            device=torch.device("cpu"), desc="simcse")
    encoder.train()
    assert info["steps"] == 6 and loss().item() < before


def test_item_table_cache_hits_and_invalidates(toy_dataset, tmp_path, tiny_llama, monkeypatch):
    trained = []
    real_stage = pipeline._train_stage
    monkeypatch.setattr(pipeline, "_train_stage", lambda stage, *a, **k: trained.append(stage) or real_stage(stage, *a, **k))
    split = leave_one_out(toy_dataset)
    model = build(toy_dataset, tmp_path, tiny_llama)
    table, info = item_embeddings(model.params, toy_dataset, split.train, torch.device("cpu"))
    assert trained == ["csft", "mntp", "simcse"] and info["embeddings_cache"] == "miss"
    assert table.shape == (toy_dataset.n_items + 1, 32) and (table[0] == 0).all() and table[1:].norm(dim=1).min() > 0
    assert {info["stage_facts"][s]["steps"] for s in ("csft", "mntp", "simcse")} == {2}
    for stage in ("csft", "mntp", "simcse"):  # each stage's LLM on disk, as safetensors
        assert list(pipeline.stage_folder(model.params, toy_dataset, stage, info["keys"][stage]).glob("*.safetensors"))

    again, info2 = item_embeddings(model.params, toy_dataset, split.train, torch.device("cpu"))
    assert trained == ["csft", "mntp", "simcse"] and info2["embeddings_cache"] == "hit" and torch.equal(again, table)
    assert info2["stage_facts"]["csft"]["cache"] == "hit" and info2["stage_facts"]["csft"]["steps"] == 2

    # a SimCSE setting: CSFT and MNTP come from their folders, SimCSE and the table are redone
    changed = build(toy_dataset, tmp_path, tiny_llama, simcse_lr=1e-3).params
    other, info3 = item_embeddings(changed, toy_dataset, split.train, torch.device("cpu"))
    assert trained == ["csft", "mntp", "simcse", "simcse"] and info3["embeddings_cache"] == "miss"
    assert info3["keys"]["mntp"] == info["keys"]["mntp"] and info3["keys"]["simcse"] != info["keys"]["simcse"]
    assert not torch.equal(other, table)
    # other training sequences (the same dataset with a user's training items cut): all redone
    fewer = [seq[:-1] if u == 0 else seq for u, seq in enumerate(split.train)]
    assert pipeline.stage_keys(model.params, toy_dataset, fewer)["csft"] != info["keys"]["csft"]
    # a later code version invalidates every stage
    monkeypatch.setattr(pipeline, "CODE_VERSION", "llm2rec-test")
    assert pipeline.stage_keys(model.params, toy_dataset, split.train)["csft"] != info["keys"]["csft"]


def test_simcse_trains_the_input_embeddings_of_a_model_that_ties_them_to_its_head(toy_dataset, tmp_path, tiny_llama):
    """SmolLM2 ties its input embeddings to its LM head; SimCSE (no LM head in its loss) must still
    train them, as llm2vec trains the whole encoder (freezing the head froze them)."""
    params = build(toy_dataset, tmp_path, tiny_llama, stages=["simcse"]).params
    lm = backbones.load_decoder(tiny_llama)
    lm.lm_head.weight = lm.model.embed_tokens.weight  # tied, as SmolLM2's
    before = lm.model.embed_tokens.weight.detach().clone()
    pipeline._train_stage("simcse", lm, backbones.load_tokenizer(tiny_llama), params, toy_dataset,
                          leave_one_out(toy_dataset).train, torch.device("cpu"), False)
    assert not torch.equal(lm.model.embed_tokens.weight, before)


class Cut(Exception):
    """The call's time limit, simulated: raised right after a checkpoint is written."""


def stage_run(dataset, tmp_path, llm, stage, cache: str, *, minutes=None, cut_at=None, **params):
    """One stage of 4 steps trained on the tiny Llama into its own cache folder; with cut_at, the
    call ends (Cut) right after the checkpoint at that step is saved."""
    p = build(dataset, tmp_path / cache, llm, stages=[stage], **{f"{stage}_steps": 4}, **params).params
    split = leave_one_out(dataset)
    keys = pipeline.stage_keys(p, dataset, split.train)
    real_save = StageCheckpoint.save

    def save_then_cut(self, *args, step, **kwargs):
        real_save(self, *args, step=step, **kwargs)
        if step == cut_at:
            raise Cut

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StageCheckpoint, "save", save_then_cut)
        _, lm, facts = pipeline.fine_tuned_llm(p, dataset, split.train, keys, torch.device("cpu"),
                                               checkpoint_minutes=minutes)
    return lm, facts[stage], checkpoint_file(pipeline.stage_folder(p, dataset, stage, keys[stage]))


@pytest.mark.parametrize("stage", ["csft", "mntp", "simcse"])
def test_a_stage_cut_mid_way_resumes_to_the_uninterrupted_state(toy_dataset, tmp_path, tiny_llama, stage):
    """A stage saving every step (checkpoint_minutes 0) and cut after 2 of its 4 steps, then called
    again, ends with the weights and losses of one uninterrupted sitting (the same batches, masks
    and dropout); its checkpoint is gone once the stage is cached, and the facts count 2 sittings."""
    whole, whole_facts, _ = stage_run(toy_dataset, tmp_path, tiny_llama, stage, "whole")
    with pytest.raises(Cut):
        stage_run(toy_dataset, tmp_path, tiny_llama, stage, "cut", minutes=0, cut_at=2)
    resumed, facts, saved = stage_run(toy_dataset, tmp_path, tiny_llama, stage, "cut", minutes=0)
    torch.testing.assert_close(resumed.state_dict(), whole.state_dict(), rtol=0, atol=0)
    assert facts["loss_curve"] == whole_facts["loss_curve"] and len(facts["loss_curve"]) == 4
    assert facts["sittings"] == 2 and whole_facts["sittings"] == 1 and facts["steps"] == 4
    assert not saved.exists() and (saved.with_name(saved.name.removesuffix(".checkpoint.safetensors")) / pipeline.MANIFEST).is_file()


def test_a_checkpoint_of_another_setting_is_not_resumed(toy_dataset, tmp_path, tiny_llama):
    with pytest.raises(Cut):
        stage_run(toy_dataset, tmp_path, tiny_llama, "csft", "c", minutes=0, cut_at=2)
    (old,) = (tmp_path / "c" / "llm2rec").glob("*.checkpoint.safetensors")
    _, facts, _ = stage_run(toy_dataset, tmp_path, tiny_llama, "csft", "c", minutes=0, csft_lr=1e-4)
    assert facts["sittings"] == 1 and old.exists()  # another key: its own file, the old one untouched
    # even under this setting's name, a file saved for another key starts the stage afresh
    p = build(toy_dataset, tmp_path / "c", tiny_llama, stages=["csft"], csft_steps=4, csft_lr=3e-4).params
    key = pipeline.stage_keys(p, toy_dataset, leave_one_out(toy_dataset).train)["csft"]
    other = StageCheckpoint(old.with_name("renamed.checkpoint.safetensors"), key + "x", 0, None, "cpu")
    shutil.copy(old, other.path)
    assert other.resume(torch.nn.Linear(1, 1), None, None) is None


def test_fit_passes_the_runs_checkpoint_minutes_to_the_stages(toy_dataset, tmp_path, tiny_llama, monkeypatch):
    from baselines.llm2rec import model as llm2rec_model
    from benchmarks.training import Trainer

    heard = []
    monkeypatch.setattr(llm2rec_model, "item_embeddings", lambda *a, **k: heard.append(k["checkpoint_minutes"]) or 1 / 0)
    model = build(toy_dataset, tmp_path, tiny_llama)
    train = {"precision": "fp32"}
    for trainer in (Trainer(train, {}, 0, checkpoint=tmp_path / "ck.pt", checkpoint_minutes=7), Trainer(train, {}, 0)):
        with pytest.raises(ZeroDivisionError):
            model.fit(leave_one_out(toy_dataset), trainer)
    assert heard == [7, None]


def test_seconds_of_a_resumed_downstream_run_count_every_sitting(toy_dataset, tmp_path, tiny_llama, monkeypatch):
    from baselines.llm2rec import model as llm2rec_model

    class ResumedTrainer:  # a shared loop that trained 1,000 s over earlier sittings and this one
        def fit(self, model, split):
            return {"epochs": 3, "seconds": 1000.0, "history": []}

    table = torch.randn(toy_dataset.n_items + 1, 8)
    monkeypatch.setattr(llm2rec_model, "item_embeddings", lambda *a, **k: (table, {"cached": True}))
    result = build(toy_dataset, tmp_path, tiny_llama).fit(leave_one_out(toy_dataset), ResumedTrainer())
    assert result["downstream_seconds"] == 1000.0 and 1000.0 <= result["seconds"] < 1060.0


def test_downstream_sasrec_trains_a_step_and_scores_all_items(toy_dataset, tmp_path, tiny_llama):
    model = build(toy_dataset, tmp_path, tiny_llama)
    torch.manual_seed(1)
    vectors = torch.randn(model.n_items + 1, 24)
    vectors[0] = 0
    model.build_module(vectors)
    net = model.module
    assert isinstance(net, LLM2RecSASRec) and net.adapter.weight.shape == (16, 24)
    assert "item_vectors" not in dict(net.named_parameters()) and "item_vectors" not in net.state_dict()
    split = leave_one_out(toy_dataset)
    batch = model.training_batches(split, 0, np.random.default_rng(0), 16)[0]
    assert batch[0].shape[1] == 6  # the window
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    net.train()
    loss = model.loss(batch)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and all(not torch.equal(before[n], p) for n, p in net.named_parameters() if p.grad is not None)
    assert torch.equal(net.item_vectors, vectors)  # the LLM2Rec table stays frozen
    net.eval()
    histories = [split.test_histories[u] for u in range(5)] + [np.zeros(0, dtype=np.int64)]
    with torch.no_grad():
        scores = model.score(model.prepare(histories))
    assert scores.shape == (6, model.n_items + 1) and torch.isinf(scores[:, 0]).all()
    assert torch.isfinite(scores[:, 1:]).all()  # every item scored, an empty history included


def test_llm2rec_runs_through_the_shared_runner(tmp_path, toy_ml1m, tiny_llama):
    import run_all

    stage_settings = ", ".join(f"{k}: {v}" for k, v in TINY_STAGES.items())
    exp = tmp_path / "toy.yaml"
    exp.write_text(
        "description: toy LLM2Rec\n"
        "datasets: [ml-1m]\n"
        "config: {train: {epochs: 2, batch_size: 32}, latency: {max_batches: 1, warmup_batches: 1, batch_size: 8}}\n"
        "runs:\n"
        f"  LLM2Rec: {{model: {{name: llm2rec, llm: '{tiny_llama}', cache_dir: '{tmp_path / 'llm2rec'}', hidden_size: 16,"
        f" inner_size: 32, {stage_settings}}}}}\n"
    )
    args = ["--experiments", str(exp), "--dataset", "ml-1m", "--data-path", str(toy_ml1m),
            "--results-dir", str(tmp_path / "results"), "--reports-dir", str(tmp_path / "reports"),
            "-o", f"data.cache_dir={tmp_path / 'cache'}", "--quiet"]
    assert run_all.main(args) == 0
    rec = json.loads((tmp_path / "results" / "toy" / "ml-1m" / "LLM2Rec__seed0.json").read_text())
    assert rec["status"] == "ok" and 0.0 <= rec["metrics"]["recall@10"] <= 1.0
    info = rec["model_info"]
    assert info["backbones"].startswith(f"LLM {tiny_llama} (csft 2 steps, mntp 2 steps, simcse 2 steps")
    assert info["llm2rec_stages"]["ran"] == ["csft", "mntp", "simcse"]
    assert info["llm2rec_stages"]["embeddings_cache"] == "miss"
    assert rec["training"]["llm2rec"]["stage_facts"]["simcse"]["steps"] == 2
