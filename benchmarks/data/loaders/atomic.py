"""Any RecBole atomic dataset folder (`<name>.inter`, optional `<name>.item`)."""
from __future__ import annotations

from pathlib import Path

from ..dataset import DataError
from .base import Loader, _SPACE, _count_error, _lines, _no_interactions, _raw, _timestamp


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
