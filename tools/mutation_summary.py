"""The last mutation-testing run (mutmut, configured in pyproject.toml) as a markdown summary.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 19 mutmut run --max-children 1   # writes mutants/ (git-ignored)
    python -m tools.mutation_summary --duration "..." > tests/mutation_summary.md

Reads mutmut's per-file results under mutants/ and prints, per protocol module, the mutants,
those killed (a test failed), timed out (the mutant looped; detected), survived and without tests,
and the kill rate twice: raw, (killed + timeouts) / mutants, and excluding the survivors listed as
equivalent in tests/mutation_equivalents.yaml (a mutant name -> a reason key -> the reason's text).
Every survivor is listed with its one-line change and, if listed there, its reason. Mutants not
checked yet (a run stopped early) make the summary say it is partial.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.yaml"
COMMAND = "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 19 mutmut run --max-children 1"


DETECTED = ("killed", "timeout")
UNDETECTED = ("survived", "no tests")


def _statuses() -> dict:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code


def _one_line(name: str, path: str) -> str:
    """The mutant's change as '- old | + new' (mutmut's own diff, squeezed onto one line)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(name, path=path)
    lines = [line for line in diff.splitlines()
             if line[:1] in "-+" and not line.startswith(("---", "+++"))]
    return " | ".join(" ".join(line.split()) for line in lines)


def _modules(root: Path) -> list[str]:
    import tomllib

    return tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]


def _mutant_order(name: str):
    function, number = name.rsplit("__mutmut_", 1)
    return function, int(number)


def _rates(total: int, detected: int, n_equivalent: int) -> tuple[str, str]:
    raw = detected / total if total else 0.0
    net = detected / (total - n_equivalent) if total > n_equivalent else 0.0
    return f"{raw:.1%}", f"{net:.1%}"


def summary(date: str, duration: str | None, root: Path = ROOT, status_of: dict | None = None,
            one_line=_one_line) -> str:
    status_of = _statuses() if status_of is None else status_of
    equivalents = root / "tests" / "mutation_equivalents.yaml"
    listed = (yaml.safe_load(equivalents.read_text()) if equivalents.is_file() else None) or {}
    reasons, equivalent = listed.get("reasons") or {}, listed.get("equivalent") or {}
    # reasons that hold only on the machine the run used (a CPU), not in general: said apart
    cpu_only = set(listed.get("cpu_only_reasons") or ())
    unknown = sorted({key for key in equivalent.values() if key not in reasons})
    if unknown:
        raise SystemExit(f"{equivalents}: reasons not defined: {', '.join(unknown)}")
    rows, survivors, others, totals, seen = [], [], [], Counter(), {}
    for module in _modules(root):
        meta = root / "mutants" / (module + ".meta")
        if not meta.is_file():
            raise SystemExit(f"no results for {module} under mutants/: run `{COMMAND}` first")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        status = {name: status_of[code] for name, code in codes.items()}
        seen.update(status)
        counts = Counter(status.values())
        undetected = sorted((n for n, st in status.items() if st in UNDETECTED), key=_mutant_order)
        # anything else mutmut can report (segfault, suspicious, skipped, ...): counted, named, not detected
        other = sorted((n for n, st in status.items() if st not in (*DETECTED, *UNDETECTED, "not checked")),
                       key=_mutant_order)
        row = Counter(total=len(codes), killed=counts["killed"], timeout=counts["timeout"],
                      survived=counts["survived"], no_tests=counts["no tests"], other=len(other),
                      equivalent=sum(1 for name in undetected if name in equivalent),
                      detected=counts["killed"] + counts["timeout"], unchecked=counts["not checked"])
        rows.append((module, row))
        totals.update(row)
        survivors += [(module, name, one_line(name, module), equivalent.get(name)) for name in undetected]
        others += [(module, name, status[name]) for name in other]
    stale = sorted(name for name in equivalent if seen.get(name) not in UNDETECTED)

    out = ["# Mutation testing: last result", "",
           f"Command (from the repository root): `{COMMAND}`, then `python -m tools.mutation_summary > "
           "tests/mutation_summary.md`. Configuration: `[tool.mutmut]` in pyproject.toml.", "",
           f"Run: {date}" + (f"; {duration}" if duration else "") + ".", ""]
    if totals["unchecked"]:
        out += [f"**Partial**: {totals['unchecked']} of {totals['total']} mutants were not checked (the run "
                "was stopped before them); the rates below count them as not detected.", ""]
    out += ["Kill rate: (killed + timed out) / mutants; 'excl. equivalent' leaves out the survivors listed as "
            "equivalent below (tests/mutation_equivalents.yaml). A timeout is a mutant that looped until mutmut "
            "stopped it: detected.", "",
            "| module | mutants | killed | timeout | survived | no tests | other | equivalent | kill rate "
            "| excl. equivalent |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for module, row in rows + [("**all**", totals)]:
        raw, net = _rates(row["total"], row["detected"], row["equivalent"])
        name = module if module.startswith("**") else f"`{module}`"
        note = f" ({row['unchecked']} not checked)" if row["unchecked"] else ""
        out.append(f"| {name}{note} | {row['total']} | {row['killed']} | {row['timeout']} | {row['survived']} "
                   f"| {row['no_tests']} | {row['other']} | {row['equivalent']} | {raw} | {net} |")
    out += ["", "## Survivors", "",
            f"{len(survivors)} survived or had no test; {sum(1 for *_, key in survivors if key)} of them are "
            "listed as equivalent, each with its reason"
            + (f", {sum(1 for *_, key in survivors if key in cpu_only)} of those only on the CPU the run used "
               f"({', '.join(sorted(cpu_only))}: they would differ with tensors on an accelerator)"
               if cpu_only & {key for *_, key in survivors} else "") + ".", ""]
    used = {key for *_, key in survivors if key}
    if used:
        out += ["Reasons (keys used below):", ""]
        out += [f"- **{key}**: {' '.join(text.split())}" for key, text in reasons.items() if key in used]
    current = None
    for module, name, change, key in survivors:
        if module != current:
            out += ["", f"### `{module}`", ""]
            current = module
        out.append(f"- `{name.split('.x_', 1)[-1]}`: `{change}` — "
                   + (f"equivalent ({key})" if key else "**not classified**"))
    if others:
        out += ["", "## Other outcomes", ""]
        out += [f"- `{module}` `{name}`: {st}" for module, name, st in others]
    if stale:
        out += ["", "## Listed as equivalent but not a survivor of this run (killed, not checked or gone)", ""]
        out += [f"- `{name}`" for name in stale]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", default=_dt.date.today().isoformat())
    parser.add_argument("--duration", default=None, help="how long the run took, e.g. '95 min on 2 busy cores'")
    args = parser.parse_args(argv)
    sys.stdout.write(summary(args.date, args.duration))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
