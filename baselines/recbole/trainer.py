"""RecBole's trainer driven by the suite's validation and stopping rule."""
from __future__ import annotations

import time

from torch.utils.flop_counter import FlopCounterMode

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
    `stopping_step = patience - 1` RecBole stops exactly when the suite's rule says to.

    It also counts what the suite's own loop counts for a record's training throughput: the rows
    and steps trained, the clock from the first epoch on, and the first step's work (forward and
    backward under FlopCounterMode, closed by the optimiser's step pre-hook, before the update)."""

    class SuiteValidatedTrainer(trainer_class):
        suite_validate = None  # set by RecBoleModel.fit: () -> (score for RecBole, metrics)
        step_flops: float | None = None
        steps = rows = 0
        training_started: float | None = None

        def _valid_epoch(self, valid_data, show_progress=False):
            return self.suite_validate()

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            if self.training_started is None:
                self.training_started = time.perf_counter()
            inner = loss_func or self.model.calculate_loss
            counting: list = []  # the open counter and its hook, during the first step only

            def stop_counting(*_):
                counter, hook = counting.pop()
                counter.__exit__(None, None, None)
                hook.remove()
                self.step_flops = float(counter.get_total_flops())

            def counted_loss(interaction):
                if self.step_flops is None and not counting:
                    counter = FlopCounterMode(display=False)
                    counter.__enter__()
                    counting.append((counter, self.optimizer.register_step_pre_hook(stop_counting)))
                self.steps += 1
                self.rows += len(interaction)
                return inner(interaction)

            try:
                return super()._train_epoch(train_data, epoch_idx, loss_func=counted_loss,
                                            show_progress=show_progress)
            finally:
                if counting:  # no optimiser step came (an error, or a step the scaler skipped)
                    stop_counting()

    SuiteValidatedTrainer.__name__ = f"SuiteValidated{trainer_class.__name__}"
    return SuiteValidatedTrainer


def metric_name(ours: str) -> str:
    """Our train.valid_metric (recall@10, ndcg@20) as RecBole names it (Recall@10, NDCG@20)."""
    name, _, k = str(ours).partition("@")
    names = {"recall": "Recall", "ndcg": "NDCG"}
    if name.lower() not in names or not k.isdigit():
        raise ConfigError(f"train.valid_metric {ours!r} has no RecBole equivalent (recall@K or ndcg@K)")
    return f"{names[name.lower()]}@{k}"
