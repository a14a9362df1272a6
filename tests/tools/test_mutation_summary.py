"""tools/mutation_summary.py on a made-up mutmut result: the counts, both kill rates, the partial
note and the equivalents' bookkeeping (mutmut itself is not needed: its exit codes are given)."""
import json

import pytest

from tools.mutation_summary import summary

# mutmut's exit code -> status (the subset of mutmut.stats.status_by_exit_code these results use)
STATUS = {1: "killed", 36: "timeout", 0: "survived", 33: "no tests", None: "not checked", -11: "segfault"}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.mutmut]\nonly_mutate = ["pkg/a.py", "pkg/b.py"]\n')

    def results(module, codes):
        meta = tmp_path / "mutants" / (module + ".meta")
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": codes}))

    def equivalents(text):
        (tmp_path / "tests").mkdir(exist_ok=True)
        (tmp_path / "tests" / "mutation_equivalents.yaml").write_text(text)

    return tmp_path, results, equivalents


def table_row(page, module):
    line = next(line for line in page.splitlines() if line.startswith(f"| {module}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_counts_rates_and_equivalents(project):
    root, results, equivalents = project
    # a: 6 killed, 1 timeout, 3 survivors of which 2 are listed as equivalent
    results("pkg/a.py", {**{f"pkg.a.x_f__mutmut_{i}": 1 for i in range(1, 7)}, "pkg.a.x_f__mutmut_7": 36,
                         "pkg.a.x_f__mutmut_8": 0, "pkg.a.x_g__mutmut_1": 0, "pkg.a.x_g__mutmut_2": 33})
    # b: 3 killed, 1 crashed (counted, not detected)
    results("pkg/b.py", {"pkg.b.x_h__mutmut_1": 1, "pkg.b.x_h__mutmut_2": 1, "pkg.b.x_h__mutmut_3": 1,
                         "pkg.b.x_h__mutmut_4": -11})
    equivalents("reasons:\n  same: it does the same\n  unused: not used\n  cpu: a no-op on the CPU\n"
                "cpu_only_reasons: [cpu]\n"
                "equivalent:\n  pkg.a.x_f__mutmut_8: same\n  pkg.a.x_g__mutmut_2: cpu\n"
                "  pkg.b.x_h__mutmut_1: same\n")
    page = summary("2026-01-02", "5 min", root=root, status_of=STATUS, one_line=lambda name, path: f"change {name}")
    # mutants, killed, timeout, survived, no tests, other, equivalent, raw rate, excl. equivalent
    assert table_row(page, "`pkg/a.py`")[1:] == ["10", "6", "1", "2", "1", "0", "2", "70.0%", "87.5%"]
    assert table_row(page, "`pkg/b.py`")[1:] == ["4", "3", "0", "0", "0", "1", "0", "75.0%", "75.0%"]
    assert table_row(page, "**all**")[1:] == ["14", "9", "1", "2", "1", "1", "2", "71.4%", "83.3%"]
    assert "Run: 2026-01-02; 5 min." in page and "Partial" not in page
    # every survivor named with its change; the listed ones with their reason, the rest flagged
    assert "- `f__mutmut_8`: `change pkg.a.x_f__mutmut_8` — equivalent (same)" in page
    assert "- `g__mutmut_1`: `change pkg.a.x_g__mutmut_1` — **not classified**" in page
    assert "- **same**: it does the same" in page and "unused" not in page  # only the reasons used
    assert ("3 survived or had no test; 2 of them are listed as equivalent, each with its reason, 1 of those "
            "only on the CPU the run used (cpu: they would differ with tensors on an accelerator).") in page
    assert "- `pkg/b.py` `pkg.b.x_h__mutmut_4`: segfault" in page
    # listed as equivalent but killed: named so the list can be cleaned
    assert page.rstrip().endswith("- `pkg.b.x_h__mutmut_1`")


def test_partial_runs_say_so_and_unknown_reasons_are_refused(project):
    root, results, equivalents = project
    results("pkg/a.py", {"pkg.a.x_f__mutmut_1": 1, "pkg.a.x_f__mutmut_2": None})
    results("pkg/b.py", {"pkg.b.x_h__mutmut_1": None})
    page = summary("d", None, root=root, status_of=STATUS, one_line=lambda name, path: "")
    assert "**Partial**: 2 of 3 mutants were not checked" in page
    assert table_row(page, "`pkg/a.py` (1 not checked)")[1:] == ["2", "1", "0", "0", "0", "0", "0", "50.0%", "50.0%"]
    equivalents("reasons: {}\nequivalent:\n  pkg.a.x_f__mutmut_2: missing\n")
    with pytest.raises(SystemExit, match="reasons not defined: missing"):
        summary("d", None, root=root, status_of=STATUS, one_line=lambda name, path: "")
    (root / "mutants" / "pkg" / "b.py.meta").unlink()
    equivalents("")
    with pytest.raises(SystemExit, match="no results for pkg/b.py under mutants/"):
        summary("d", None, root=root, status_of=STATUS, one_line=lambda name, path: "")
