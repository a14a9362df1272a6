"""The one in-memory dataset every model reads, and the processing that makes it.

A loader (see `loaders.py`) turns source files into `RawInteractions`: one row per interaction in
source-file order, plus item text fields and attributes keyed by the source's own item ids.
`process()` then applies the protocol shared by every model, in this order:

1. Time order: each user's interactions are sorted by timestamp with a *stable* sort, so ties
   keep the order of the source file (sources without timestamps are already in time order).
2. Repeated user-item pairs: only the user's *first* interaction with an item is kept
   (`repeats: first`, the default) or only the last (`repeats: last`). Either way an item occurs
   at most once per user, so a validation or test target can never also sit in that user's
   history, where history masking would hide it.
3. Iterated k-core to a fixed point: users and items with fewer than k interactions are removed
   until none are left. Users additionally need 3 interactions, the minimum for a
   leave-one-out split (train >= 1, validation 1, test 1).
4. Item ids are re-indexed 1..N in ascending order of the source id (numeric order when every
   id is an integer, string order otherwise); 0 is padding. Users keep source-file order of
   first appearance.
5. Item text from the source's template; an item with no text at all gets the explicit
   fallback text and is counted in the statistics.
"""
from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PAD_ITEM = "[PAD]"
MIN_USER_INTERACTIONS = 3  # leave-one-out needs train >= 1, validation 1, test 1


class DataError(ValueError):
    """Bad input data. The message names the file, the line (when there is one) and what was
    expected, so a user can fix the source."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line


@dataclass
class RawInteractions:
    """What a loader reads, before any protocol step. Ids are the source's own, as strings."""

    source: str
    files: list[Path]
    users: list[str]
    items: list[str]
    timestamps: np.ndarray | None  # float64, one per interaction; None: already in time order
    item_fields: dict[str, dict[str, str]] = field(default_factory=dict)  # item -> text fields
    item_attributes: dict[str, list[str]] | None = None  # item -> attribute tokens


@dataclass
class SequenceDataset:
    """Per-user item sequences in time order, with item texts, attributes and statistics.

    Item ids run 1..n_items; index 0 of every item-indexed list is padding.
    """

    name: str
    source: str
    sequences: list[np.ndarray]
    user_ids: list[str]
    item_ids: list[str]
    item_texts: list[str]
    item_attributes: list[list[str]] | None
    stats: dict
    source_hash: str
    settings: dict
    # each item's title alone where its source has one (else its text): what the paper's
    # title-as-id variants read (w/o_d_TID); derived from the same source and settings
    item_titles: list[str] | None = None

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def content_hash(self) -> str:
        """Hash of what models see (sequences, item ids and texts, attributes): two datasets
        with the same hash are the same benchmark input, whatever files they came from."""
        digest = hashlib.sha256()
        for seq in self.sequences:
            digest.update(np.asarray(seq, dtype=np.int64).tobytes())
            digest.update(b"|")
        digest.update(json.dumps([self.item_ids, self.item_texts, self.item_attributes]).encode())
        return digest.hexdigest()


def _sorted_ids(ids: set[str]) -> list[str]:
    """Numeric order when every id is an integer ("7" < "10"; "007" and "7" ordered as strings
    so the order never depends on set iteration), string order otherwise."""
    if all(re.fullmatch(r"-?\d+", i) for i in ids):
        return sorted(ids, key=lambda i: (int(i), i))
    return sorted(ids)


def template_fields(template: str) -> list[str]:
    """The field names a text template uses; a malformed template is a DataError."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise DataError(f"bad text template {template!r}: {err}") from err
    if any(not name.isidentifier() for name in names):
        raise DataError(f"bad text template {template!r}: fields must be names like {{title}}")
    return names


def _format_text(template: str, fields: dict[str, str]) -> str:
    class _Blank(dict):
        def __missing__(self, key):
            return ""

    text = template.format_map(_Blank(fields))
    return re.sub(r"\s+", " ", text).strip()


def k_core(sequences: dict[str, list[str]], k: int) -> tuple[dict[str, list[str]], int]:
    """Iterated k-core on user sequences: returns the surviving sequences and the number of rounds
    until the fixed point. Users need max(k, 3) interactions, items k."""
    user_k = max(k, MIN_USER_INTERACTIONS)
    rounds = 0
    while True:
        rounds += 1
        counts: dict[str, int] = {}
        for seq in sequences.values():
            for item in seq:
                counts[item] = counts.get(item, 0) + 1
        rare = {item for item, n in counts.items() if n < k}
        kept = {}
        for user, seq in sequences.items():
            new_seq = [i for i in seq if i not in rare] if rare else seq
            if len(new_seq) >= user_k:
                kept[user] = new_seq
        changed = bool(rare) or len(kept) != len(sequences)
        sequences = kept
        if not changed:
            return sequences, rounds


def process(
    raw: RawInteractions,
    *,
    name: str,
    k: int,
    repeats: str,
    text_template: str,
    missing_text: str,
    source_hash: str,
    settings: dict,
) -> SequenceDataset:
    """Apply the shared protocol (module docstring) to what a loader read."""
    if repeats not in ("first", "last"):
        raise DataError(f"data.repeats must be 'first' or 'last', got {repeats!r}")
    n_raw = len(raw.users)
    # 1. stable time order per user (ties keep file order)
    order = np.arange(n_raw)
    if raw.timestamps is not None:
        order = np.argsort(raw.timestamps, kind="stable")
    sequences: dict[str, list[str]] = {}
    for idx in order:
        sequences.setdefault(raw.users[idx], []).append(raw.items[idx])
    # users keep order of first appearance in the file, not time order
    first_seen = {}
    for user in raw.users:
        first_seen.setdefault(user, len(first_seen))
    sequences = dict(sorted(sequences.items(), key=lambda kv: first_seen[kv[0]]))
    # 2. repeated user-item pairs
    repeats_removed = 0
    for user, seq in sequences.items():
        if len(set(seq)) == len(seq):
            continue
        walk = seq if repeats == "first" else reversed(seq)
        seen, kept = set(), []
        for item in walk:
            if item not in seen:
                seen.add(item)
                kept.append(item)
        if repeats == "last":
            kept.reverse()
        repeats_removed += len(seq) - len(kept)
        sequences[user] = kept
    n_users_raw = len(sequences)
    n_items_raw = len({i for seq in sequences.values() for i in seq})
    # 3. iterated k-core
    sequences, rounds = k_core(sequences, k)
    if not sequences:
        raise DataError(
            f"dataset {name!r} is empty after iterated {k}-core filtering "
            f"({n_users_raw} users, {n_items_raw} items before it); expected at least one user "
            f"with >= {max(k, MIN_USER_INTERACTIONS)} interactions on items with >= {k} users. "
            "Lower data.k_core or check the source files.",
            path=raw.files[0] if raw.files else None,
        )
    # 4. re-index items 1..N
    items_sorted = _sorted_ids({i for seq in sequences.values() for i in seq})
    item_index = {item: idx + 1 for idx, item in enumerate(items_sorted)}
    seq_arrays = [np.array([item_index[i] for i in seq], dtype=np.int64) for seq in sequences.values()]
    # 5. item texts with an explicit fallback: an item "has text" when a field the template
    # uses is non-empty
    used = template_fields(text_template)
    texts, titles, missing = [""], [""], 0
    for item in items_sorted:
        fields = {k_: v for k_, v in raw.item_fields.get(item, {}).items() if v and v.strip()}
        if any(name in fields for name in used):
            texts.append(_format_text(text_template, fields))
        else:
            missing += 1
            texts.append(_format_text(missing_text, {"item_id": item}))
        titles.append(fields["title"].strip() if "title" in fields else texts[-1])
    attributes = None
    if raw.item_attributes is not None:
        attributes = [[]] + [list(raw.item_attributes.get(item, [])) for item in items_sorted]
    n_inter = int(sum(len(s) for s in seq_arrays))
    lengths = np.array([len(s) for s in seq_arrays])
    stats = {
        "users": len(seq_arrays),
        "items": len(items_sorted),
        "interactions": n_inter,
        # Interactions / (users x items), the quantity the paper's Table 8 prints as "sparsity".
        "density": n_inter / (len(seq_arrays) * len(items_sorted)),
        "avg_sequence_length": float(lengths.mean()),
        "median_sequence_length": float(np.median(lengths)),
        "max_sequence_length": int(lengths.max()),
        "raw_interactions": n_raw,
        "raw_users": n_users_raw,
        "raw_items": n_items_raw,
        "repeated_interactions_removed": repeats_removed,
        "k_core": k,
        "k_core_rounds": rounds,
        "items_without_text": missing,
        "items_with_attributes": None if attributes is None else sum(1 for a in attributes[1:] if a),
    }
    return SequenceDataset(
        name=name,
        source=raw.source,
        sequences=seq_arrays,
        user_ids=list(sequences.keys()),
        item_ids=[PAD_ITEM] + items_sorted,
        item_texts=texts,
        item_titles=titles,
        item_attributes=attributes,
        stats=stats,
        source_hash=source_hash,
        settings=settings,
    )


def format_stats(dataset: SequenceDataset) -> str:
    s = dataset.stats
    return (
        f"{dataset.name}: {s['users']:,} users, {s['items']:,} items, {s['interactions']:,} "
        f"interactions, density {s['density']:.4%}, avg length {s['avg_sequence_length']:.1f} "
        f"({s['k_core']}-core in {s['k_core_rounds']} rounds; {s['repeated_interactions_removed']} "
        f"repeats removed; {s['items_without_text']} items without text)"
    )
