"""RecBole 1.2.1 on today's NumPy / torch / setuptools / pandas: every fix in one place.

Import RecBole through `import_recbole()` (or import this module first). The four breakages,
measured in ../shared/toolchain-facts.md, and how each is handled:

1. `recbole.quick_start` imports ray, and ray imports `pkg_resources`, which today's setuptools
   no longer ships. The suite never imports `quick_start`: it builds Config -> create_dataset ->
   data_preparation -> get_model -> get_trainer itself (tests check ray stays unimported).
2. `Config.compatibility_settings` reads `np.float_`, `np.complex_`, `np.unicode_` (removed in
   NumPy 2) to restore even older aliases. We restore the removed NumPy 2 names as the aliases
   they were, before RecBole is imported.
3. RecBole's trainer reloads its checkpoint with `torch.load` and no `weights_only`; torch >= 2.6
   defaults it to True and the checkpoint pickles a Config object. `load_checkpoint` loads with
   weights_only=False, and only files the suite itself wrote inside its own run folder.
4. pandas 3 (copy-on-write) turns RecBole's `fillna(..., inplace=True)` into a silent no-op,
   leaving NaN in item features. pyproject.toml pins pandas < 3; `check_pandas()` refuses to
   go on under pandas 3 instead of producing silently wrong features.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

_NUMPY2_REMOVED = {"float_": np.float64, "complex_": np.complex128, "unicode_": np.str_}


def restore_numpy_aliases() -> None:
    for name, value in _NUMPY2_REMOVED.items():
        if not hasattr(np, name):
            setattr(np, name, value)


def check_pandas() -> None:
    import pandas as pd

    if int(pd.__version__.split(".")[0]) >= 3:
        raise RuntimeError(
            f"pandas {pd.__version__}: RecBole 1.2.1 fills missing feature values in place, which "
            "pandas 3 silently ignores (NaN stays in item features). Install pandas<3 "
            "(pyproject.toml pins it)."
        )


def import_recbole():
    """Apply the fixes, then import and return the `recbole` package."""
    restore_numpy_aliases()
    check_pandas()
    import recbole

    return recbole


def load_checkpoint(path: str | Path, run_folder: str | Path, map_location="cpu"):
    """Load a RecBole checkpoint the suite wrote itself (weights_only=False unpickles objects,
    so it is refused for any file outside the run's own folder)."""
    import torch

    path, run_folder = Path(path).resolve(), Path(run_folder).resolve()
    if run_folder not in path.parents:
        raise ValueError(f"refusing to unpickle {path}: not inside the suite's run folder {run_folder}")
    return torch.load(path, map_location=map_location, weights_only=False)


restore_numpy_aliases()
