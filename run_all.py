"""The one entry point: run an experiment set (or one model by itself), write records to
results/, rebuild reports/. Every option: `python run_all.py --help` (benchmarks/cli.py), also
installed as the `llm4rec-bench` command.

    python run_all.py                                  # the default set on the embedded ml-100k
    python run_all.py --model SASRec --dataset ml-100k # one model by itself, with its defaults
    python run_all.py --list                           # what would run, and what is already done
    python run_all.py --report-only                    # rebuild reports/ from results/ only
"""
from __future__ import annotations

import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
