"""The prose of the pages: jinja2 templates under templates/, one a page kind (artefact,
accuracy-latency, protocol controls, datasets, the index) and _macros.md.j2 for what they share
(how to read a table, a table with its CSV and LaTeX links, a figure with its PDF).

Conventions: a template writes each paragraph followed by a blank line; prose may be wrapped in
the template inside `{% filter paragraph %}` (one line in the page) and `one_line` does the same
within a line; `render` ends every page with exactly one newline.
"""
from __future__ import annotations

from pathlib import Path

import jinja2

from ..statistics import ALPHA, STAR_TEST, TEST_NAMES

TEMPLATES = Path(__file__).resolve().parent / "templates"


def one_line(text) -> str:
    return " ".join(str(text).split())


ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False, trim_blocks=True,
                         lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
ENV.filters["one_line"] = one_line
ENV.filters["paragraph"] = lambda text: one_line(text) + "\n"
ENV.globals.update(alpha=ALPHA, star_test=STAR_TEST, test_names=TEST_NAMES)


def render(template: str, **context) -> str:
    return ENV.get_template(template).render(**context).rstrip("\n") + "\n"
