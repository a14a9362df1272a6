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

Side effects of RecBole's own code that a library caller must contain:

5. `Config()` reads `sys.argv` (every `--key=value` becomes a RecBole setting, so `run_all.py
   --results-dir=x` or pytest's arguments would leak into it) and sets the process-wide
   `CUDA_VISIBLE_DEVICES` to its `gpu_id`. `isolated_config()` hides the command line from it,
   pins the process's CUDA device list first and restores the variable afterwards.
6. RecBole's trainer writes TensorBoard events to `./log_tensorboard/` (a hard-coded relative
   path in `recbole.utils.get_tensorboard`, no config key), and `init_logger` to `./log/`. The
   suite never calls `init_logger`; `outputs_under(folder)` points the TensorBoard writer and a
   plain-text log of RecBole's messages at the run's own folder while it is active.
7. Importing `recbole.model.sequential_recommender` (which `get_model` does for any sequential
   model) runs `torch.autograd.set_detect_anomaly(True)` at the top of its SINE module, for the
   whole process: every later backward pass, of any model, ran about twice as slow (measured:
   Lite-LLM4Rec's ml-100k epoch 6.4 s after the RecBole rows of the default run, 3.1 s alone).
   `import_recbole()` imports that package once and restores the anomaly setting it found.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from contextlib import contextmanager
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
    import torch

    anomaly_detection = torch.is_anomaly_enabled()
    import recbole
    import recbole.model.sequential_recommender  # noqa: F401  (fix 7: its import turns anomaly detection on)

    torch.autograd.set_detect_anomaly(anomaly_detection)
    return recbole


def load_checkpoint(path: str | Path, run_folder: str | Path, map_location="cpu"):
    """Load a RecBole checkpoint the suite wrote itself (weights_only=False unpickles objects,
    so it is refused for any file outside the run's own folder)."""
    import torch

    path, run_folder = Path(path).resolve(), Path(run_folder).resolve()
    if run_folder not in path.parents:
        raise ValueError(f"refusing to unpickle {path}: not inside the suite's run folder {run_folder}")
    return torch.load(path, map_location=map_location, weights_only=False)


@contextmanager
def isolated_config():
    """Build RecBole Configs inside this: no command-line settings, no change to the process's
    CUDA_VISIBLE_DEVICES (fix 5)."""
    import torch

    # cuInit reads CUDA_VISIBLE_DEVICES once; query the devices before RecBole rewrites it, so
    # the process keeps the devices it was started with (e.g. cuda:1 stays cuda:1).
    torch.cuda.is_available()
    saved_argv = sys.argv
    saved_visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    sys.argv = sys.argv[:1]
    try:
        yield
    finally:
        sys.argv = saved_argv
        if saved_visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved_visible


class _PlainFormatter(logging.Formatter):
    """RecBole colours its messages with ANSI codes; a log file wants plain text."""

    _ansi = re.compile(r"\x1b\[[0-9;]*m")

    def format(self, record):
        return self._ansi.sub("", super().format(record))


@contextmanager
def outputs_under(folder: str | Path, log_name: str = "recbole.log"):
    """While active, RecBole trainers write TensorBoard events under <folder>/log_tensorboard and
    RecBole's log messages (INFO and up) to <folder>/<log_name>, never to the working directory
    (fix 6)."""
    import_recbole()
    import recbole.trainer.trainer as trainer_module
    from recbole.utils import get_local_time
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)

    def get_tensorboard(logger):
        return SummaryWriter(str(folder / "log_tensorboard" / f"model-{get_local_time()}"))

    original = trainer_module.get_tensorboard
    trainer_module.get_tensorboard = get_tensorboard
    # RecBole logs through the root logger (logging.getLogger()).
    root = logging.getLogger()
    handler = logging.FileHandler(folder / log_name, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(_PlainFormatter("%(asctime)s %(levelname)s %(message)s"))
    saved_level = root.level
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    # RecBole's own code trips pandas 2.x / torch deprecation notices on every dataset it builds
    # (the pandas one is breakage 4, handled by the pin); keep them out of the suite's output.
    warning_filters = warnings.catch_warnings()
    warning_filters.__enter__()
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"recbole\.")
    try:
        yield folder
    finally:
        warning_filters.__exit__(None, None, None)
        trainer_module.get_tensorboard = original
        root.removeHandler(handler)
        root.setLevel(saved_level)
        handler.close()


restore_numpy_aliases()
