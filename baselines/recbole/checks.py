"""Cross-checks of a trained RecBole row against RecBole itself (the tests use them): RecBole's own
split of our data, and RecBole's own evaluator on the trained model."""
from __future__ import annotations

from .compat import outputs_under


def _require_fit(model) -> None:
    if model.module is None or model.config is None:
        raise RuntimeError("fit the model first")


def recbole_split(model) -> dict:
    """RecBole's own train/valid/test rows for this run, in our user indices and item ids:
    {"train": {user: [targets in order]}, "valid"/"test": {users, targets, histories}}."""
    _require_fit(model)
    with outputs_under(model.run_folder):
        _, train_data, valid_data, test_data = model.recbole_data(model.config)
    inter = train_data._dataset.inter_feat
    users = model.index.user_of_token[inter["user_id"].numpy()]
    targets = model.index.from_recbole[inter["item_id"].numpy()]
    train: dict[int, list[int]] = {}
    for u, t in zip(users.tolist(), targets.tolist()):
        train.setdefault(u, []).append(t)
    return {"train": train, "valid": model.index.rows(valid_data), "test": model.index.rows(test_data)}


def recbole_evaluate(model) -> dict:
    """RecBole's own evaluator on the trained model, valid and test (12 decimals instead of
    RecBole's 4). For sequential models RecBole's full-sort evaluation does not mask history:
    `Trainer._full_sort_batch_eval` gets `history_index=None` from FullSortEvalDataLoader, so
    only column 0 ([PAD]) is set to -inf."""
    from recbole.utils import get_trainer

    _require_fit(model)
    config = model.config
    places = config["metric_decimal_place"]
    config["metric_decimal_place"] = 12
    try:
        with outputs_under(model.run_folder):
            _, _, valid_data, test_data = model.recbole_data(config)
            rb_trainer = get_trainer(config["MODEL_TYPE"], model.name)(config, model.module)
            try:
                result = {
                    part: {k: float(v) for k, v in rb_trainer.evaluate(data, load_best_model=False).items()}
                    for part, data in (("valid", valid_data), ("test", test_data))
                }
            finally:
                rb_trainer.tensorboard.close()
    finally:
        config["metric_decimal_place"] = places
    model.module.eval()
    return result
