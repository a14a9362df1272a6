"""Data loading: every source loader, the shared processing protocol, the cache, bad inputs and
the real datasets (skipped when ../shared/datasets is absent).

Every test writes its source files and its cache under pytest's tmp_path.
"""
from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.data import LOADERS, DataError, load_dataset
from benchmarks.data.loaders import get_loader

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def config(tmp_path: Path, source: str, path, **overrides) -> dict:
    data = {
        "name": "toy",
        "source": source,
        "path": None if path is None else str(path),
        "files": {},
        "k_core": 1,
        "repeats": "first",
        "text_template": None,
        "missing_text": "Item {item_id}",
        "encoding": None,
        "cache_dir": str(tmp_path / "cache"),
    }
    data.update(overrides)
    return data


def load(tmp_path, source, path, **overrides):
    return load_dataset(config(tmp_path, source, path, **overrides), verbose=False)


def write(path: Path, content, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode(encoding))
    return path


def assert_no_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir()), list(cache.iterdir())


def sequences_by_user(ds) -> dict[str, list[str]]:
    """user id -> source item ids, in sequence order."""
    return {u: [ds.item_ids[i] for i in seq] for u, seq in zip(ds.user_ids, ds.sequences)}


def assert_well_formed(ds, k: int) -> None:
    """Re-indexed 1..N with 0 padding, no repeats, and really a k-core."""
    assert ds.item_ids[0] == "[PAD]" and ds.item_texts[0] == ""
    flat = np.concatenate(ds.sequences)
    assert flat.min() >= 1 and flat.max() == ds.n_items
    assert set(flat.tolist()) == set(range(1, ds.n_items + 1))
    counts = np.bincount(flat, minlength=ds.n_items + 1)[1:]
    assert counts.min() >= k
    for seq in ds.sequences:
        assert len(set(seq.tolist())) == len(seq)
        assert len(seq) >= max(k, 3)
    assert len(ds.item_texts) == ds.n_items + 1
    assert ds.stats["users"] == ds.n_users and ds.stats["items"] == ds.n_items
    assert ds.stats["interactions"] == len(flat)


ML1M_MOVIES = (
    "10::Toy Story (1995)::Animation|Children's|Comedy\n"
    "20::Misérables, Les (1995)::Drama|Musical\n"
)


def ml1m_folder(tmp_path: Path, ratings: str, movies: str | None = ML1M_MOVIES) -> Path:
    folder = tmp_path / "ml-1m"
    write(folder / "ratings.dat", ratings, encoding="ascii")
    if movies is not None:
        write(folder / "movies.dat", movies, encoding="iso-8859-1")
    return folder


# ----------------------------------------------------------------------------------------------
# each loader on small well-formed files
# ----------------------------------------------------------------------------------------------


def test_ml1m_loader(tmp_path):
    folder = ml1m_folder(
        tmp_path,
        "1::10::5::300\n1::20::3::100\n1::30::4::200\n"
        "2::20::5::50\n2::30::1::60\n2::10::2::40\n"
        "\n"  # blank lines are skipped
        "3::30::4::10\n3::10::4::10\n3::20::4::5\n",
    )
    ds = load(tmp_path, "ml-1m", folder, k_core=3)
    assert ds.item_ids == ["[PAD]", "10", "20", "30"]
    assert ds.user_ids == ["1", "2", "3"]
    assert sequences_by_user(ds) == {
        "1": ["20", "30", "10"],
        "2": ["10", "20", "30"],
        "3": ["20", "30", "10"],  # 30 and 10 share a timestamp: file order
    }
    # ISO-8859-1 by default; the title keeps its year
    assert ds.item_texts[1] == "Toy Story (1995), genres: Animation Children's Comedy"
    assert ds.item_texts[2] == "Misérables, Les (1995), genres: Drama Musical"
    assert ds.item_texts[3] == "Item 30"  # not in movies.dat
    assert ds.stats["items_without_text"] == 1
    assert ds.item_attributes == [[], ["Animation", "Children's", "Comedy"], ["Drama", "Musical"], []]
    assert ds.source == "ml-1m" and ds.settings["encoding"] == "iso-8859-1"
    assert_well_formed(ds, 3)


def test_ml1m_custom_template_and_year_field(tmp_path):
    folder = ml1m_folder(tmp_path, "1::10::5::1\n1::20::5::2\n1::30::5::3\n")
    ds = load(tmp_path, "ml-1m", folder, text_template="{title} [{year}] | {genres}")
    assert ds.item_texts[1] == "Toy Story (1995) [1995] | Animation Children's Comedy"


def test_ml100k_format_from_a_folder(tmp_path):
    folder = tmp_path / "ml100k-copy"
    write(
        folder / "ml-100k.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "7\t1\t3\t100\n7\t267\t3\t50\n7\t1412\t4\t75\n"
        "8\t1412\t1\t10\n8\t1\t2\t20\n8\t267\t5\t30\n",
    )
    write(
        folder / "ml-100k.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n"
        "267\tunkonwn\tunkonwn\tunknown\n"
        "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation Children's\n",
    )
    ds = load(tmp_path, "ml-100k", folder, k_core=2)
    assert sequences_by_user(ds) == {"7": ["267", "1412", "1"], "8": ["1412", "1", "267"]}
    texts = dict(zip(ds.item_ids, ds.item_texts))
    assert texts["1"] == "Toy Story (1995), genres: Animation Children's Comedy"
    assert texts["267"] == "Item 267"  # placeholders only: no text
    assert texts["1412"] == "Land Before Time III: The Time of the Great Giving (1995), genres: Animation Children's"
    assert ds.stats["items_without_text"] == 1
    attrs = dict(zip(ds.item_ids, ds.item_attributes))
    assert attrs["267"] == [] and attrs["1"] == ["Animation", "Children's", "Comedy"]


def test_recbole_atomic_loader(tmp_path):
    folder = tmp_path / "shop"
    # columns in a different order than usual: found by name
    write(
        folder / "shop.inter",
        "timestamp:float\trating:float\titem_id:token\tuser_id:token\n"
        "5\t1\tb\tu1\n1\t1\ta\tu1\n3\t1\tc\tu1\n"
        "2\t1\tc\tu2\n2\t1\ta\tu2\n9\t1\tb\tu2\n",
    )
    write(
        folder / "shop.item",
        "item_id:token\ttitle:token_seq\tprice:float\n"
        "a\tRed  Mug\t9.5\n"
        "b\tBlue Plate\t\n"
        "c\t\t\n",
    )
    ds = load(tmp_path, "recbole-atomic", folder, k_core=2)
    assert ds.item_ids == ["[PAD]", "a", "b", "c"]  # string order
    assert sequences_by_user(ds) == {"u1": ["a", "c", "b"], "u2": ["c", "a", "b"]}
    assert ds.item_texts[1:] == ["title: Red Mug, price: 9.5", "title: Blue Plate", "Item c"]
    assert ds.stats["items_without_text"] == 1
    assert ds.item_attributes is None
    # the .item columns are also fields of their own
    ds2 = load(tmp_path, "recbole-atomic", folder, k_core=2, text_template="{title} costs {price}")
    assert ds2.item_texts[1] == "Red Mug costs 9.5"


def test_recbole_atomic_named_by_files(tmp_path):
    folder = tmp_path / "folder"
    write(folder / "other.inter", "user_id:token\titem_id:token\ttimestamp:float\n"
          "1\tx\t1\n1\ty\t2\n1\tz\t3\n")
    write(folder / "other.item", "item_id:token\tname:token\nx\tThe X\n")
    loader = get_loader("recbole-atomic")
    files = loader.resolve_files(str(folder), {"inter": "other.inter"})
    assert files == {"inter": folder / "other.inter", "item": folder / "other.item"}
    ds = load(tmp_path, "recbole-atomic", folder, files={"inter": "other.inter"})
    assert ds.item_texts[1:] == ["name: The X", "Item y", "Item z"]
    # without the override the folder name is the dataset name: folder.inter is missing
    with pytest.raises(DataError, match="folder.inter"):
        load(tmp_path, "recbole-atomic", folder)


def _amazon_reviews() -> str:
    rows = [
        ("A1", "B0LEGO", 300), ("A1", "B0CARD", 100), ("A1", "B0BALL", 200),
        ("A2", "B0BALL", 50), ("A2", "B0LEGO", 60), ("A2", "B0CARD", 70),
        ("A3", "B0CARD", 10), ("A3", "B0LEGO", 10), ("A3", "B0BALL", 20),
    ]
    lines = [
        json.dumps({"overall": 5.0, "verified": True, "reviewerID": u, "asin": a,
                    "unixReviewTime": t, "reviewText": "fun <br/> toy"})
        for u, a, t in rows
    ]
    return "\n".join(lines) + "\n"


def _amazon_meta() -> str:
    rows = [
        {"asin": "B0LEGO", "title": "<b>Lego</b> Bricks &amp; Plates", "brand": "LEGO",
         "category": ["Toys &amp; Games", "Building Toys", "<span>Building Sets</span>"]},
        {"asin": "B0CARD", "title": "Uno", "brand": "", "category": ["Toys & Games", "Games"]},
        {"asin": "B0LEGO", "title": "duplicate product line: the first wins"},
        {"asin": "B0NOTREVIEWED", "title": "never reviewed"},
    ]
    return "\n".join(json.dumps(r) for r in rows) + "\n"


@pytest.mark.parametrize("variant", ["plain", "gz", "gzip-magic"])
def test_amazon2018_loader(tmp_path, variant):
    folder = tmp_path / "amazon"
    reviews, meta = _amazon_reviews().encode(), _amazon_meta().encode()
    files = {}
    if variant == "plain":
        write(folder / "reviews.json", reviews)
        write(folder / "meta.json", meta)
    elif variant == "gz":  # Amazon 2018 names; the metadata is found from the reviews name
        write(folder / "Toys_and_Games.json.gz", gzip.compress(reviews))
        write(folder / "meta_Toys_and_Games.json.gz", gzip.compress(meta))
        files = {"reviews": "Toys_and_Games.json.gz"}
    else:  # gzip content without a .gz suffix: detected by the magic bytes
        write(folder / "r.json", gzip.compress(reviews))
        write(folder / "m.json", gzip.compress(meta))
        files = {"reviews": "r.json", "meta": "m.json"}
    ds = load(tmp_path, "amazon2018", folder, files=files, k_core=3)
    assert ds.item_ids == ["[PAD]", "B0BALL", "B0CARD", "B0LEGO"]
    assert sequences_by_user(ds) == {
        "A1": ["B0CARD", "B0BALL", "B0LEGO"],
        "A2": ["B0BALL", "B0LEGO", "B0CARD"],
        "A3": ["B0CARD", "B0LEGO", "B0BALL"],
    }
    assert ds.item_texts[1:] == [
        "Item B0BALL",  # no metadata line
        "Uno, categories: Toys & Games, Games",  # no brand: no dangling label
        "Lego Bricks & Plates, brand: LEGO, categories: Toys & Games, Building Toys, Building Sets",
    ]
    assert ds.stats["items_without_text"] == 1
    assert ds.item_attributes == [
        [], [], ["Toys & Games", "Games"], ["LEGO", "Toys & Games", "Building Toys", "Building Sets"]
    ]
    assert set(ds.settings["files"]) == {"reviews", "meta"}
    custom = load(tmp_path, "amazon2018", folder, files=files, k_core=3,
                  text_template="{title} by {brand} in {categories}")
    assert custom.item_texts[3] == "Lego Bricks & Plates by LEGO in Toys & Games, Building Toys, Building Sets"


def test_amazon2018_default_k_core_is_10(tmp_path):
    assert get_loader("amazon2018").default_k_core == 10
    folder = tmp_path / "amazon"
    write(folder / "reviews.json", _amazon_reviews())
    with pytest.raises(DataError, match="10-core"):
        load(tmp_path, "amazon2018", folder, k_core=None)
    assert_no_cache(tmp_path)


BEAUTY_SEQUENCES = "1 1 2 3 4\n2 2 3 4 1\n3 4 3 1 2\n4 3 1 2 4 5\n"
BEAUTY_TITLES = (
    "item_id\tasin\ttitle\n"
    "1\tB001\tOPI Nail Lacquer, 0.5-Fluid  Ounce\n"
    "2\tB002\tBurt's Bees Hand Cr&egrave;me\n"
    "3\tB003\t\n"  # empty title, as 7 items of the real Beauty file
    "5\tB005\tNot kept by the k-core\n"
)
BEAUTY_ATTRIBUTES = json.dumps({"1": [1, 2], "2": [3], "3": [], "5": [9]})


def test_sequence_file_loader(tmp_path):
    folder = tmp_path / "beauty"
    write(folder / "Beauty.txt", BEAUTY_SEQUENCES)
    write(folder / "Beauty_item_titles.tsv", BEAUTY_TITLES)
    write(folder / "Beauty_item2attributes.json", BEAUTY_ATTRIBUTES)
    files = {"sequences": "Beauty.txt", "item_text": "Beauty_item_titles.tsv",
             "item_attributes": "Beauty_item2attributes.json"}
    ds = load(tmp_path, "sequence-file", folder, files=files, k_core=2)
    assert ds.item_ids == ["[PAD]", "1", "2", "3", "4"]  # item 5 has one user
    assert [s.tolist() for s in ds.sequences] == [[1, 2, 3, 4], [2, 3, 4, 1], [4, 3, 1, 2], [3, 1, 2, 4]]
    assert ds.item_texts[1:] == [
        "OPI Nail Lacquer, 0.5-Fluid Ounce",
        "Burt's Bees Hand Crème",  # HTML entities unescaped
        "Item 3",
        "Item 4",  # not in the TSV
    ]
    assert ds.stats["items_without_text"] == 2
    assert ds.item_attributes == [[], ["1", "2"], ["3"], [], []]
    assert ds.stats["items_with_attributes"] == 2
    assert ds.settings["files"] == {"sequences": "Beauty.txt", "item_text": "Beauty_item_titles.tsv",
                                    "item_attributes": "Beauty_item2attributes.json"}


def test_sequence_file_path_is_the_file_and_defaults(tmp_path):
    folder = tmp_path / "seq"
    seq = write(folder / "anything.txt", BEAUTY_SEQUENCES)
    write(folder / "item_titles.tsv", BEAUTY_TITLES)  # default name: picked up when present
    loader = get_loader("sequence-file")
    assert loader.resolve_files(str(seq), {}) == {"sequences": seq, "item_text": folder / "item_titles.tsv"}
    ds = load(tmp_path, "sequence-file", seq, k_core=2)
    assert ds.item_texts[1] == "OPI Nail Lacquer, 0.5-Fluid Ounce"
    assert ds.item_attributes is None
    # null drops an optional file that is present
    assert "item_text" not in loader.resolve_files(str(folder), {"sequences": "anything.txt", "item_text": None})


def test_loader_api():
    assert set(LOADERS) == {"ml-100k", "ml-1m", "amazon2018", "sequence-file", "recbole-atomic"}
    for name, loader in LOADERS.items():
        assert loader.name == name and get_loader(name) is loader
        assert isinstance(loader.default_text_template, str) and loader.default_text_template
        assert loader.default_k_core in (5, 10)
        assert loader.required_files
    assert LOADERS["ml-1m"].default_encoding.lower() == "iso-8859-1"
    assert LOADERS["sequence-file"].default_encoding == "utf-8"


# ----------------------------------------------------------------------------------------------
# the processing protocol
# ----------------------------------------------------------------------------------------------

REPEATS = (
    "1::10::5::1\n"
    "1::20::5::2\n"
    "1::10::5::3\n"  # repeat of 10, later in time
    "1::30::5::2\n"  # same time as 20, later in the file
    "2::30::5::9\n2::20::5::8\n2::10::5::7\n"
)


def test_time_order_and_repeats_first(tmp_path):
    folder = ml1m_folder(tmp_path, REPEATS)
    ds = load(tmp_path, "ml-1m", folder)
    assert sequences_by_user(ds) == {"1": ["10", "20", "30"], "2": ["10", "20", "30"]}
    assert ds.stats["repeated_interactions_removed"] == 1
    assert ds.stats["raw_interactions"] == 7
    assert_well_formed(ds, 1)


def test_repeats_last(tmp_path):
    folder = ml1m_folder(tmp_path, REPEATS)
    ds = load(tmp_path, "ml-1m", folder, repeats="last")
    assert sequences_by_user(ds) == {"1": ["20", "30", "10"], "2": ["10", "20", "30"]}
    assert ds.stats["repeated_interactions_removed"] == 1
    assert_well_formed(ds, 1)


def test_iterated_k_core_needs_several_rounds(tmp_path):
    # u1..u3 x {A, B, C} is a 3-core. u4 rates X (its only user): dropping X leaves u4 with two
    # items, so u4 goes; D then has only u5 and u6, so D goes in round 2, and u5, u6 with it.
    # One round would have kept D, u5 and u6.
    A, B, C, D, X = 1, 2, 3, 4, 99
    rows = [(u, i) for u in (1, 2, 3) for i in (A, B, C)]
    rows += [(4, A), (4, D), (4, X), (5, A), (5, D), (5, B), (6, A), (6, D), (6, C)]
    # movies.dat is required (an empty one: no titles needed here)
    folder = ml1m_folder(tmp_path, "".join(f"{u}::{i}::5::{t}\n" for t, (u, i) in enumerate(rows)), movies="")
    ds = load(tmp_path, "ml-1m", folder, k_core=3)
    assert ds.user_ids == ["1", "2", "3"]
    assert ds.item_ids == ["[PAD]", "1", "2", "3"]
    assert ds.stats["k_core_rounds"] == 3  # two rounds that remove, one that confirms
    assert ds.stats["raw_users"] == 6 and ds.stats["raw_items"] == 5
    assert_well_formed(ds, 3)


def test_reindex_numeric_order_padding_and_fallback_text(tmp_path):
    folder = tmp_path / "seq"
    write(folder / "sequences.txt", "5 100 2 10\n6 10 100 2\n7 2 10 100\n")
    write(folder / "item_titles.tsv", "item_id\ttitle\n10\tTen\n")
    ds = load(tmp_path, "sequence-file", folder, missing_text="Unknown item #{item_id}")
    assert ds.item_ids == ["[PAD]", "2", "10", "100"]  # numeric, not string, order
    assert [s.tolist() for s in ds.sequences] == [[3, 1, 2], [2, 3, 1], [1, 2, 3]]
    assert ds.item_texts == ["", "Unknown item #2", "Ten", "Unknown item #100"]
    assert ds.stats["items_without_text"] == 2
    assert_well_formed(ds, 1)


# ----------------------------------------------------------------------------------------------
# cache
# ----------------------------------------------------------------------------------------------


def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    folder = ml1m_folder(tmp_path, "1::10::5::1\n1::20::5::2\n1::30::5::3\n2::10::5::1\n2::20::5::2\n2::30::5::3\n")
    loader = LOADERS["ml-1m"]
    calls = []
    real_read = loader.read

    def counting_read(*args, **kwargs):
        calls.append(1)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(loader, "read", counting_read)
    first = load(tmp_path, "ml-1m", folder, k_core=2)
    assert len(calls) == 1
    assert len(list((tmp_path / "cache").iterdir())) == 1

    def no_read(*args, **kwargs):
        raise AssertionError("the source was read although the cache is valid")

    monkeypatch.setattr(loader, "read", no_read)
    second = load(tmp_path, "ml-1m", folder, k_core=2)
    assert [s.tolist() for s in second.sequences] == [s.tolist() for s in first.sequences]
    assert second.item_ids == first.item_ids and second.user_ids == first.user_ids
    assert second.item_texts == first.item_texts
    assert second.item_attributes == first.item_attributes
    assert second.stats == first.stats and second.settings == first.settings
    assert second.content_hash == first.content_hash and second.source_hash == first.source_hash

    # one changed byte in a source file -> re-processed
    monkeypatch.setattr(loader, "read", counting_read)
    ratings = folder / "ratings.dat"
    ratings.write_bytes(ratings.read_bytes().replace(b"2::30::5::3", b"2::30::5::4"))
    load(tmp_path, "ml-1m", folder, k_core=2)
    assert len(calls) == 2
    # a changed setting -> re-processed
    third = load(tmp_path, "ml-1m", folder, k_core=1)
    assert len(calls) == 3
    assert third.settings["k_core"] == 1
    assert len(list((tmp_path / "cache").iterdir())) == 3
    # and each of them is cached now
    monkeypatch.setattr(loader, "read", no_read)
    load(tmp_path, "ml-1m", folder, k_core=1)
    load(tmp_path, "ml-1m", folder, k_core=2)


# ----------------------------------------------------------------------------------------------
# bad inputs: one clear DataError each, and nothing cached
# ----------------------------------------------------------------------------------------------


def raises(tmp_path, source, path, **overrides) -> str:
    with pytest.raises(DataError) as info:
        load(tmp_path, source, path, **overrides)
    assert_no_cache(tmp_path)
    return str(info.value)


def test_missing_file(tmp_path):
    folder = tmp_path / "ml-1m"
    write(folder / "movies.dat", ML1M_MOVIES, encoding="iso-8859-1")
    msg = raises(tmp_path, "ml-1m", folder)
    assert "ratings.dat" in msg and "file not found" in msg


def test_missing_configured_optional_file(tmp_path):
    folder = tmp_path / "seq"
    write(folder / "sequences.txt", BEAUTY_SEQUENCES)
    msg = raises(tmp_path, "sequence-file", folder, files={"item_text": "titles.tsv"})
    assert "titles.tsv" in msg and "file not found" in msg


def test_wrong_delimiter(tmp_path):
    folder = ml1m_folder(tmp_path, "1::10::5::1\n1::20::5::2\n1\t30\t5\t3\n")
    msg = raises(tmp_path, "ml-1m", folder)
    assert "ratings.dat, line 3:" in msg
    assert "expected 4 fields separated by '::' (UserID::MovieID::Rating::Timestamp), found 1" in msg
    assert "wrong delimiter?" in msg


def test_wrong_delimiter_recbole_atomic(tmp_path):
    folder = tmp_path / "shop"
    write(folder / "shop.inter", "user_id:token,item_id:token,timestamp:float\nu1,a,1\n")
    msg = raises(tmp_path, "recbole-atomic", folder)
    assert "shop.inter, line 1:" in msg and "no 'item_id' field" in msg and "wrong delimiter?" in msg


def test_wrong_column_count(tmp_path):
    folder = ml1m_folder(tmp_path, "1::10::5::1\n1::20::5\n")
    msg = raises(tmp_path, "ml-1m", folder)
    assert "ratings.dat, line 2:" in msg and "expected 4 fields" in msg and "found 3" in msg


def test_wrong_column_count_tsv(tmp_path):
    folder = tmp_path / "seq"
    write(folder / "sequences.txt", BEAUTY_SEQUENCES)
    write(folder / "item_titles.tsv", "item_id\tasin\ttitle\n1\tB001\tA title\n2\tonly two\n")
    msg = raises(tmp_path, "sequence-file", folder)
    assert "item_titles.tsv, line 3:" in msg and "expected 3 fields separated by '\\t'" in msg
    assert "(item_id, asin, title), found 2" in msg


def test_non_numeric_id(tmp_path):
    folder = ml1m_folder(tmp_path, "1::10::5::1\nuser2::20::5::2\n")
    msg = raises(tmp_path, "ml-1m", folder)
    assert "ratings.dat, line 2:" in msg and "expected a non-negative integer UserID, found 'user2'" in msg


def test_non_numeric_item_id_sequence_file(tmp_path):
    folder = tmp_path / "seq"
    write(folder / "sequences.txt", "1 1 2 3\n2 1 2 x3\n")
    msg = raises(tmp_path, "sequence-file", folder)
    assert "sequences.txt, line 2:" in msg and "expected integer ids" in msg and "'x3'" in msg


def test_sequence_file_wrong_delimiter(tmp_path):
    folder = tmp_path / "seq"
    write(folder / "sequences.txt", "1,1,2,3\n")
    msg = raises(tmp_path, "sequence-file", folder)
    assert "sequences.txt, line 1:" in msg and "separated by spaces" in msg and "wrong delimiter?" in msg


def test_non_numeric_timestamp(tmp_path):
    folder = tmp_path / "shop"
    write(folder / "shop.inter", "user_id:token\titem_id:token\ttimestamp:float\n"
          "u1\ta\t1\nu1\tb\tyesterday\n")
    msg = raises(tmp_path, "recbole-atomic", folder)
    assert "shop.inter, line 3:" in msg and "expected a numeric timestamp" in msg and "'yesterday'" in msg


def test_non_numeric_timestamp_ml1m_and_amazon(tmp_path):
    folder = ml1m_folder(tmp_path, "1::10::5::1\n1::20::5::nan\n")
    msg = raises(tmp_path, "ml-1m", folder)
    assert "ratings.dat, line 2:" in msg and "expected a numeric Timestamp" in msg
    amazon = tmp_path / "amazon"
    write(amazon / "reviews.json", '{"reviewerID": "A", "asin": "B", "unixReviewTime": "soon"}\n')
    msg = raises(tmp_path, "amazon2018", amazon)
    assert "reviews.json, line 1:" in msg and "expected a numeric unixReviewTime" in msg


def test_bad_encoding(tmp_path):
    folder = tmp_path / "seq"
    write(folder / "sequences.txt", BEAUTY_SEQUENCES)
    write(folder / "item_titles.tsv", b"item_id\ttitle\n1\tfine\n2\tCr\xe8me\n")  # latin-1, not UTF-8
    msg = raises(tmp_path, "sequence-file", folder)
    assert "item_titles.tsv, line 3:" in msg and "expected UTF-8 text" in msg
    # the configured encoding reads it
    ds = load(tmp_path, "sequence-file", folder, encoding="latin-1", k_core=2)
    assert ds.item_texts[2] == "Crème"


def test_bad_encoding_in_gzip(tmp_path):
    folder = tmp_path / "amazon"
    lines = _amazon_reviews().encode().splitlines(keepends=True)
    lines[4] = lines[4].replace(b'"A2"', b'"A\xff2"')
    write(folder / "reviews.json.gz", gzip.compress(b"".join(lines)))
    msg = raises(tmp_path, "amazon2018", folder)
    assert "reviews.json.gz, line 5:" in msg and "expected UTF-8 text" in msg


def test_invalid_json_line(tmp_path):
    folder = tmp_path / "amazon"
    write(folder / "reviews.json", '{"reviewerID": "A", "asin": "B", "unixReviewTime": 1}\n{"reviewerID": "A",\n')
    msg = raises(tmp_path, "amazon2018", folder)
    assert "reviews.json, line 2:" in msg and "invalid JSON" in msg and "one JSON object per line" in msg


def test_missing_json_key(tmp_path):
    folder = tmp_path / "amazon"
    write(folder / "reviews.json", _amazon_reviews())
    write(folder / "meta.json", '{"asin": "B0LEGO", "title": "ok"}\n{"title": "no asin"}\n')
    msg = raises(tmp_path, "amazon2018", folder, k_core=3)
    assert "meta.json, line 2:" in msg and "missing key(s) 'asin'" in msg
    write(folder / "reviews.json", '{"reviewerID": "A", "asin": "B", "overall": 5}\n')
    msg = raises(tmp_path, "amazon2018", folder)
    assert "reviews.json, line 1:" in msg and "'unixReviewTime'" in msg


def test_empty_file(tmp_path):
    folder = ml1m_folder(tmp_path, "\n\n")
    msg = raises(tmp_path, "ml-1m", folder)
    assert "ratings.dat" in msg and "no interactions" in msg and "UserID::MovieID" in msg


def test_empty_after_k_core(tmp_path):
    folder = ml1m_folder(tmp_path, "1::10::5::1\n1::20::5::2\n1::30::5::3\n2::10::5::1\n2::20::5::2\n2::30::5::3\n")
    msg = raises(tmp_path, "ml-1m", folder, k_core=50)
    assert "ratings.dat" in msg and "empty after iterated 50-core" in msg and ">= 50" in msg


def test_unknown_source(tmp_path):
    msg = raises(tmp_path, "movielens", tmp_path)
    assert "unknown data source 'movielens'" in msg
    assert "known sources: ml-100k, ml-1m, amazon2018, sequence-file, recbole-atomic" in msg


def test_unknown_file_key(tmp_path):
    folder = ml1m_folder(tmp_path, "1::10::5::1\n")
    msg = raises(tmp_path, "ml-1m", folder, files={"ratngs": "ratings.dat"})
    assert "unknown file key(s) 'ratngs'" in msg and "valid keys: ratings, movies" in msg


def test_path_required(tmp_path):
    msg = raises(tmp_path, "amazon2018", None)
    assert "data.path is required" in msg and "reviews.json" in msg


# ----------------------------------------------------------------------------------------------
# real data (../shared/datasets next to the repository; the embedded ml-100k always)
# ----------------------------------------------------------------------------------------------
# The same checks on synthetic files in these formats, which run everywhere:
# test_data_real_formats.py.


def _timed_load(tmp_path, data):
    start = time.perf_counter()
    ds = load_dataset(data, verbose=False)
    return ds, time.perf_counter() - start


def test_real_ml100k_embedded(tmp_path):
    ds, _ = _timed_load(tmp_path, config(tmp_path, "ml-100k", None, k_core=None, name="ml-100k"))
    assert (ds.n_users, ds.n_items, ds.stats["interactions"]) == (943, 1349, 99287)
    texts = dict(zip(ds.item_ids, ds.item_texts))
    assert texts["1"] == "Toy Story (1995), genres: Animation Children's Comedy"
    assert texts["267"] == "Item 267"  # placeholder title, year and genre
    assert ds.stats["items_without_text"] == 1
    assert_well_formed(ds, 5)


def _real(name: str) -> Path:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"real data not available at {folder}")
    return folder


def test_real_ml1m_partial(tmp_path):
    # ~1 s to parse and process 487,515 ratings (2-core CPU); the budget is well under 15 s
    folder = _real("ml-1m-partial")
    ds, seconds = _timed_load(tmp_path, config(tmp_path, "ml-1m", folder, k_core=None, name="ml-1m-partial"))
    assert (ds.n_users, ds.n_items, ds.stats["interactions"]) == (2998, 3266, 486772)
    assert ds.stats["raw_interactions"] == 487515
    texts = dict(zip(ds.item_ids, ds.item_texts))
    assert texts["73"] == "Misérables, Les (1995), genres: Drama Musical"  # ISO-8859-1
    assert ds.stats["items_without_text"] == 0
    assert seconds < 15, seconds


def test_real_amazon_beauty(tmp_path):
    # ~0.5 s for 198,502 interactions
    folder = _real("amazon-beauty")
    files = {"sequences": "Beauty.txt", "item_text": "Beauty_item_titles.tsv",
             "item_attributes": "Beauty_item2attributes.json"}
    data = config(tmp_path, "sequence-file", folder, files=files, k_core=None, name="amazon-beauty")
    ds, seconds = _timed_load(tmp_path, data)
    assert (ds.n_users, ds.n_items, ds.stats["interactions"]) == (22363, 12101, 198502)
    empty_titles = sum(
        1 for line in (folder / "Beauty_item_titles.tsv").read_text().splitlines()[1:]
        if line.split("\t")[2].strip() == ""
    )
    assert empty_titles == 7
    assert ds.stats["items_without_text"] == 7
    assert ds.stats["items_with_attributes"] == 12101
    assert ds.item_texts[1] == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"
    assert seconds < 15, seconds


# ----------------------------------------------------------------------------------------------
# cache repair, templates, text accounting
# ----------------------------------------------------------------------------------------------


def test_corrupt_cache_is_reprocessed_and_repaired(tmp_path):
    folder = ml1m_folder(tmp_path, "1::10::5::1\n1::20::5::2\n1::30::5::3\n2::10::5::1\n2::20::5::2\n2::30::5::3\n")
    first = load(tmp_path, "ml-1m", folder, k_core=2)
    (cached,) = list((tmp_path / "cache").iterdir())
    tensors = cached / "sequences.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:20])  # truncated by a crash or a full disk
    second = load(tmp_path, "ml-1m", folder, k_core=2)
    assert second.content_hash == first.content_hash
    from benchmarks.data import _load

    assert _load(cached) is not None, "the damaged cache copy was not replaced"


def test_bad_text_template_is_a_clear_error(tmp_path):
    folder = ml1m_folder(tmp_path, "1::10::5::1\n1::20::5::2\n1::30::5::3\n")
    for template in ("{title", "{0} is positional"):
        with pytest.raises(DataError, match="bad text template"):
            load(tmp_path, "ml-1m", folder, text_template=template)
    assert_no_cache(tmp_path)


def test_item_counts_as_without_text_when_template_fields_are_empty(tmp_path):
    folder = ml1m_folder(tmp_path, "1::10::5::1\n1::20::5::2\n1::30::5::3\n")
    # {nosuchfield} is never filled: every item falls back and is counted
    ds = load(tmp_path, "ml-1m", folder, text_template="{nosuchfield}")
    assert ds.stats["items_without_text"] == ds.n_items
    assert ds.item_texts[1] == "Item 10"


# ----------------------------------------------------------------------------------------------
# process() on what a loader read, directly
# ----------------------------------------------------------------------------------------------


def _raw(rows, timestamps=None, item_fields=None, files=(Path("src.csv"),)):
    from benchmarks.data.dataset import RawInteractions

    return RawInteractions(source="test", files=list(files), users=[u for u, _ in rows], items=[i for _, i in rows],
                           timestamps=None if timestamps is None else np.asarray(timestamps, dtype=np.float64),
                           item_fields=item_fields or {})


def _process(raw, **overrides):
    from benchmarks.data.dataset import process

    kwargs = dict(name="toy", k=1, repeats="first", text_template="{title}", missing_text="Item {item_id}",
                  source_hash="abc123", settings={"k_core": 1})
    kwargs.update(overrides)
    return process(raw, **kwargs)


def test_process_keeps_users_in_file_order_of_first_appearance():
    # user "b" appears first in the file but interacts later than "a"; ids are not sorted either
    rows = [("b", "1"), ("a", "1"), ("10", "1"), ("b", "2"), ("a", "2"), ("10", "2"), ("b", "3"), ("a", "3"),
            ("10", "3")]
    times = [50, 1, 20, 51, 2, 21, 52, 3, 22]
    ds = _process(_raw(rows, times))
    assert ds.user_ids == ["b", "a", "10"]
    assert [s.tolist() for s in ds.sequences] == [[1, 2, 3]] * 3


def test_process_counts_repeats_over_all_users_and_states_its_statistics():
    rows = [("u1", "5"), ("u1", "5"), ("u1", "7"), ("u1", "9"),
            ("u2", "7"), ("u2", "7"), ("u2", "7"), ("u2", "5"), ("u2", "9"), ("u2", "11"),
            ("u3", "5"), ("u3", "9"), ("u3", "11")]
    ds = _process(_raw(rows), name="stats-toy", source_hash="feed")
    assert ds.name == "stats-toy" and ds.source_hash == "feed" and ds.source == "test"
    lengths = [3, 4, 3]
    assert [len(s) for s in ds.sequences] == lengths
    assert ds.stats == {
        "users": 3, "items": 4, "interactions": 10,
        "density": 10 / (3 * 4),
        "avg_sequence_length": float(np.mean(lengths)), "median_sequence_length": 3.0, "max_sequence_length": 4,
        "raw_interactions": 13, "raw_users": 3, "raw_items": 4,
        "repeated_interactions_removed": 3,  # one of u1's, two of u2's
        "k_core": 1, "k_core_rounds": 1, "items_without_text": 4, "items_with_attributes": None,
    }


def test_process_text_blank_fields_collapsed_whitespace_and_missing_fields():
    rows = [(u, i) for u in ("1", "2", "3") for i in ("1", "2", "3")]
    fields = {"1": {"title": "  Heat \n\t (1995)  ", "genre": "Crime"},
              "2": {"title": "   ", "genre": "Drama"},   # a blank title is no text
              "3": {"genre": "Horror"}}                  # the template's {title} missing
    ds = _process(_raw(rows, item_fields=fields), text_template="{title} | {year}")
    assert ds.item_texts[1] == "Heat (1995) |"  # whitespace collapsed; a missing field is empty
    assert ds.item_texts[2:] == ["Item 2", "Item 3"]
    assert ds.stats["items_without_text"] == 2
    # the title alone (what w/o_d_TID reads), else the item's text; padding has neither
    assert ds.item_titles[0] == "" and ds.item_titles[1].split() == ["Heat", "(1995)"]
    assert ds.item_titles[2:] == ["Item 2", "Item 3"]
    with_genre = _process(_raw(rows, item_fields=fields), text_template="{title} | {genre}")
    assert with_genre.item_texts[1:] == ["Heat (1995) | Crime", "| Drama", "| Horror"]
    assert with_genre.item_titles[1].split() == ["Heat", "(1995)"] and with_genre.item_titles[2:] == ["| Drama", "| Horror"]


def test_process_errors_name_the_setting_and_the_file():
    rows = [("1", "1"), ("1", "2"), ("1", "3")]
    with pytest.raises(DataError, match=r"data\.repeats must be 'first' or 'last', got 'all'"):
        _process(_raw(rows), repeats="all")
    with pytest.raises(DataError, match=r"^src\.csv: .*Lower data\.k_core or check the source files\.$") as err:
        _process(_raw(rows), k=2)
    assert err.value.path == "src.csv" and err.value.line is None
    # a source that read no file (built in memory): the message names none
    with pytest.raises(DataError, match=r"^dataset 'toy' is empty after iterated 2-core filtering") as err:
        _process(_raw(rows, files=()), k=2)
    assert err.value.path is None


def test_data_error_names_file_and_line():
    err = DataError("expected 4 fields", path=Path("data") / "ratings.dat", line=7)
    assert str(err) == f"{Path('data') / 'ratings.dat'}, line 7: expected 4 fields"
    assert err.path == str(Path("data") / "ratings.dat") and isinstance(err.path, str) and err.line == 7
    err = DataError("no interactions", path="ratings.dat")
    assert str(err) == "ratings.dat: no interactions" and err.path == "ratings.dat" and err.line is None
    err = DataError("bad setting")
    assert str(err) == "bad setting" and err.path is None and err.line is None


def test_format_stats_summarises_the_dataset():
    from benchmarks.data.dataset import format_stats

    rows = [(u, i) for u in ("1", "2", "3") for i in ("1", "2", "3")] + [("1", "1"), ("4", "1"), ("4", "2"),
                                                                          ("4", "3"), ("4", "4")]
    ds = _process(_raw(rows, item_fields={"1": {"title": "One"}}), name="fmt")
    assert format_stats(ds) == ("fmt: 4 users, 4 items, 13 interactions, density 81.2500%, avg length 3.2 "
                                "(1-core in 1 rounds; 1 repeats removed; 3 items without text)")
    ds.stats.update(users=12345, items=6789, interactions=1234567, k_core=5, k_core_rounds=3)
    assert format_stats(ds).startswith("fmt: 12,345 users, 6,789 items, 1,234,567 interactions, ")
    assert "(5-core in 3 rounds;" in format_stats(ds)
