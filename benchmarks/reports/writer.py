"""The files of one build: pages, tables (markdown in the page, CSV and LaTeX beside it under
reports/tables/), figures (PNG in the page, PDF beside it under reports/figures/), and the
manifest of what the build wrote, so that a page whose records went away does not linger."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MANIFEST = ".generated"  # what the last build wrote: files it no longer writes are removed


def slug(text: str) -> str:
    """A file-name part: lower case; runs of anything but letters, digits and '_' become one '-'."""
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-") or "x"


def markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


@dataclass(frozen=True)
class TableFiles:
    """A table as a page shows it: markdown, and the links to its CSV and LaTeX twins."""

    markdown: str
    links: str


@dataclass(frozen=True)
class FigureFiles:
    """A figure as a page shows it: the PNG embedded, the PDF linked, a caption."""

    alt: str
    png: str
    pdf: str
    caption: str = ""


class Writer:
    """Writes the files of one build and remembers them (for the index and stale-file removal)."""

    def __init__(self, reports_dir: Path):
        self.root = reports_dir
        self.written: list[Path] = []

    def text(self, relative: str, content: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        self.written.append(path)
        return path

    def table(self, stem: str, frame: pd.DataFrame) -> TableFiles:
        """The table's CSV and LaTeX beside the page."""
        csv = self.text(f"tables/{stem}.csv", frame.to_csv(index=False))
        latex = frame.to_latex(index=False, escape=True).replace("±", r"$\pm$")
        tex = self.text(f"tables/{stem}.tex", latex)
        links = f"(as [CSV]({csv.relative_to(self.root)}), [LaTeX]({tex.relative_to(self.root)}))"
        return TableFiles(markdown(frame), links)

    def figure_stem(self, stem: str) -> Path:
        return self.root / "figures" / stem

    def figure(self, paths: list[Path], alt: str, caption: str = "") -> FigureFiles:
        self.written.extend(paths)
        png = next(p for p in paths if p.suffix == ".png").relative_to(self.root)
        pdf = next(p for p in paths if p.suffix == ".pdf").relative_to(self.root)
        return FigureFiles(alt, str(png), str(pdf), caption)

    def remove_stale(self) -> None:
        """Delete the files the previous build wrote and this one did not (a page whose records
        went away must not linger). Only files listed in the previous manifest are touched."""
        manifest = self.root / MANIFEST
        now = {str(p.relative_to(self.root)) for p in self.written}
        if manifest.is_file():
            for name in manifest.read_text().splitlines():
                path = self.root / name
                if name and name not in now and path.is_file() and ".." not in Path(name).parts:
                    path.unlink()
        manifest.write_text("\n".join(sorted(now)) + "\n")
