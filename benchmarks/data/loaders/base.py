"""What every loader shares: line reading with the file and line in every error, id and
timestamp parsing, HTML clean-up, and the `Loader` base class."""
from __future__ import annotations

import codecs
import gzip
import html
import json
import math
import re
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from ..dataset import DataError, RawInteractions


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
