"""One-off (issue 20): the committed records that were made with command-line overrides (`-o`)
get their variant names (benchmarks/variants.py), so that no page presents them as their
experiment's row. Run once from the repository root: `python -m tools.rename_override_records`
(it `git mv`s each record and its per-user file; a second run finds nothing to do).

Which records: those whose config holds settings their experiment file did not state at the
commit the record was made at (the record's own `environment.git.commit`, with a clean tree),
and whose commit message names those settings. Each is listed below with the settings and the
commit; the tag is the one the runner gives a run with these overrides: `h` + a short hash of
their values. Records that differ from today's experiment files only because a default or a
file changed later (stale, not overridden) keep their names: `run_all.py --list` shows them as
"to run".
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.records import per_user_path, record_path
from benchmarks.variants import flatten, variant_tag

RESULTS = Path("results")

# (record under results/, the settings given with -o, the commit whose message names them)
OVERRIDDEN = [
    ("table3_overall/ml-1m-partial/GRU4Rec__seed0.json", {"train.epochs": 2},
     "3d3a8c9 (GRU4Rec and SASRec on ml-1m-partial, '2-epoch budget'; the file said 5)"),
    ("table3_overall/ml-1m-partial/SASRec__seed0.json", {"train.epochs": 2},
     "3d3a8c9 (as GRU4Rec)"),
    ("table3_overall/ml-1m-partial/MostPopular__seed0.json",
     {"train.epochs": 30, "train.eval_every": 5, "train.patience": 5, "train.precision": "bf16"},
     "98db518 ('CPU budget of 30 epochs (bf16, ...)', given to the Lite-LLM4Rec and MostPopular rows "
     "re-run together; the file said 200 epochs, fp32)"),
    ("table3_overall/ml-1m-partial/Lite-LLM4Rec_sampling__seed0.json",
     {"model.dropout": 0.1, "train.epochs": 60, "train.eval_every": 5, "train.patience": 5,
      "train.precision": "bf16"},
     "5dc4065 ('at dropout 0.1 (CPU, 60 epochs, bf16, ...)'; the file said dropout 0.7, 200 epochs)"),
    ("table3_overall/amazon-beauty/Lite-LLM4Rec_sampling__seed0.json",
     {"train.epochs": 10, "train.eval_every": 2, "train.patience": 5, "train.precision": "bf16"},
     "116e417 ('-o train.epochs=10 -o train.eval_every=2 -o train.patience=5 -o train.precision=bf16')"),
]


def variant_name(record: dict, overrides: dict) -> Path:
    tag = variant_tag({key: [None, value] for key, value in overrides.items()})
    return record_path(RESULTS, record["experiment"], record["dataset"], record["run"], record["seed"], tag)


def main() -> int:
    for relative, overrides, commit in OVERRIDDEN:
        path = RESULTS / relative
        if not path.is_file():
            print(f"{relative}: not there (renamed already?)")
            continue
        record = json.loads(path.read_text())
        held = flatten(record["config"])
        wrong = {key: held.get(key) for key, value in overrides.items() if held.get(key) != value}
        if wrong:
            print(f"{relative}: does not hold the overrides {overrides} (holds {wrong}); left alone", file=sys.stderr)
            return 1
        target = variant_name(record, overrides)
        for old, new in ((path, target), (per_user_path(path), per_user_path(target))):
            if old.is_file():
                subprocess.run(["git", "mv", str(old), str(new)], check=True)
        print(f"{relative} -> {target.name}: made with -o {overrides}, commit {commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
