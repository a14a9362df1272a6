"""User ids through the protocol: a model that declares `reads_user_ids` is handed the users'
indices (the split's, in the order of the histories) by the evaluator, the protocol controls,
the inference settings, the latency timer and the trainer's validation, and its training batches
carry the samples' users; a model that does not declare it is called exactly as before."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.evaluate import evaluate, user_arguments
from benchmarks.latency import measure_latency
from benchmarks.measurements import measure_inference_settings, measure_protocol_controls
from benchmarks.models import Recommender, register
from benchmarks.planning import plan_runs
from benchmarks.records import read_per_user
from benchmarks.runner import Runner
from benchmarks.split import all_samples, leave_one_out, sampling_samples
from benchmarks.training import WindowedNextItemModel

N_ITEMS = 150


class Spy:
    """A scoring model that records every call of prepare and input_length (with its users)."""

    n_items = N_ITEMS
    output = "scores"
    never_lists_history = False

    def __init__(self, reads: bool):
        self.reads_user_ids = reads
        self.prepared, self.lengths = [], []

    def prepare(self, histories, **given):
        self.prepared.append(given["users"].tolist() if "users" in given else "not given")
        return [len(h) for h in histories]

    def score(self, batch):
        return torch.arange(N_ITEMS + 1, dtype=torch.float32).repeat(len(batch), 1)

    def input_length(self, histories, **given):
        self.lengths.append(given["users"].tolist() if "users" in given else "not given")
        return np.ones(len(histories))


class LegacySpy(Spy):
    """The interface of a model written before user ids: prepare takes the histories alone."""

    def __init__(self):
        super().__init__(reads=False)
        del self.reads_user_ids  # the attribute is absent, as on a model of one's own

    def prepare(self, histories):
        self.prepared.append("not given")
        return [len(h) for h in histories]


USERS = np.array([5, 2, 9, 11, 3])
HISTORIES = [np.array([1 + u, 20 + u]) for u in USERS]
TARGETS = np.array([40 + u for u in USERS])


def test_the_evaluator_hands_each_batch_its_users_in_order():
    spy = Spy(reads=True)
    evaluate(spy, HISTORIES, TARGETS, ks=[5], batch_size=2, users=USERS)
    assert spy.prepared == [[5, 2], [9, 11], [3]]
    spy.prepared.clear()
    evaluate(spy, HISTORIES, TARGETS, ks=[5], batch_size=3, users=USERS, candidates="sampled", num_negatives=9)
    assert spy.prepared == [[5, 2, 9], [11, 3]]


def test_a_model_that_does_not_read_user_ids_is_called_as_before():
    for spy in (Spy(reads=False), LegacySpy()):
        evaluate(spy, HISTORIES, TARGETS, ks=[5], batch_size=2, users=USERS)
        evaluate(spy, HISTORIES, TARGETS, ks=[5], batch_size=2)
        measure_latency(spy, HISTORIES, batch_size=2, top_k=5, warmup_batches=0, count_flops=False, users=USERS)
        assert set(spy.prepared) == {"not given"} and set(spy.lengths) <= {"not given"}
    assert user_arguments(LegacySpy(), USERS, len(USERS)) == {}


def test_histories_without_users_are_users_0_to_n_minus_1():
    """As sample_candidates takes them: a direct caller's histories are the split's first users."""
    spy = Spy(reads=True)
    evaluate(spy, HISTORIES, TARGETS, ks=[5], batch_size=3)
    measure_latency(spy, HISTORIES, batch_size=2, top_k=5, warmup_batches=0, max_batches=2, count_flops=False)
    assert spy.prepared == [[0, 1, 2], [3, 4], [0, 1], [2, 3]]
    with pytest.raises(ValueError, match="4 users for 5 histories"):
        evaluate(Spy(reads=True), HISTORIES, TARGETS, ks=[5], users=USERS[:4])


def test_the_latency_timer_prepares_each_batch_with_its_users():
    spy = Spy(reads=True)
    lat = measure_latency(spy, HISTORIES, batch_size=2, top_k=5, warmup_batches=1, max_batches=3,
                          count_flops=True, users=USERS)
    # full batches only ([5, 2] and [9, 11]), reused in order: the flop-counted warm-up, then 3 timed
    assert spy.prepared == [[5, 2], [9, 11], [5, 2], [9, 11]]
    assert spy.lengths == [[9, 11], [5, 2], [9, 11]] and lat["n_batches"] == 3
    spy.prepared.clear()
    measure_latency(spy, HISTORIES, batch_size=2, top_k=5, warmup_batches=0, max_batches=1, users=USERS)
    assert spy.prepared == [[5, 2], [5, 2]]  # the timed batch, then its work counted (batch_flops)


def test_protocol_controls_and_inference_settings_pass_the_users():
    spy = Spy(reads=True)
    settings = {"ks": [5], "mask_history": True, "candidates": "full", "num_negatives": 9, "negative_seed": 0,
                "batch_size": 8}
    measure_protocol_controls(spy, HISTORIES, TARGETS, ["history_masking", "candidates"], settings, users=USERS)
    assert spy.prepared == [USERS.tolist()] * 2
    spy.prepared.clear()
    measure_inference_settings(spy, HISTORIES, TARGETS, [{"precision": "fp32", "compile": False}], settings,
                               {"batch_size": 8, "top_k": 5, "warmup_batches": 0, "count_flops": False},
                               users=USERS)
    assert spy.prepared == [USERS.tolist()] * 2  # timed, then evaluated


def test_training_samples_name_their_users_under_both_strategies(toy_dataset):
    split = leave_one_out(toy_dataset)
    for inputs, targets, users in (sampling_samples(split.train, 5, np.random.default_rng(0)),
                                   all_samples(split.train, 5)):
        for history, target, user in zip(inputs, targets, users):
            sequence = list(split.train[user])
            end = len(history)  # the sample is a window of its user's training sequence
            assert any(sequence[i:i + end + 1] == [*history, target] for i in range(len(sequence) - end))


class WindowedSpy(WindowedNextItemModel):
    reads_user_ids = True

    class Params:  # what the windowed base reads
        max_seq_length, strategy = 5, "all"

    def __init__(self):  # no dataset: only the batches are built
        self.params = self.Params()


@pytest.mark.parametrize("strategy", ["sampling", "all"])
def test_windowed_batches_of_a_model_that_reads_user_ids_carry_the_users(toy_dataset, strategy):
    split = leave_one_out(toy_dataset)
    model = WindowedSpy()
    model.params.strategy = strategy
    for items, targets, users in model.training_batches(split, 0, np.random.default_rng(0), 16):
        for row, target, user in zip(items, targets, users):
            history = [int(i) for i in row if i]
            sequence = [int(i) for i in split.train[user]]
            assert any(sequence[i:i + len(history) + 1] == [*history, int(target)] for i in range(len(sequence)))


@register("records_its_users")
class RecordsItsUsers(Recommender):
    reads_user_ids = True
    seen: list = []

    def prepare(self, histories, users=None):
        RecordsItsUsers.seen.append(users.tolist())
        return histories

    def score(self, batch):
        return torch.arange(self.n_items + 1, dtype=torch.float32).repeat(len(batch), 1)

    def input_length(self, histories, users=None):
        assert len(users) == len(histories)
        return np.zeros(len(histories))


def test_the_runner_hands_the_evaluated_subset_of_users(tmp_path, toy_ml1m):
    exp = tmp_path / "users.yaml"
    exp.write_text("datasets: [ml-1m]\nconfig: {eval: {max_users: 7, batch_size: 4}, latency: "
                   "{max_batches: 1, warmup_batches: 0, batch_size: 4, settings: [{precision: fp32}]}}\n"
                   "runs:\n  Spy: {model: {name: records_its_users}}\n")
    plan = plan_runs(set_name=None, experiments=[str(exp)], datasets=["ml-1m"],
                     overrides=[f"data.cache_dir={tmp_path / 'cache'}"], data_path=str(toy_ml1m))
    RecordsItsUsers.seen = []
    runner = Runner(tmp_path / "results", progress=False)
    runner.run(plan.runs[0])
    users = read_per_user(runner.path(plan.runs[0]))["user_index"].tolist()  # the record's evaluated users
    assert len(users) == 7 and users == sorted(users)
    # test, validation, the protocol controls, the latency timer and the inference setting: every
    # batch is the evaluated users in order, in batches of 4 (the timer's full batch: the first 4)
    assert RecordsItsUsers.seen[:4] == [users[:4], users[4:]] * 2
    assert all(batch in (users[:4], users[4:]) for batch in RecordsItsUsers.seen) and len(RecordsItsUsers.seen) > 8
