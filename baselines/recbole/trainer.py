"""RecBole's trainer driven by the suite's validation and stopping rule."""
from __future__ import annotations

from benchmarks.errors import ConfigError


class TimeBudgetSpent(Exception):
    """Raised from RecBole's epoch callback when train.max_minutes is crossed."""


def suite_validated(trainer_class):
    """RecBole's trainer class for a model, with its validation replaced by the suite's.

    RecBole's `fit` calls `_valid_epoch` after every `eval_step` epochs and feeds the score to its
    `early_stopping`, which counts a score >= the best as a gain and stops after more than
    `stopping_step` validations without one. The suite's rule (`benchmarks.training.EarlyStopping`)
    decides instead: `suite_validate` returns the suite's metric when it is a gain and -inf when
    it is not, so RecBole's checkpoint is saved exactly at the suite's best validations, and with
    `stopping_step = patience - 1` RecBole stops exactly when the suite's rule says to."""

    class SuiteValidatedTrainer(trainer_class):
        suite_validate = None  # set by RecBoleModel.fit: () -> (score for RecBole, metrics)

        def _valid_epoch(self, valid_data, show_progress=False):
            return self.suite_validate()

    SuiteValidatedTrainer.__name__ = f"SuiteValidated{trainer_class.__name__}"
    return SuiteValidatedTrainer


def metric_name(ours: str) -> str:
    """Our train.valid_metric (recall@10, ndcg@20) as RecBole names it (Recall@10, NDCG@20)."""
    name, _, k = str(ours).partition("@")
    names = {"recall": "Recall", "ndcg": "NDCG"}
    if name.lower() not in names or not k.isdigit():
        raise ConfigError(f"train.valid_metric {ours!r} has no RecBole equivalent (recall@K or ndcg@K)")
    return f"{names[name.lower()]}@{k}"
