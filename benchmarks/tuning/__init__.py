"""Tuning every row under one declared budget on validation data, with Optuna.

- spec.py: an experiment file's `tuning:` section and the runs' `space:` entries, checked
  without Optuna (planning reads them for every run).
- studies.py: a row's study (named by experiment, dataset, run and a digest of its config),
  the storage (SQLite under results/tuning/ by default, or any database URL), the summaries the
  reports read, and the lookup that gives a normal run its study's best settings.
- search.py: `run_all.py --tune`: the trials (the runner's prepare and train phases, validation
  only, pruned on the validation curve), run until each study has its budget of finished trials.

Where the best settings go: planning layers a finished study's best settings between the
experiment's run entry and the set / command line (config.resolve_run's `tuned` layer), and the
run's record says so (`tuning`); such a run is still its experiment's main record
(planning.compare_with_experiment resolves the reference with the same layer).
"""
from .spec import SearchParam, TuningSettings, parse_space, parse_tuning, space_layer

__all__ = ["SearchParam", "TuningSettings", "parse_space", "parse_tuning", "space_layer"]
