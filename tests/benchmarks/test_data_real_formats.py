"""What the real-data tests check (test_data.py: test_real_ml1m_partial, test_real_amazon_beauty;
they skip without ../shared/datasets), on small files in the same formats that these tests write
themselves, so the checks also run where the real data are absent: GroupLens ml-1m (ratings.dat
and movies.dat in ISO-8859-1, Latin-1 titles, a movie with an empty title) and the Amazon Beauty
layout of the `sequence-file` loader (sequences, item-title TSV with empty titles and HTML
entities, item-attributes JSON). Counts are checked against the reference pipeline."""
from __future__ import annotations

import json
import time

import numpy as np

from benchmarks.data import load_dataset
from tests.benchmarks.data_files import assert_well_formed, config, sequences_by_user
from tests.benchmarks.protocol_reference import ml1m_pipeline, reference_k_core

LATIN1_TITLES = {0: "Café (1999)", 1: "Misérables, Les (1995)", 2: "Boîte à musique, La (1989)"}


def write_ml1m_like(folder, seed=0):
    """~45 users' ratings of 60 movies (ids 3, 6, ..., 180: numeric re-indexing matters), users'
    lines in file order but not in time order, timestamp ties, one repeated rating; movies.dat
    with Latin-1 titles, one movie with an empty title and no genres, one rated movie missing.
    Returns (rows as (user, item, time), movie ids by popularity rank)."""
    rng = np.random.default_rng(seed)
    movies = [3 * (i + 1) for i in range(60)]
    popularity = rng.dirichlet(np.full(len(movies), 0.7))
    rows = []
    for user in range(1, 46):
        length = int(rng.integers(3, 15))
        rated = rng.choice(movies, size=length, replace=False, p=popularity)
        times = 978300000 + rng.integers(0, 40, size=length) * 10  # ties happen
        rows += [(user, int(i), int(t)) for i, t in zip(rated, times)]
    rows.append((rows[0][0], rows[0][1], rows[0][2] + 5000))  # user 1 rates an item again, later
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}::{i}::{int(rng.integers(1, 6))}::{t}" for u, i, t in rows]
    (folder / "ratings.dat").write_bytes(("\n".join(lines) + "\n").encode("iso-8859-1"))
    by_rank = [movies[j] for j in np.argsort(-popularity)]
    special = {by_rank[rank]: title for rank, title in LATIN1_TITLES.items()}
    empty, missing = by_rank[3], by_rank[4]
    entries = []
    for i in movies:
        if i == missing:
            continue
        title = "" if i == empty else special.get(i, f"Movie {i} ({1940 + i % 60})")
        genres = "" if i == empty else ("Comedy|Drama" if i % 2 else "Horror")
        entries.append(f"{i}::{title}::{genres}")
    (folder / "movies.dat").write_bytes(("\n".join(entries) + "\n").encode("iso-8859-1"))
    return rows, by_rank


def test_ml1m_format_synthetic(tmp_path):
    folder = tmp_path / "ml-1m-like"
    rows, by_rank = write_ml1m_like(folder)
    assert "Café".encode("iso-8859-1") in (folder / "movies.dat").read_bytes()  # Latin-1 bytes, not UTF-8
    start = time.perf_counter()
    ds = load_dataset(config(tmp_path, "ml-1m", folder, k_core=None, name="ml-1m-partial"), verbose=False)
    seconds = time.perf_counter() - start
    expected = ml1m_pipeline(rows, 5)
    assert sequences_by_user(ds) == expected and len(expected) >= 20  # a 5-core that is not trivial
    kept_items = {i for seq in expected.values() for i in seq}
    assert len(kept_items) < ds.stats["raw_items"] and len(expected) < ds.stats["raw_users"] == 45  # it removed some
    assert (ds.n_users, ds.n_items, ds.stats["interactions"]) == (
        len(expected), len(kept_items), sum(map(len, expected.values())))
    assert ds.stats["raw_interactions"] == len(rows) and ds.stats["repeated_interactions_removed"] == 1
    texts = dict(zip(ds.item_ids, ds.item_texts))
    genres = lambda i: "Comedy Drama" if i % 2 else "Horror"  # noqa: E731
    for rank, title in LATIN1_TITLES.items():  # ISO-8859-1 read as such
        assert texts[str(by_rank[rank])] == f"{title}, genres: {genres(by_rank[rank])}"
    assert texts[str(by_rank[3])] == f"Item {by_rank[3]}"  # empty title, no genres: the fallback
    assert texts[str(by_rank[4])] == f"Item {by_rank[4]}"  # rated, not in movies.dat
    assert {str(by_rank[r]) for r in range(5)} <= kept_items  # the special movies are all kept
    assert ds.stats["items_without_text"] == 2
    assert_well_formed(ds, 5)
    assert seconds < 15, seconds


def write_beauty_like(folder, seed=1):
    """The Amazon Beauty files (S3-Rec layout): one line per user of items 1..40 in time order (one
    user repeats an item, one has two items), a title TSV with asin column, a UTF-8 title, an HTML
    entity, empty titles and an item without a row, and every item's attribute ids."""
    rng = np.random.default_rng(seed)
    items = np.arange(1, 41)
    popularity = rng.dirichlet(np.full(len(items), 0.8))
    popularity[[0, 1, 2, 3, 4, 5, 39]] = popularity.max()  # items 1-6 and 40 (the special titles) survive
    popularity /= popularity.sum()
    sequences = {}
    for user in range(1, 61):
        sequences[str(user)] = [str(i) for i in rng.choice(items, size=int(rng.integers(3, 13)), replace=False, p=popularity)]
    sequences["7"].append(sequences["7"][0])  # a repeat: the first one stays
    sequences["61"] = ["1", "2"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Beauty.txt").write_text("".join(f"{u} {' '.join(s)}\n" for u, s in sequences.items()), encoding="utf-8")
    titles = {1: "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce", 2: "Burt's Bees Hand Crème",
              3: "Tom &amp; Jerry Lip Balm", 4: "", 5: "  ", 6: ""}
    rows = ["item_id\tasin\ttitle"]
    rows += [f"{i}\tB{i:09d}\t{titles.get(i, f'Beauty product {i}')}" for i in items if i != 40]  # 40: no row
    (folder / "Beauty_item_titles.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    attributes = {str(i): [int(a) for a in rng.choice(np.arange(1, 30), size=int(rng.integers(1, 4)), replace=False)]
                  for i in items}
    (folder / "Beauty_item2attributes.json").write_text(json.dumps(attributes), encoding="utf-8")
    return sequences, titles


def test_amazon_beauty_format_synthetic(tmp_path):
    folder = tmp_path / "amazon-beauty-like"
    sequences, titles = write_beauty_like(folder)
    files = {"sequences": "Beauty.txt", "item_text": "Beauty_item_titles.tsv",
             "item_attributes": "Beauty_item2attributes.json"}
    start = time.perf_counter()
    ds = load_dataset(config(tmp_path, "sequence-file", folder, files=files, k_core=None, name="amazon-beauty"),
                      verbose=False)
    seconds = time.perf_counter() - start
    deduplicated = {u: list(dict.fromkeys(s)) for u, s in sequences.items()}
    expected = reference_k_core(deduplicated, 5)
    kept_items = {i for seq in expected.values() for i in seq}
    assert sequences_by_user(ds) == expected and "61" not in expected and len(expected) >= 30
    assert (ds.n_users, ds.n_items, ds.stats["interactions"]) == (
        len(expected), len(kept_items), sum(map(len, expected.values())))
    assert ds.stats["repeated_interactions_removed"] == 1
    # the real test's count: empty titles in the TSV are the items without text (of those kept),
    # plus here an item the TSV leaves out
    empty_titles = {line.split("\t")[0] for line in (folder / "Beauty_item_titles.tsv").read_text().splitlines()[1:]
                    if line.split("\t")[2].strip() == ""}
    assert empty_titles == {"4", "5", "6"}
    assert ds.stats["items_without_text"] == len((empty_titles | {"40"}) & kept_items)
    assert ds.stats["items_with_attributes"] == ds.n_items
    texts = dict(zip(ds.item_ids, ds.item_texts))
    assert ds.item_ids[1] == "1" and ds.item_texts[1] == titles[1]
    assert {"1", "2", "3", "4", "5", "6", "40"} <= kept_items
    assert [texts[i] for i in ("2", "3", "4", "5", "40")] == [
        "Burt's Bees Hand Crème", "Tom & Jerry Lip Balm", "Item 4", "Item 5", "Item 40"]  # UTF-8, entity, fallbacks
    assert ds.stats["items_without_text"] == 4
    assert_well_formed(ds, 5)
    assert seconds < 15, seconds
