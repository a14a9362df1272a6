"""The records as the reports read them: every finished record under results/ loaded once,
brought to the current record format, and read through small typed accessors (`Record`) and one
table of their scalar fields (`RecordSet.frame`), so that no page reaches into a record's nested
dicts itself.

Old records. Every record carries `record_format` (benchmarks/records.py writes it; 1 so far). A
record made before a field existed is brought up to date here, once, by `upgrade`, one step per
format version; the pages never ask how old a record is. Within format 1 an old record is told
by the field it lacks:

- a sampled-candidates evaluation of a top-k (generative) model that does not state its
  `topk_lists` rule was made under the old rule (a full-ranking list filtered to the candidates,
  not a beam constrained to them): such a protocol control reads as skipped, with the reason;
- a two-stage training without `stage2_epochs` counts its `epochs` for the second stage;
- a latency measurement without `dtype` reads "n/a"; an evaluation without `candidates` was a
  full ranking.

A CPU's latency names its instruction sets where the record holds them (`cpu_features`): the pages
show and group devices by "name (avx2, avx512_f)", since CPUs reported under one name have
differed in them; a record without them keeps the bare name.

A change to what the runner records that the reports cannot tell by a missing field bumps
RECORD_FORMAT and adds its step here.

Main records and variants. A record named `<run>__seed<N>.json` is its experiment's main record
of the run; `<run>__seed<N>__<tag>.json` is a variant (its config differs from the experiment
file's, benchmarks/variants.py). The pages are built from the main records; `load_records(...,
with_variants=[tag, ...])` lets the variants of those tags stand in for the main records of their
run (all its seeds, the first tag found winning), and keeps every other variant apart
(`RecordSet.variants`), for the pages' "Variant records" tables.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from .. import records as records_mod
from ..evaluate import TOPK_SAMPLED_RULE
from ..variants import parse_record_name

OLD_TOPK_RULE = ("recorded before top-k lists were constrained to the sampled candidates (its list was a "
                 "full-ranking list filtered to them); re-run to measure")


def upgrade(raw: dict) -> dict:
    """The record in the current format (a new dict; the record as read is left alone)."""
    record = dict(raw)
    if record.get("record_format", 1) <= 1:
        record = _format_1(record)
    record["record_format"] = records_mod.RECORD_FORMAT
    latency = record.get("latency") or {}
    if latency.get("cpu_features"):  # one device on the pages: the same name and instruction sets
        record["latency"] = {**latency, "device_name": f"{latency['device_name']} "
                                                       f"({', '.join(latency['cpu_features'])})"}
    return record


def _format_1(record: dict) -> dict:
    generative = "decoding" in (record.get("model_info") or {})
    variants = {}
    for control, variant in (record.get("protocol_variants") or {}).items():
        settings = variant.get("evaluation") or {}
        if (generative and settings.get("candidates") == "sampled"
                and settings.get("topk_lists") != TOPK_SAMPLED_RULE):
            variant = {"skipped": OLD_TOPK_RULE}
        variants[control] = variant
    if "protocol_variants" in record:
        record["protocol_variants"] = variants
    training = record.get("training") or {}
    if training.get("stage1") and "stage2_epochs" not in training:
        record["training"] = {**training, "stage2_epochs": training.get("epochs")}
    if record.get("latency") and "dtype" not in record["latency"]:
        record["latency"] = {**record["latency"], "dtype": "n/a"}
    if record.get("evaluation") and "candidates" not in record["evaluation"]:
        record["evaluation"] = {**record["evaluation"], "candidates": "full"}
    return record


class Record:
    """One record, read-only: the fields the reports use, each with its value when absent."""

    __slots__ = ("raw", "path", "stands_in", "stale")

    def __init__(self, raw: dict, path: Path | None = None):
        self.raw = upgrade(raw)
        self.path = path  # the per-user arrays sit beside it
        self.stands_in = False  # a variant standing in for the main record (--with-variants)
        self.stale = None  # a main record made under earlier settings: what differs (staleness.py)

    def __repr__(self) -> str:
        return f"Record({self.experiment}/{self.dataset}/{self.run}/seed{self.seed})"

    def _block(self, name: str) -> dict:
        return self.raw.get(name) or {}

    # identity and outcome
    experiment = property(lambda self: self.raw["experiment"])
    run = property(lambda self: self.raw["run"])
    dataset = property(lambda self: self.raw["dataset"])
    seed = property(lambda self: self.raw["seed"])
    model = property(lambda self: self.raw.get("model"))
    status = property(lambda self: self.raw.get("status"))
    ok = property(lambda self: self.raw.get("status") == "ok")
    skipped = property(lambda self: self.raw.get("status") == "skipped")
    skip_reason = property(lambda self: self.raw.get("skip_reason"))
    failed = property(lambda self: self.raw.get("status") == "failed")
    error = property(lambda self: self.raw.get("error"))
    paper_table = property(lambda self: self.raw.get("paper_table"))
    experiment_file = property(lambda self: self.raw.get("experiment_file"))

    @property
    def variant(self) -> str | None:
        """The variant's tag (from the record, or its file's name), or None for a main record."""
        tag = (self.raw.get("variant") or {}).get("tag")
        if tag is None and self.path is not None:
            parsed = parse_record_name(Path(self.path).name)
            tag = parsed[2] if parsed else None
        return tag

    # what made a variant: {dotted key: [the experiment's value, this run's]}, where recorded
    variant_differs = property(lambda self: (self.raw.get("variant") or {}).get("differs"))

    # what ran
    config = property(lambda self: self._block("config"))
    model_config = property(lambda self: self.config.get("model") or {})
    valid_metric = property(lambda self: (self.config.get("train") or {}).get("valid_metric", "recall@10"))
    ks = property(lambda self: self.config["eval"]["ks"])
    model_info = property(lambda self: self._block("model_info"))
    backbones = property(lambda self: self.model_info.get("backbones"))

    # the data (a run that failed before its data was loaded has none)
    data = property(lambda self: self.raw.get("data") or {})
    has_data = property(lambda self: bool(self.data.get("stats")))
    stats = property(lambda self: self.data["stats"])
    paper_name = property(lambda self: self.data.get("paper_name"))
    source = property(lambda self: self.data["source"])
    content_hash = property(lambda self: self.data["content_hash"])
    source_hash = property(lambda self: self.data.get("source_hash") or "")

    # what was measured
    evaluation = property(lambda self: self._block("evaluation"))
    metrics = property(lambda self: self._block("metrics"))
    latency = property(lambda self: self._block("latency"))
    sections = property(lambda self: self.latency.get("sections_ms_median") or {})
    input_length = property(lambda self: self._block("input_length"))
    training = property(lambda self: self._block("training"))
    protocol_variants = property(lambda self: self._block("protocol_variants"))
    cold_start = property(lambda self: self.raw.get("cold_start"))

    # where it ran
    git = property(lambda self: self._block("environment").get("git") or {})
    commit = property(lambda self: self.git.get("commit") or "unknown")
    libraries = property(lambda self: self._block("environment").get("libraries") or {})

    @property
    def stages(self) -> list[dict]:
        """The training stages in order (a two-stage model keeps its first under `stage1` and its
        second's epoch count under `stage2_epochs`, `epochs` and `seconds` being both stages
        together: each stage here has its own)."""
        training = self.training
        first = training.get("stage1")
        if not first:
            return [training]
        second = {**training, "epochs": training["stage2_epochs"]}
        if isinstance(training.get("seconds"), (int, float)) and isinstance(first.get("seconds"), (int, float)):
            second["seconds"] = training["seconds"] - first["seconds"]
        return [first, second]

    @property
    def trained(self) -> bool:
        return any(stage.get("history") for stage in self.stages)

    def _over_stages(self, key: str) -> float | None:
        """A throughput number of the training, its stages weighted by their seconds; None where a
        stage recorded none (made before throughput was recorded, or not trained)."""
        pairs = [(stage.get("seconds"), (stage.get("throughput") or {}).get(key)) for stage in self.stages]
        if not all(isinstance(s, (int, float)) and s > 0 and v is not None for s, v in pairs):
            return None
        return sum(s * float(v) for s, v in pairs) / sum(s for s, _ in pairs)

    @property
    def train_rows_per_second(self) -> float | None:
        """Training rows a second (validation time included), the stages weighted by their seconds;
        a training resumed over sittings recorded its last sitting's rate."""
        return self._over_stages("rows_per_second")

    @property
    def train_share_of_peak(self) -> float | None:
        """The share of the measured matrix-multiply peak the training reached, stages weighted
        by their seconds (each stage's own sitting; see benchmarks.training.training_throughput)."""
        return self._over_stages("share_of_peak")

    @property
    def beam_search_share(self) -> float | None:
        """The share of the named sections' time spent in beam search (derived, not recorded)."""
        sections = self.sections
        total = sum(sections.values())
        return sections["beam_search"] / total if "beam_search" in sections and total > 0 else None

    def number(self, path: tuple) -> float | None:
        """The number at a path of keys (("metrics", "recall@10"), ...); ("derived", name) is a
        property computed from the record. None where it is absent or not a number."""
        if path[0] == "derived":
            value = getattr(self, path[1])
        else:
            value = self.raw
            for key in path:
                if not isinstance(value, dict) or key not in value:
                    return None
                value = value[key]
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def per_user(self, part: str = "test") -> dict | None:
        """The per-user arrays beside the record (its test users, or part="valid": its validation
        users under the kept weights), or None where there are none."""
        if self.path is None or not records_mod.per_user_path(self.path).is_file():
            return None
        return records_mod.read_per_user(self.path, part)


def current_by_run(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Each run's current main records (finished, not a variant standing in, not stale), by seed."""
    by_run: dict[str, list[Record]] = {}
    for rec in sorted((r for r in records if r.ok and not r.stands_in and not r.stale), key=lambda r: r.seed):
        by_run.setdefault(rec.run, []).append(rec)
    return by_run


def as_record(record: Record | dict) -> Record:
    return record if isinstance(record, Record) else Record(record)


FRAME_COLUMNS = ["experiment", "dataset", "run", "seed", "model", "status", "candidates", "mask_history",
                 "users", "cold_start", "device_name", "batch_size", "ms_per_batch", "recall@10"]


class RecordSet:
    """The records the pages are built from (main records, and the variants standing in for
    theirs), in path order, a table of their scalar fields, and the other variants apart."""

    def __init__(self, records: Iterable[Record], variants: Iterable[Record] = ()):
        self.records = list(records)
        self.variants = list(variants)
        self.frame = pd.DataFrame([_row(r) for r in self.records], columns=FRAME_COLUMNS)

    def __iter__(self):
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __bool__(self) -> bool:
        return bool(self.records)

    @property
    def ok(self) -> list[Record]:
        return [r for r in self.records if r.ok]

    def by_experiment(self, variants: bool = False) -> dict[str, dict[str, list[Record]]]:
        """experiment -> dataset -> records (in path order); the variants kept apart with `variants`."""
        out: dict[str, dict[str, list[Record]]] = {}
        for rec in self.variants if variants else self.records:
            out.setdefault(rec.experiment, {}).setdefault(rec.dataset, []).append(rec)
        return out

    def by_run(self, ok_only: bool = True) -> dict[tuple[str, str, str], list[Record]]:
        """(experiment, dataset, run) -> its (finished) records."""
        out: dict[tuple[str, str, str], list[Record]] = {}
        for rec in self.records:
            if rec.ok or not ok_only:
                out.setdefault((rec.experiment, rec.dataset, rec.run), []).append(rec)
        return out


def _row(rec: Record) -> dict:
    ev, lat = rec.evaluation, rec.latency
    return {"experiment": rec.experiment, "dataset": rec.dataset, "run": rec.run, "seed": rec.seed,
            "model": rec.model, "status": rec.status, "candidates": ev.get("candidates"),
            "mask_history": bool(ev.get("mask_history")), "users": str(ev.get("users", "")),
            "cold_start": bool(rec.cold_start), "device_name": lat.get("device_name", "n/a"),
            "batch_size": lat.get("batch_size", 32), "ms_per_batch": lat.get("ms_per_batch_median"),
            "recall@10": rec.metrics.get("recall@10")}


def load_records(results_dir: str | Path, with_variants: Iterable[str] = ()) -> RecordSet:
    """Every record under results_dir: the main records, with the variants of `with_variants`
    standing in for their runs' main records, and the other variants apart."""
    loaded = [Record(raw, path) for path, raw in records_mod.iter_records(results_dir)]
    main = [r for r in loaded if r.variant is None]
    variants = [r for r in loaded if r.variant is not None]
    standing: dict[tuple, str] = {}
    for tag in with_variants:  # the first tag given that a run has wins
        for rec in variants:
            if rec.variant == tag:
                standing.setdefault((rec.experiment, rec.dataset, rec.run), tag)
    chosen = [r for r in variants if standing.get((r.experiment, r.dataset, r.run)) == r.variant]
    for rec in chosen:
        rec.stands_in = True
    kept = [r for r in main if (r.experiment, r.dataset, r.run) not in standing]
    return RecordSet(sorted(kept + chosen, key=lambda r: str(r.path)), [r for r in variants if not r.stands_in])
