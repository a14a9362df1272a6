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

from ..dataset import DataError
from .amazon import Amazon2018Loader, SequenceFileLoader
from .atomic import RecBoleAtomicLoader
from .base import Loader
from .movielens import MovieLens1MLoader, MovieLens100KLoader

__all__ = ["Loader", "LOADERS", "get_loader"]

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
