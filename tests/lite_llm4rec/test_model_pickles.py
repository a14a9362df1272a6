"""--keep-models saves a trained Lite-LLM4Rec whole (torch.save) for --retime: it must load to the
same model (its item vectors, input transforms and both LLMs' weights)."""
import io

import torch

from benchmarks.split import leave_one_out
from benchmarks.training import Trainer
from tests.lite_llm4rec.test_model import EVAL, TRAIN, build


def test_a_trained_lite_llm4rec_pickles_whole_and_scores_the_same_after_loading(toy_dataset, tmp_path, tiny_bert):
    split = leave_one_out(toy_dataset)
    model = build(toy_dataset, tmp_path, tiny_bert)
    model.fit(split.for_training(), Trainer({**TRAIN, "epochs": 1}, EVAL, seed=0, progress=False))
    model.module.eval()
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    histories = split.test_histories[:5]
    with torch.no_grad():
        assert torch.equal(loaded.score(loaded.prepare(histories)), model.score(model.prepare(histories)))
