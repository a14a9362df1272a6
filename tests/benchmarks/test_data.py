"""Data loading: every source loader, the shared processing protocol, the cache and the real
datasets (skipped when ../shared/datasets is absent). Bad inputs, cache repair and process() on
what a loader read: test_data_errors.py; the source files both write: data_files.py.

Every test writes its source files and its cache under pytest's tmp_path.
"""
from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from benchmarks.data import LOADERS, DataError, load_dataset
from benchmarks.data.loaders import get_loader
from tests.benchmarks.data_files import (
    BEAUTY_ATTRIBUTES, BEAUTY_SEQUENCES, BEAUTY_TITLES, _amazon_meta, _amazon_reviews, assert_no_cache,
    assert_well_formed, config, load, ml1m_folder, sequences_by_user, write,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"


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
