"""E4SRec on tiny random backbones: only LoRA adapters (on the feed-forward layers) train inside the
LLM, the prompt layout (instruction, items, response; padding moved to the end), every prefix in
one pass of a causal LLM equal to one pass per prefix, encoder and decoder LLMs, SASRec item
embeddings from RecBole mapped to our item ids (trained, reused, refused when the data differ),
and the trainable-parameter count in the result."""
import json

import numpy as np
import pytest
import torch

from baselines.e4srec import find_sasrec_checkpoints, recbole_item_index, sasrec_item_embeddings
from benchmarks import config as cfgmod
from benchmarks.config import ConfigError
from benchmarks.models import build_model
from benchmarks.split import hold_out_items, leave_one_out
from benchmarks.training import Trainer
from tests.conftest import write_ml1m

# RecBole 1.2.1 trips pandas 2.x deprecation warnings in its own code; they are not ours.
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning"),
              pytest.mark.usefixtures("one_thread")]

TRAIN = {"epochs": 3, "batch_size": 16, "lr": 1e-3, "adam_eps": 1e-6, "weight_decay": 0.0,
         "warmup_ratio": 0.0, "lr_schedule": "constant", "max_grad_norm": None, "patience": 10,
         "eval_every": 1, "valid_metric": "recall@10", "max_minutes": None, "precision": "fp32"}
EVAL = {"ks": [10, 20], "mask_history": True, "batch_size": 64}
SMALL_SASREC = {"hidden_size": 16, "n_layers": 1, "n_heads": 1, "inner_size": 32}




def build(dataset, tmp_path, llm, **params):
    section = {"name": "e4srec", "llm": llm, "lora_r": 4, "lora_alpha": 8, "max_seq_length": 8,
               "run_dir": str(tmp_path / "runs"), "sasrec_config": SMALL_SASREC, "sasrec_epochs": 1}
    section.update(params)
    torch.manual_seed(0)
    return build_model(section, dataset, torch.device("cpu"))


def with_random_ids(model, width=16):
    torch.manual_seed(1)
    ids = torch.randn(model.n_items + 1, width)
    ids[0] = 0
    model.build_module(ids)
    return model


def sasrec_trainer(epochs=1):
    defaults = cfgmod.defaults()
    return Trainer(dict(defaults["train"], epochs=epochs, batch_size=16), EVAL, seed=0, progress=False)


def test_lora_adapters_are_the_only_trainable_llm_weights(toy_dataset, tmp_path, tiny_bert):
    model = with_random_ids(build(toy_dataset, tmp_path, tiny_bert))
    net = model.module
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable if n.startswith("llm."))
    assert {n.split(".")[0] for n in trainable} == {"llm", "input_projection", "item_output_projection"}
    assert not net.item_id_embeddings.weight.requires_grad
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    split = leave_one_out(toy_dataset)
    batch = model.training_batches(split, 0, np.random.default_rng(0), 16)[0]
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    net.train()
    for _ in range(2):  # LoRA's B starts at zero: A moves from the second step on
        optimizer.zero_grad()
        model.loss(batch).backward()
        optimizer.step()
    moved = {n for n, p in net.named_parameters() if not torch.equal(before[n], p)}
    assert moved == trainable  # every trainable weight moved and nothing else did
    # the count the record gets: LoRA on the feed-forward layers of 2 layers, intermediate (32 -> 64:
    # A r x 32, B 64 x r) and output (64 -> 32: A r x 64, B 32 x r); no bias on the output projection
    counts = model.parameter_counts()
    assert counts["lora"] == 2 * (4 * 32 + 64 * 4 + 4 * 64 + 32 * 4)
    assert counts["input_projection"] == 16 * 32 + 32
    assert counts["item_output_projection"] == 32 * (toy_dataset.n_items + 1)
    assert counts["trainable"] == counts["lora"] + counts["input_projection"] + counts["item_output_projection"]
    assert counts["llm_frozen"] > 10 * counts["lora"]


def test_prompt_is_instruction_items_response_with_padding_at_the_end(toy_dataset, tmp_path, tiny_bert):
    model = with_random_ids(build(toy_dataset, tmp_path, tiny_bert))
    net = model.module.eval()
    words = net.llm.get_input_embeddings()
    items, mask = model.prepare([np.array([5, 6]), np.array([7, 8, 9, 10])])
    inputs, real = net.prompt(items, mask)
    n_instruction, n_response = len(model.instruction_ids), len(model.response_ids)
    assert real.sum(1).tolist() == [n_instruction + 2 + n_response, n_instruction + 4 + n_response]
    assert real[0, : real[0].sum()].all() and not real[0, real[0].sum():].any()  # padding last
    with torch.no_grad():
        assert torch.allclose(inputs[0, :n_instruction], words(model.instruction_ids))
        assert torch.allclose(inputs[0, n_instruction : n_instruction + 2],
                              net.input_projection(net.item_id_embeddings(torch.tensor([5, 6]))))
        assert torch.allclose(inputs[0, n_instruction + 2 : n_instruction + 2 + n_response], words(model.response_ids))
    assert model.input_length([np.arange(1, 4)])[0] == n_instruction + 3 + n_response


@pytest.mark.parametrize("backbone", ["tiny_bert", "tiny_llama"])
def test_scores_do_not_depend_on_padding_for_encoder_and_decoder(toy_dataset, tmp_path, backbone, request):
    model = with_random_ids(build(toy_dataset, tmp_path, request.getfixturevalue(backbone)))
    model.module.eval()
    short, long = toy_dataset.sequences[0][:3], toy_dataset.sequences[1][:8]
    with torch.no_grad():
        alone = model.score(model.prepare([short]))
        padded = model.score(model.prepare([short, long]))
    assert alone.shape == (1, toy_dataset.n_items + 1) and torch.isinf(alone[0, 0])
    assert torch.allclose(alone[0, 1:], padded[0, 1:], atol=1e-5)
    assert not torch.allclose(padded[0, 1:], padded[1, 1:])
    assert model.describe()["lora"]["target_modules"] == (
        ["down_proj", "gate_proj", "up_proj"] if backbone == "tiny_llama" else [r".*layer\.\d+\.(intermediate|output)\.dense"])


def test_mean_pooling_option_and_config_errors(toy_dataset, tmp_path, tiny_bert):
    model = with_random_ids(build(toy_dataset, tmp_path, tiny_bert, pooling="mean", lora_target_modules=["query"]))
    assert model.score(model.prepare(toy_dataset.sequences[:2])).shape == (2, toy_dataset.n_items + 1)
    assert model.describe()["lora"]["target_modules"] == ["query"]
    with pytest.raises(ConfigError, match="pooling"):
        build(toy_dataset, tmp_path, tiny_bert, pooling="max")


@pytest.fixture(scope="module")
def trained_sasrec(tmp_path_factory, tiny_bert):
    """E4SRec whose SASRec was trained here through RecBoleModel (1 epoch of a small SASRec)."""
    from benchmarks.data import load_dataset

    root = tmp_path_factory.mktemp("e4srec")
    data = {"name": "toy", "source": "ml-1m", "path": str(write_ml1m(root / "toy-ml1m")), "files": {}, "k_core": 5,
            "repeats": "first", "text_template": None, "missing_text": "Item {item_id}", "encoding": None,
            "cache_dir": str(root / "cache"), "paper_name": None}
    dataset = load_dataset(data, verbose=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build(dataset, root, tiny_bert, sasrec_source="train")
        result = model.fit(leave_one_out(dataset), Trainer({**TRAIN, "epochs": 2}, EVAL, seed=0, progress=False))
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "dataset": dataset, "model": model, "result": result}


def test_sasrec_embeddings_are_mapped_to_our_item_ids(trained_sasrec):
    from baselines.recbole.data import recbole_config, recbole_dataset, write_atomic_files
    from baselines.recbole.compat import import_recbole, load_checkpoint

    model, result, dataset = trained_sasrec["model"], trained_sasrec["result"], trained_sasrec["dataset"]
    info = result["sasrec"]
    assert info["source"] == "trained" and info["epochs"] == 1
    assert info["recbole_settings"]["hidden_size"] == 16
    # RecBole's own token -> id table, from its dataset of the same atomic files
    folder = trained_sasrec["root"] / "independent"
    write_atomic_files(dataset, folder, "suite_data")
    rb = recbole_dataset(recbole_config("SASRec", folder, "suite_data"))
    token_id = rb.field2token_id["item_id"]
    import_recbole()
    checkpoint = load_checkpoint(info["checkpoint"], trained_sasrec["root"] / "runs")
    table = checkpoint["state_dict"]["item_embedding.weight"]
    internal = [token_id[str(i)] for i in range(1, dataset.n_items + 1)]
    assert internal != list(range(1, dataset.n_items + 1))  # RecBole's ids really differ from ours
    ours = model.module.item_id_embeddings.weight
    assert torch.equal(ours[1:], table[internal].float()) and torch.all(ours[0] == 0)
    assert list(recbole_item_index(dataset, folder, torch.device("cpu"))[1:]) == internal


def test_result_records_trainable_parameters_and_training(trained_sasrec):
    model, result = trained_sasrec["model"], trained_sasrec["result"]
    assert result["epochs"] == 2
    # the best validation is the best epoch's, and the model keeps that epoch's weights
    validated = {entry["epoch"]: entry["valid"]["recall@10"] for entry in result["history"] if "valid" in entry}
    assert result["best_valid"]["recall@10"] == max(validated.values()) == validated[result["best_epoch"]]
    again = Trainer(TRAIN, EVAL, seed=0, progress=False).validate(model, leave_one_out(trained_sasrec["dataset"]))
    assert again["recall@10"] == pytest.approx(result["best_valid"]["recall@10"])
    assert result["trainable_parameters"] == result["parameter_counts"]["trainable"] > 0
    assert result["parameter_counts"]["lora"] < result["parameter_counts"]["llm_frozen"]
    assert result["seconds"] >= result["llm_stage_seconds"]
    described = model.describe()
    assert described["trainable_parameters"] == result["trainable_parameters"]
    assert described["sasrec"]["source"] == "trained" and "LoRA r=4" in described["backbones"]
    json.dumps(result)
    json.dumps(described)


class _ResumedTrainer:
    """A shared loop that says its run trained 1,000 s over earlier sittings and this one."""

    def fit(self, model, split):
        return {"epochs": 3, "seconds": 1000.0, "history": []}


def test_seconds_of_a_resumed_run_count_every_sitting(trained_sasrec, monkeypatch):
    from baselines.e4srec import model as e4srec_model

    model = trained_sasrec["model"]
    table = model.module.item_id_embeddings.weight.detach().clone()
    monkeypatch.setattr(e4srec_model, "sasrec_item_embeddings", lambda *a, **k: (table, {"source": "reused (auto)"}))
    result = model.fit(leave_one_out(trained_sasrec["dataset"]), _ResumedTrainer())
    assert result["llm_stage_seconds"] == 1000.0 and 1000.0 <= result["seconds"] < 1060.0


def test_auto_and_path_reuse_the_checkpoint_of_the_same_data_only(trained_sasrec, tiny_bert, tmp_path):
    from benchmarks.data import load_dataset

    root, dataset = trained_sasrec["root"], trained_sasrec["dataset"]
    trained = trained_sasrec["model"].module.item_id_embeddings.weight
    found = find_sasrec_checkpoints(dataset, root / "runs")
    assert [str(p) for p in found] == [trained_sasrec["result"]["sasrec"]["checkpoint"]]
    for source, how in (("auto", "reused (auto)"), (str(found[0]), "checkpoint given")):
        model = build(dataset, root, tiny_bert, sasrec_source=source)
        embeddings, info = sasrec_item_embeddings(model.params, dataset, model.device, leave_one_out(dataset), None)
        assert info["source"] == how and info["checkpoint"] == str(found[0])
        assert torch.equal(embeddings[1:], trained[1:])  # row 0 (padding) is zeroed by build_module
    # another dataset (other users' walks) never picks this checkpoint up, and refuses it by path
    other_data = {"name": "toy", "source": "ml-1m", "path": str(write_ml1m(tmp_path / "other", seed=5)), "files": {},
                  "k_core": 5, "repeats": "first", "text_template": None, "missing_text": "Item {item_id}",
                  "encoding": None, "cache_dir": str(tmp_path / "cache"), "paper_name": None}
    other = load_dataset(other_data, verbose=False)
    assert find_sasrec_checkpoints(other, root / "runs") == []
    with pytest.raises(ConfigError, match="other data"):
        model = build(other, root, tiny_bert, sasrec_source=str(found[0]))
        sasrec_item_embeddings(model.params, other, model.device, leave_one_out(other), None)
    with pytest.raises(ConfigError, match="not a RecBole checkpoint"):
        model = build(other, root, tiny_bert, sasrec_source=str(tmp_path / "missing.pth"))
        sasrec_item_embeddings(model.params, other, model.device, None, None)


def test_auto_prefers_the_checkpoint_of_the_same_seed(trained_sasrec, tmp_path):
    import os
    import shutil

    from baselines.recbole.compat import import_recbole, load_checkpoint

    runs = tmp_path / "runs"
    shutil.copytree(trained_sasrec["root"] / "runs", runs)
    (seed0,) = find_sasrec_checkpoints(trained_sasrec["dataset"], runs)
    other = runs / "toy-SASRec-seed7"  # a newer run of the same data with another seed
    shutil.copytree(seed0.parent.parent, other)
    seed7 = other / "checkpoints" / seed0.name
    import_recbole()
    checkpoint = load_checkpoint(seed7, other)
    checkpoint["config"]["seed"] = 7
    torch.save(checkpoint, seed7)
    os.utime(seed7, (seed0.stat().st_mtime + 60,) * 2)
    assert find_sasrec_checkpoints(trained_sasrec["dataset"], runs) == [seed7, seed0]  # newest first
    assert find_sasrec_checkpoints(trained_sasrec["dataset"], runs, seed=0) == [seed0, seed7]
    assert find_sasrec_checkpoints(trained_sasrec["dataset"], runs, seed=7) == [seed7, seed0]


def test_cold_start_split_is_refused(toy_dataset, tmp_path, tiny_bert):
    model = build(toy_dataset, tmp_path, tiny_bert)
    with pytest.raises(ConfigError, match="cold start"):
        model.fit(hold_out_items(leave_one_out(toy_dataset), 0.1, seed=0), None)


def test_every_prefix_in_one_pass_equals_one_pass_per_prefix(toy_dataset, tmp_path, tiny_llama):
    """On a causal LLM a user's prefixes are scored in one pass (the response once per prefix, each
    copy seeing only its prefix); the scores and the loss equal those of one prompt per prefix."""
    model = with_random_ids(build(toy_dataset, tmp_path, tiny_llama, lora_r=2, lora_alpha=2))
    assert model.one_pass and model.params.strategy == "prefixes"
    model.module.eval()
    split = leave_one_out(toy_dataset)
    items, targets = model.training_batches(split, 0, np.random.default_rng(0), 4)[0]
    lengths = (items > 0).sum(1)
    assert (lengths == (targets > 0).sum(1)).all() and lengths.max() == 8  # the window's last 8 targets
    with torch.no_grad():
        one_pass = model.module.prefix_logits(torch.from_numpy(items), lengths.tolist())
        for row in range(len(items)):
            prefixes = [items[row, :t] for t in range(1, lengths[row] + 1)]
            each = model.score(model.prepare(prefixes))
            assert torch.allclose(one_pass[row, :lengths[row], 1:], each[:, 1:], atol=1e-4)
        fused = model.loss((items, targets))
        model.one_pass = False
        assert torch.allclose(model.loss((items, targets)), fused, atol=1e-5)
    # every target is the item after its prefix: the batch is the user's own window
    for row in range(len(items)):
        n = lengths[row]
        assert (targets[row, : n - 1] == items[row, 1:n]).all()
