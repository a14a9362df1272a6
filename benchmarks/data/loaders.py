"""Data sources: one `Loader` per source format, each turning its files into `RawInteractions`.

A loader knows its files (`required_files` / `optional_files`: file key -> default file name,
overridable with `data.files`), its default k-core, its default item-text template and its
default encoding. `resolve_files()` maps the config's `path` and `files` to concrete paths;
`read()` parses them. Everything after reading (time order, repeats, k-core, re-indexing, text
fallback) is `dataset.process()`, shared by all sources.

Parsing is by hand, line by line, so that every error names the file, the 1-based line and what
was expected (`DataError`). Each line is decoded on its own: a byte that is not valid in the
configured encoding is reported with its line number.

Sources (`LOADERS`):

- ``ml-100k``: the RecBole atomic MovieLens-100k (`ml-100k.inter`, `ml-100k.item`); with no
  `path`, the copy embedded in the recbole wheel. Text fields title, year, genres.
- ``ml-1m``: the GroupLens MovieLens-1M folder (`ratings.dat`, `movies.dat`, ISO-8859-1).
- ``amazon2018``: one category of the Amazon 2018 review data (reviews and metadata JSON lines,
  plain or gzip).
- ``sequence-file``: the S3-Rec / SASRec layout, one line `user item item ...` per user, with an
  optional item-title TSV and an optional item-attributes JSON.
- ``recbole-atomic``: any RecBole atomic dataset folder (`<name>.inter`, optional `<name>.item`).
"""
from __future__ import annotations

import codecs
import gzip
import html
import importlib.util
import json
import math
import re
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from .dataset import DataError, RawInteractions

__all__ = ["Loader", "LOADERS", "get_loader"]

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_TITLE_YEAR = re.compile(r"^(.*\S)\s*\((\d{4})\)\s*$")
_YEAR = re.compile(r"\d{4}")


# --------------------------------------------------------------------------------------------
# Shared parsing helpers
# --------------------------------------------------------------------------------------------


def _encoding_label(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name.upper()
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r} in data.encoding") from None


def _is_gzip(path: Path) -> bool:
    if path.suffix == ".gz":
        return True
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text without the line break) for every non-blank line.

    Each line is decoded separately so a decoding error knows its line. A UTF-8 byte-order mark
    on the first line is dropped. Gzip files (by suffix or magic bytes) are decompressed."""
    label = _encoding_label(encoding)
    compressed = _is_gzip(path)
    line_no = 0
    handle = gzip.open(path, "rb") if compressed else open(path, "rb")
    try:
        for line_no, raw in enumerate(handle, 1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as err:
                raise DataError(
                    f"byte 0x{raw[err.start]:02x} at column {err.start + 1} cannot be decoded; "
                    f"expected {label} text (set data.encoding if the file uses another encoding)",
                    path=path,
                    line=line_no,
                ) from None
            if line_no == 1 and text.startswith("\ufeff"):
                text = text[1:]
            text = text.rstrip("\r\n")
            if text and not text.isspace():
                yield line_no, text
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(
            f"cannot decompress after line {line_no} ({err}); expected a complete gzip file",
            path=path,
        ) from None
    finally:
        handle.close()


def _count_error(path: Path, line_no: int, n: int, sep: str, layout: str, found: int) -> DataError:
    hint = "wrong delimiter?" if found == 1 else "wrong column count?"
    return DataError(
        f"expected {n} fields separated by {sep!r} ({layout}), found {found} — {hint}",
        path=path,
        line=line_no,
    )


def _int_id(value: str, what: str, path: Path, line_no: int) -> str:
    """An integer id, as its canonical string (no sign, no leading zeros)."""
    if value.isdigit() and value.isascii():
        if len(value) > 1 and value[0] == "0":
            value = value.lstrip("0") or "0"
        return value
    raise DataError(f"expected a non-negative integer {what}, found {value!r}", path=path, line=line_no)


def _timestamp(value, what: str, path: Path, line_no: int) -> float:
    """A finite number (seconds since the epoch); strings are parsed, booleans refused."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise DataError(
            f"expected a numeric {what} (seconds since the epoch), found {value!r}",
            path=path,
            line=line_no,
        )
    return number


def _json_line(text: str, path: Path, line_no: int) -> dict:
    try:
        obj = json.loads(text)
    except ValueError as err:
        msg = getattr(err, "msg", str(err))
        col = getattr(err, "colno", None)
        where = f" at column {col}" if col else ""
        raise DataError(
            f"invalid JSON ({msg}{where}); expected one JSON object per line (JSON lines)",
            path=path,
            line=line_no,
        ) from None
    if not isinstance(obj, dict):
        raise DataError(
            f"expected a JSON object per line, found a JSON {type(obj).__name__}",
            path=path,
            line=line_no,
        )
    return obj


def _require_keys(obj: dict, keys: tuple[str, ...], what: str, path: Path, line_no: int) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        expected = ", ".join(repr(k) for k in keys)
        raise DataError(
            f"missing key(s) {', '.join(repr(k) for k in missing)}; expected {what} with {expected}",
            path=path,
            line=line_no,
        )


def _clean_html(text: str) -> str:
    """Strip HTML tags, unescape entities, collapse whitespace."""
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    return _SPACE.sub(" ", text).strip()


def _no_interactions(path: Path, expected: str) -> DataError:
    return DataError(f"no interactions found (the file is empty); expected {expected}", path=path)


def _raw(source: str, files: list[Path], users, items, timestamps, fields, attributes):
    ts = None if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    return RawInteractions(
        source=source,
        files=files,
        users=users,
        items=items,
        timestamps=ts,
        item_fields=fields,
        item_attributes=attributes,
    )


# --------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------


class Loader:
    """One source format.

    Attributes: `name` (the `data.source` value), `default_k_core`, `default_text_template`
    (a `str.format` template over the item's text fields; missing fields format as empty string,
    whitespace is collapsed afterwards by `process()`), `default_encoding`, and `required_files` /
    `optional_files`: file key -> default file name (relative to `data.path`).
    """

    name: str = ""
    embedded: bool = False   # finds its files without a data.path (default_path)
    default_k_core: int = 5
    default_text_template: str = "{title}"
    default_encoding: str = "utf-8"
    required_files: dict[str, str] = {}
    optional_files: dict[str, str] = {}

    # -- files ---------------------------------------------------------------------------------

    def default_path(self) -> Path | None:
        """Folder used when `data.path` is null (only the embedded ml-100k has one)."""
        return None

    def file_names(self, folder: Path, overrides: dict) -> tuple[dict[str, str], dict[str, str]]:
        """Default (required, optional) file names for this folder; subclasses may look at the
        folder or at the overrides (e.g. a dataset name)."""
        return dict(self.required_files), dict(self.optional_files)

    def resolve_files(self, path, overrides: dict | None = None) -> dict[str, Path]:
        """{file key: path} for the required files (folder / name) and for the optional files
        that are configured or present on disk. `path` is the source folder, or (for convenience)
        the first required file itself, whose folder then holds the others. An override maps a
        file key to a name inside the folder (or an absolute path); null drops an optional file."""
        overrides = dict(overrides or {})
        valid = list(self.required_files) + list(self.optional_files)
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise DataError(
                f"unknown file key(s) {', '.join(repr(k) for k in unknown)} in data.files for "
                f"source '{self.name}'; valid keys: {', '.join(valid)}"
            )
        for key, value in overrides.items():
            if value is not None and not isinstance(value, (str, Path)):
                raise DataError(f"data.files.{key} must be a file name, got {value!r}")
        if path is None or path == "":
            folder = self.default_path()
            if folder is None:
                raise DataError(
                    f"data.path is required for source '{self.name}': the folder holding its "
                    f"files ({', '.join(f'{k}: {v}' for k, v in self.required_files.items())})"
                )
        else:
            folder = Path(path).expanduser()
            if folder.is_file():
                primary = next(iter(self.required_files))
                if overrides.get(primary) not in (None, folder.name):
                    raise DataError(
                        f"data.path is the file {folder} but data.files.{primary} names "
                        f"{overrides[primary]!r}; give the folder as data.path, or drop one"
                    )
                overrides[primary] = folder.name
                folder = folder.parent
        required, optional = self.file_names(folder, overrides)
        files: dict[str, Path] = {}
        for key, default in required.items():
            name = overrides.get(key, default)
            if not name:
                raise DataError(f"data.files.{key} is required for source '{self.name}'")
            files[key] = folder / name
        for key, default in optional.items():
            if key in overrides:
                if overrides[key]:
                    files[key] = folder / overrides[key]
            elif default and (folder / default).is_file():
                files[key] = folder / default
        return files

    # -- reading -------------------------------------------------------------------------------

    def read(self, files: dict[str, Path], encoding: str | None = None) -> RawInteractions:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# --------------------------------------------------------------------------------------------
# MovieLens-1M (GroupLens .dat files)
# --------------------------------------------------------------------------------------------


class MovieLens1MLoader(Loader):
    """GroupLens MovieLens-1M: `ratings.dat` (UserID::MovieID::Rating::Timestamp) and
    `movies.dat` (MovieID::Title::Genres, genres separated by '|'), ISO-8859-1.

    Text fields: title (as in the file, with the year: "Toy Story (1995)"), year (taken from the
    title), genres (space-joined). Attributes: the genres."""

    name = "ml-1m"
    default_k_core = 5
    default_text_template = "{title}, genres: {genres}"
    default_encoding = "iso-8859-1"
    required_files = {"ratings": "ratings.dat"}
    optional_files = {"movies": "movies.dat"}

    def read(self, files, encoding=None):
        encoding = encoding or self.default_encoding
        path = files["ratings"]
        users, items, times = [], [], []
        layout = "UserID::MovieID::Rating::Timestamp"
        for line_no, text in _lines(path, encoding):
            parts = text.split("::")
            if len(parts) != 4:
                raise _count_error(path, line_no, 4, "::", layout, len(parts))
            users.append(_int_id(parts[0], "UserID", path, line_no))
            items.append(_int_id(parts[1], "MovieID", path, line_no))
            times.append(_timestamp(parts[3], "Timestamp", path, line_no))
        if not users:
            raise _no_interactions(path, f"one rating per line ({layout})")
        fields, attributes = {}, None
        if "movies" in files:
            fields, attributes = self._read_movies(files["movies"], encoding)
        return _raw(self.name, list(files.values()), users, items, times, fields, attributes)

    @staticmethod
    def _read_movies(path: Path, encoding: str):
        fields: dict[str, dict[str, str]] = {}
        attributes: dict[str, list[str]] = {}
        for line_no, text in _lines(path, encoding):
            parts = text.split("::")
            if len(parts) != 3:
                raise _count_error(path, line_no, 3, "::", "MovieID::Title::Genres", len(parts))
            item = _int_id(parts[0], "MovieID", path, line_no)
            if item in fields:
                continue
            title = parts[1].strip()
            match = _TITLE_YEAR.match(title)
            genres = [g.strip() for g in parts[2].split("|")]
            genres = [g for g in genres if g and g != "(no genres listed)"]
            fields[item] = {
                "title": title,
                "year": match.group(2) if match else "",
                "genres": " ".join(genres),
            }
            attributes[item] = genres
        return fields, attributes


# --------------------------------------------------------------------------------------------
# RecBole atomic files (and the embedded ml-100k)
# --------------------------------------------------------------------------------------------


class RecBoleAtomicLoader(Loader):
    """Any RecBole atomic dataset folder: `<name>.inter` (tab-separated, header `field:type`, with
    user_id, item_id and timestamp fields) and optionally `<name>.item` (item_id plus any other
    columns). The dataset name is the folder name, or the stem of `data.files.inter`.

    Text fields: every non-id column of the `.item` file under its field name, plus `all_fields`:
    "field: value" for each non-empty column, joined by ", " (the default template is
    "{all_fields}", so an empty column leaves no dangling label). No attributes."""

    name = "recbole-atomic"
    default_k_core = 5
    default_text_template = "{all_fields}"
    required_files = {"inter": "{name}.inter"}
    optional_files = {"item": "{name}.item"}
    USER, ITEM, TIME = "user_id", "item_id", "timestamp"

    def dataset_name(self, folder: Path, overrides: dict) -> str:
        if overrides.get("inter"):
            name = Path(overrides["inter"]).name
            return name[: -len(".inter")] if name.endswith(".inter") else Path(name).stem
        return folder.resolve().name

    def file_names(self, folder, overrides):
        name = self.dataset_name(folder, overrides)
        required = {k: v.format(name=name) for k, v in self.required_files.items()}
        optional = {k: v.format(name=name) for k, v in self.optional_files.items()}
        return required, optional

    @staticmethod
    def _header(path: Path, line_no: int, text: str) -> list[str]:
        names = []
        for column in text.split("\t"):
            name, sep, kind = column.partition(":")
            if not sep or not name.strip() or not kind.strip():
                raise DataError(
                    "expected a RecBole header of tab-separated 'field:type' columns "
                    f"(e.g. 'user_id:token<TAB>item_id:token<TAB>timestamp:float'), found {column!r}",
                    path=path,
                    line=line_no,
                )
            names.append(name.strip())
        return names

    @staticmethod
    def _column(names: list[str], field: str, path: Path, line_no: int) -> int:
        if field not in names:
            hint = " — wrong delimiter? atomic files are tab-separated" if len(names) == 1 else ""
            raise DataError(
                f"the header has no '{field}' field; expected fields named "
                f"{RecBoleAtomicLoader.USER}, {RecBoleAtomicLoader.ITEM} and "
                f"{RecBoleAtomicLoader.TIME} (found: {', '.join(names)}){hint}",
                path=path,
                line=line_no,
            )
        return names.index(field)

    def read(self, files, encoding=None):
        encoding = encoding or self.default_encoding
        path = files["inter"]
        users, items, times = [], [], []
        lines = _lines(path, encoding)
        header = next(lines, None)
        if header is None:
            raise _no_interactions(path, "a 'field:type' header line, then one interaction per line")
        names = self._header(path, *header)
        u_col, i_col, t_col = (self._column(names, f, path, header[0]) for f in (self.USER, self.ITEM, self.TIME))
        n, layout = len(names), ", ".join(names)
        for line_no, text in lines:
            parts = text.split("\t")
            if len(parts) != n:
                raise _count_error(path, line_no, n, "\t", layout, len(parts))
            user, item = parts[u_col].strip(), parts[i_col].strip()
            if not user or not item:
                raise DataError(
                    f"empty {self.USER if not user else self.ITEM}; expected a token in every "
                    f"{self.USER} and {self.ITEM} column",
                    path=path,
                    line=line_no,
                )
            users.append(user)
            items.append(item)
            times.append(_timestamp(parts[t_col], self.TIME, path, line_no))
        if not users:
            raise _no_interactions(path, f"one interaction per line after the header ({layout})")
        fields, attributes = {}, None
        if "item" in files:
            fields, attributes = self._read_items(files["item"], encoding)
        return _raw(self.name, list(files.values()), users, items, times, fields, attributes)

    def _read_items(self, path: Path, encoding: str):
        lines = _lines(path, encoding)
        header = next(lines, None)
        if header is None:
            raise DataError(
                f"the file is empty; expected a 'field:type' header line with an {self.ITEM} field",
                path=path,
            )
        names = self._header(path, *header)
        if self.ITEM not in names:
            raise DataError(
                f"the header has no '{self.ITEM}' field (found: {', '.join(names)})",
                path=path,
                line=header[0],
            )
        i_col, n, layout = names.index(self.ITEM), len(names), ", ".join(names)
        fields: dict[str, dict[str, str]] = {}
        attributes: dict[str, list[str]] | None = None
        for line_no, text in lines:
            parts = text.split("\t")
            if len(parts) != n:
                raise _count_error(path, line_no, n, "\t", layout, len(parts))
            item = parts[i_col].strip()
            if not item or item in fields:
                continue
            row = {name: parts[j].strip() for j, name in enumerate(names) if j != i_col}
            item_fields, item_attrs = self.item_record(row)
            fields[item] = item_fields
            if item_attrs is not None:
                attributes = {} if attributes is None else attributes
                attributes[item] = item_attrs
        return fields, attributes

    def item_record(self, row: dict[str, str]) -> tuple[dict[str, str], list[str] | None]:
        """Text fields and attributes of one `.item` row (column name -> value)."""
        fields = {name: _SPACE.sub(" ", value) for name, value in row.items()}
        fields["all_fields"] = ", ".join(f"{name}: {value}" for name, value in fields.items() if value)
        return fields, None


class MovieLens100KLoader(RecBoleAtomicLoader):
    """RecBole's MovieLens-100k (`ml-100k.inter`, `ml-100k.item`); with no `data.path`, the copy
    embedded in the recbole wheel.

    Text fields: title (movie_title), year (release_year), genres (class, space-joined).
    Attributes: the genre tokens. The placeholders "unkonwn" (sic) / "unknown" are missing
    values (item 267 has no text at all and gets the fallback); a release year that is not a year
    (item 1412: "V") is taken from a "(1995)" at the end of the title when there is one."""

    name = "ml-100k"
    embedded = True
    default_k_core = 5
    default_text_template = "{title} ({year}), genres: {genres}"
    required_files = {"inter": "ml-100k.inter", "item": "ml-100k.item"}
    optional_files = {}
    PLACEHOLDERS = {"unknown", "unkonwn"}

    def default_path(self) -> Path | None:
        spec = importlib.util.find_spec("recbole")
        if spec is None or spec.origin is None:
            raise DataError(
                "the embedded ml-100k is read from the recbole package, which is not installed; "
                "install recbole or give data.path (a folder with ml-100k.inter and ml-100k.item)"
            )
        return Path(spec.origin).parent / "dataset_example" / "ml-100k"

    def file_names(self, folder, overrides):
        return dict(self.required_files), dict(self.optional_files)

    def item_record(self, row):
        def value(name):
            text = _SPACE.sub(" ", row.get(name, "")).strip()
            return "" if text.lower() in self.PLACEHOLDERS else text

        title, year = value("movie_title"), value("release_year")
        if year and not _YEAR.fullmatch(year):
            year = ""
        if not year and title:
            match = _TITLE_YEAR.match(title)
            if match:
                title, year = match.group(1), match.group(2)
        genres = [g for g in row.get("class", "").split() if g.lower() not in self.PLACEHOLDERS]
        return {"title": title, "year": year, "genres": " ".join(genres)}, genres


# --------------------------------------------------------------------------------------------
# Amazon 2018 (McAuley lab) reviews + metadata, JSON lines
# --------------------------------------------------------------------------------------------


class Amazon2018Loader(Loader):
    """One category of the Amazon 2018 review data: reviews JSON lines (`reviewerID`, `asin`,
    `unixReviewTime`) and optional metadata JSON lines (`asin`, `title`, `brand`, `category`: a
    list), each plain or gzip (by the `.gz` suffix or the gzip magic bytes).

    Default names: reviews.json and meta.json (or with .gz); with a reviews file named e.g.
    `Toys_and_Games.json.gz`, the metadata defaults to `meta_Toys_and_Games.json.gz` when it is
    there. Text fields: title, brand, categories (", "-joined), HTML tags stripped and entities
    unescaped, plus `all_fields`: the non-empty ones as "title, brand: ..., categories: ...", the
    default template, so a product without a brand reads "Uno, categories: Games" rather than
    "Uno, brand: , categories: Games". Attributes: the brand, then the categories."""

    name = "amazon2018"
    default_k_core = 10
    default_text_template = "{all_fields}"
    required_files = {"reviews": "reviews.json"}
    optional_files = {"meta": "meta.json"}
    REVIEW_KEYS = ("reviewerID", "asin", "unixReviewTime")

    def file_names(self, folder, overrides):
        def existing(*names):
            for name in names:
                if (folder / name).is_file():
                    return name
            return names[0]

        reviews = existing("reviews.json", "reviews.json.gz")
        reviews_name = Path(overrides.get("reviews") or reviews).name
        meta_names = ["meta.json", "meta.json.gz"]
        if reviews_name not in ("reviews.json", "reviews.json.gz"):
            meta_names.insert(0, "meta_" + reviews_name)
        meta = existing(*meta_names)
        return {"reviews": reviews}, {"meta": meta}

    @staticmethod
    def _id(obj: dict, key: str, path: Path, line_no: int) -> str:
        value = obj[key]
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"expected {key!r} to be a non-empty string, found {value!r}", path=path, line=line_no)
        return value.strip()

    def read(self, files, encoding=None):
        encoding = encoding or self.default_encoding
        path = files["reviews"]
        users, items, times = [], [], []
        for line_no, text in _lines(path, encoding):
            obj = _json_line(text, path, line_no)
            _require_keys(obj, self.REVIEW_KEYS, "a review object", path, line_no)
            users.append(self._id(obj, "reviewerID", path, line_no))
            items.append(self._id(obj, "asin", path, line_no))
            times.append(_timestamp(obj["unixReviewTime"], "unixReviewTime", path, line_no))
        if not users:
            raise _no_interactions(path, "one review JSON object per line")
        fields, attributes = {}, None
        if "meta" in files:
            fields, attributes = self._read_meta(files["meta"], encoding)
        return _raw(self.name, list(files.values()), users, items, times, fields, attributes)

    def _read_meta(self, path: Path, encoding: str):
        fields: dict[str, dict[str, str]] = {}
        attributes: dict[str, list[str]] = {}
        for line_no, text in _lines(path, encoding):
            obj = _json_line(text, path, line_no)
            _require_keys(obj, ("asin",), "a metadata object", path, line_no)
            item = self._id(obj, "asin", path, line_no)
            if item in fields:  # the 2018 metadata repeats some products: keep the first
                continue
            title = obj.get("title")
            title = _clean_html(title) if isinstance(title, str) else ""
            brand = obj.get("brand")
            brand = _clean_html(brand) if isinstance(brand, str) else ""
            categories = obj.get("category")
            if isinstance(categories, str):
                categories = [categories]
            if not isinstance(categories, list):
                categories = []
            cats: list[str] = []
            for category in categories:
                if isinstance(category, str):
                    category = _clean_html(category)
                    if category and category not in cats:
                        cats.append(category)
            joined = ", ".join(cats)
            summary = [title] if title else []
            summary += [f"brand: {brand}"] if brand else []
            summary += [f"categories: {joined}"] if joined else []
            fields[item] = {"title": title, "brand": brand, "categories": joined,
                            "all_fields": ", ".join(summary)}
            attributes[item] = ([brand] if brand else []) + [c for c in cats if c != brand]
        return fields, attributes


# --------------------------------------------------------------------------------------------
# S3-Rec / SASRec sequence files
# --------------------------------------------------------------------------------------------


class SequenceFileLoader(Loader):
    """The S3-Rec / SASRec layout: one line per user, `user_id item_id item_id ...` (integers,
    whitespace-separated, already in time order: no timestamps). Optional item-text TSV (header
    row with `item_id` and `title` columns; every other column except identifiers like `asin`
    becomes a text field; HTML entities are unescaped) and optional item-attributes JSON (an
    object: item id -> list of attribute ids). `data.path` may be the sequences file itself."""

    name = "sequence-file"
    default_k_core = 5
    default_text_template = "{title}"
    required_files = {"sequences": "sequences.txt"}
    optional_files = {"item_text": "item_titles.tsv", "item_attributes": "item2attributes.json"}
    ID_COLUMNS = {"item_id", "asin", "parent_asin"}

    def read(self, files, encoding=None):
        encoding = encoding or self.default_encoding
        path = files["sequences"]
        users, items = [], []
        seen: dict[str, int] = {}
        for line_no, text in _lines(path, encoding):
            parts = text.split()
            if not "".join(parts).isdigit() or not text.isascii():
                for j, token in enumerate(parts):
                    if not (token.isdigit() and token.isascii()):
                        what = "user id" if j == 0 else "item id"
                        hint = " — wrong delimiter?" if any(c in token for c in ",;|:") else ""
                        raise DataError(
                            "expected integer ids separated by spaces (user_id item_id item_id "
                            f"...), found {what} {token!r}{hint}",
                            path=path,
                            line=line_no,
                        )
            parts = [p.lstrip("0") or "0" if p[0] == "0" else p for p in parts]
            user = parts[0]
            if user in seen:
                raise DataError(
                    f"user {user} already has a line (line {seen[user]}); expected one line per user",
                    path=path,
                    line=line_no,
                )
            seen[user] = line_no
            users.extend([user] * (len(parts) - 1))
            items.extend(parts[1:])
        if not users:
            raise _no_interactions(path, "one line per user: user_id item_id item_id ...")
        fields: dict[str, dict[str, str]] = {}
        attributes = None
        if "item_text" in files:
            fields = self._read_text(files["item_text"], encoding)
        if "item_attributes" in files:
            attributes = self._read_attributes(files["item_attributes"], encoding)
        return _raw(self.name, list(files.values()), users, items, None, fields, attributes)

    def _read_text(self, path: Path, encoding: str) -> dict[str, dict[str, str]]:
        lines = _lines(path, encoding)
        header = next(lines, None)
        names = [] if header is None else [n.strip() for n in header[1].split("\t")]
        if header is None or "item_id" not in names or "title" not in names:
            found = "an empty file" if header is None else f"columns {names}"
            hint = " — wrong delimiter?" if len(names) == 1 else ""
            raise DataError(
                f"expected a tab-separated header row with 'item_id' and 'title' columns, "
                f"found {found}{hint}",
                path=path,
                line=None if header is None else header[0],
            )
        i_col, n, layout = names.index("item_id"), len(names), ", ".join(names)
        text_cols = [(j, name) for j, name in enumerate(names) if name not in self.ID_COLUMNS]
        fields: dict[str, dict[str, str]] = {}
        first_line: dict[str, int] = {}
        for line_no, text in lines:
            parts = text.split("\t")
            if len(parts) != n:
                raise _count_error(path, line_no, n, "\t", layout, len(parts))
            item = _int_id(parts[i_col].strip(), "item_id", path, line_no)
            if item in first_line:
                raise DataError(
                    f"item {item} already listed on line {first_line[item]}; expected one row per item",
                    path=path,
                    line=line_no,
                )
            first_line[item] = line_no
            row = {}
            for j, name in text_cols:
                value = parts[j]
                if "&" in value:
                    value = html.unescape(value)
                row[name] = _SPACE.sub(" ", value).strip()
            fields[item] = row
        return fields

    @staticmethod
    def _read_attributes(path: Path, encoding: str) -> dict[str, list[str]]:
        label = _encoding_label(encoding)
        data = path.read_bytes()
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as err:
            raise DataError(
                f"byte 0x{data[err.start]:02x} cannot be decoded; expected {label} text",
                path=path,
                line=data.count(b"\n", 0, err.start) + 1,
            ) from None
        try:
            obj = json.loads(text.lstrip("\ufeff"))
        except json.JSONDecodeError as err:
            raise DataError(
                f"invalid JSON ({err.msg} at column {err.colno}); expected one JSON object "
                "mapping item ids to lists of attribute ids",
                path=path,
                line=err.lineno,
            ) from None
        if not isinstance(obj, dict):
            raise DataError(
                f"expected a JSON object mapping item ids to lists of attribute ids, found a JSON "
                f"{type(obj).__name__}",
                path=path,
            )
        attributes: dict[str, list[str]] = {}
        for key, values in obj.items():
            key_s = str(key).strip()
            if not (key_s.isdigit() and key_s.isascii()):
                raise DataError(f"expected integer item ids as keys, found {key!r}", path=path)
            if not isinstance(values, list) or not all(
                isinstance(v, (int, str)) and not isinstance(v, bool) for v in values
            ):
                raise DataError(
                    f"item {key!r}: expected a list of attribute ids, found {json.dumps(values)[:80]}",
                    path=path,
                )
            attributes[key_s.lstrip("0") or "0"] = [str(v) for v in values]
        return attributes


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

LOADERS: dict[str, Loader] = {
    loader.name: loader
    for loader in (
        MovieLens100KLoader(),
        MovieLens1MLoader(),
        Amazon2018Loader(),
        SequenceFileLoader(),
        RecBoleAtomicLoader(),
    )
}


def get_loader(name: str) -> Loader:
    """The loader for a `data.source` name."""
    try:
        return LOADERS[name]
    except (KeyError, TypeError):
        raise DataError(
            f"unknown data source {name!r}; known sources: {', '.join(LOADERS)}"
        ) from None
