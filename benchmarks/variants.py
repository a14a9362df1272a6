"""Which record a run writes: its experiment's main record, or a named variant beside it.

A run's main record (results/<experiment>/<dataset>/<run>__seed<N>.json) is the run exactly as
its experiment file states it: defaults < dataset preset < experiment < per_dataset < run < the
best settings of the row's finished study, where the experiment tunes the row (`tuning:`, see
benchmarks/tuning): tuned settings are part of the experiment's design, so the reference config
a run is compared with holds them too (planning.compare_with_experiment). Only
what cannot change what the run computes may differ from that: the device and thread count
(where it ran), `data.path` (where the files lie, as long as they hash the same as the preset's
own files or as the records already made of that dataset), and the RUN_NEUTRAL_KEYS.

Any other difference (an experiment set's `config`, a command-line `-o`, files that hash
otherwise) makes the run a variant, written beside the main record as
`<run>__seed<N>__<tag>.json`. The tag is `--tag NAME` when given; else the name of the set whose
config makes the difference (`gpu`), with a short hash of the rest when the command line or the
data add to it (`gpu-1a2b3c4d`); else the short hash alone (`h1a2b3c4d`). The same differences
give the same tag, so a variant resumes and is skipped when done like a main record. Reports
use main records unless told to let a variant stand in (`--with-variants TAG`).

Nothing here reads files or imports a model: pure functions over resolved configs.
"""
from __future__ import annotations

import hashlib
import json
import re

from .errors import ConfigError

# Settings that say where things are kept or how a run is guarded, never what it computes: a
# run is the same run whatever their values (a record made before one existed still counts).
RUN_NEUTRAL_KEYS = ("data.cache_dir", "data.allow_missing_text")
# Where a run ran: may differ from the experiment file in a main record (a GPU machine's record
# of a CPU experiment is still its row; the record states its device).
WHERE_IT_RAN_KEYS = ("device", "num_threads")
DATA_PATH = "data.path"
SOURCE_HASH = "data.source_hash"  # the difference recorded when the files differ

TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9+-]{0,39}")
RECORD_NAME = re.compile(r"(?P<run>.+)__seed(?P<seed>\d+)(?:__(?P<tag>[A-Za-z0-9][A-Za-z0-9+-]*))?\.json")


def flatten(cfg: dict, prefix: str = "") -> dict:
    """{'train': {'epochs': 5}} -> {'train.epochs': 5}; `data.files` stays one value (a mapping of
    file names is one setting)."""
    out = {}
    for key, value in cfg.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted != "data.files":
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


ABSENT = "(absent)"


def differences(reference: dict, cfg: dict, *, where_it_ran: bool = False) -> dict[str, list]:
    """{dotted key: [the experiment's value, this run's value]} for every setting that makes
    `cfg` another run than `reference` (the seed, data.path and the neutral keys aside; the
    where-it-ran keys too, unless `where_it_ran`: an experiment set's config that moves its runs
    to another device makes them the set's variants)."""
    skipped = {"seed", DATA_PATH, *RUN_NEUTRAL_KEYS, *(() if where_it_ran else WHERE_IT_RAN_KEYS)}
    ref, mine = flatten(reference), flatten(cfg)
    return {key: [ref.get(key, ABSENT), mine.get(key, ABSENT)]
            for key in sorted(set(ref) | set(mine))
            if key not in skipped and ref.get(key, ABSENT) != mine.get(key, ABSENT)}


def short_hash(differs: dict[str, list]) -> str:
    """8 hex digits of this run's values of the differing settings (the same -o gives the same)."""
    values = {key: pair[1] for key, pair in differs.items()}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:8]


def variant_tag(differs: dict[str, list], *, tag: str | None = None, set_name: str | None = None,
                set_keys: tuple[str, ...] = ()) -> str | None:
    """The variant's tag, or None for the main record (see the module's docstring). `set_keys`:
    the settings the set's own config changes."""
    if tag:
        return tag
    if not differs:
        return None
    beyond_set = {k: v for k, v in differs.items() if k not in set_keys}
    if set_name and len(beyond_set) < len(differs):
        return set_name if not beyond_set else f"{set_name}-{short_hash(differs)}"
    return f"h{short_hash(differs)}"


def check_tag(text: str, what: str = "--tag") -> str:
    if not TAG_PATTERN.fullmatch(text or ""):
        raise ConfigError(f"{what} must be 1-40 letters, digits, '+' or '-', starting with a letter or "
                          f"digit (it becomes part of a file name), got {text!r}")
    return text


def parse_record_name(name: str) -> tuple[str, int, str | None] | None:
    """'SASRec__seed0__gpu.json' -> ('SASRec', 0, 'gpu'); None for a name that is no record's."""
    match = RECORD_NAME.fullmatch(name)
    if match is None:
        return None
    return match["run"], int(match["seed"]), match["tag"]


def describe(differs: dict[str, list], limit: int = 6) -> str:
    """'train.epochs 300 -> 2; data.source_hash 1a2b.. -> 3c4d..' (the first `limit`, then a
    count); the settings a record lacks (it was made before they existed) named apart."""
    items = [f"{key} {_short(ref)} -> {_short(mine)}" for key, (ref, mine) in differs.items() if mine != ABSENT]
    if len(items) > limit:
        items = items[:limit] + [f"and {len(items) - limit} more"]
    lacking = [key for key, (_, mine) in differs.items() if mine == ABSENT]
    if lacking:
        items.append(f"made before {', '.join(lacking)} existed")
    return "; ".join(items) or "nothing (tagged by --tag)"


def _short(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."
