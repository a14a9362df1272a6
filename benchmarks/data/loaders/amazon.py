"""Amazon: one category of the 2018 review data (reviews and metadata JSON lines), and the
S3-Rec / SASRec sequence-file layout."""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..dataset import DataError
from .base import Loader, _SPACE, _clean_html, _count_error, _encoding_label, _int_id, _json_line, _lines, _no_interactions, _raw, _require_keys, _timestamp


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
