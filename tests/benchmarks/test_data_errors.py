"""Data loading, what goes wrong: every bad input one clear DataError with nothing cached, a
damaged cache repaired, bad text templates, items counted as without text, and process() on what
a loader read, directly (user order, repeats and statistics, text fields, errors naming the file)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from benchmarks.data import DataError
from tests.benchmarks.data_files import (
    BEAUTY_SEQUENCES, ML1M_MOVIES, _amazon_reviews, assert_no_cache, load, ml1m_folder, write,
)


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
