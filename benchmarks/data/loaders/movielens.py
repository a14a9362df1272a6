"""MovieLens: the GroupLens ml-1m folder and the RecBole atomic ml-100k embedded in the recbole wheel."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ..dataset import DataError
from .atomic import RecBoleAtomicLoader
from .base import Loader, _SPACE, _TITLE_YEAR, _YEAR, _count_error, _int_id, _lines, _no_interactions, _raw, _timestamp


class MovieLens1MLoader(Loader):
    """GroupLens MovieLens-1M: `ratings.dat` (UserID::MovieID::Rating::Timestamp) and
    `movies.dat` (MovieID::Title::Genres, genres separated by '|'), ISO-8859-1.

    Text fields: title (as in the file, with the year: "Toy Story (1995)"), year (taken from the
    title), genres (space-joined). Attributes: the genres. Both files are required: without
    movies.dat every item would silently get the fallback text."""

    name = "ml-1m"
    default_k_core = 5
    default_text_template = "{title}, genres: {genres}"
    default_encoding = "iso-8859-1"
    required_files = {"ratings": "ratings.dat", "movies": "movies.dat"}
    optional_files = {}

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
