"""Result records: one JSON file per run, written atomically, with per-user metrics beside it.

Layout: results/<experiment>/<dataset>/<run>__seed<seed>.json (the experiment's main record of
the run; a run whose config differs from its experiment file's is a variant beside it,
<run>__seed<seed>__<tag>.json, see benchmarks/variants.py) and the same name with
`.per_user.safetensors` (each evaluated user's rank of the test target, for significance tests;
see `write_record` for the compact form). A record is
finished when its JSON exists; it is written last, after the per-user arrays, by renaming a
temporary file, so an interrupted run never leaves a half-written record behind.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

RECORD_FORMAT = 1
LIBRARIES = ["torch", "transformers", "recbole", "numpy", "pandas", "scipy", "peft", "safetensors"]
REPO_ROOT = Path(__file__).resolve().parent.parent


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


def record_path(results_dir: str | Path, experiment: str, dataset: str, run: str, seed: int,
                variant: str | None = None) -> Path:
    """The main record's path, or with `variant` (a tag) the variant's beside it."""
    suffix = f"__{variant}" if variant else ""
    return Path(results_dir) / _safe(experiment) / _safe(dataset) / f"{_safe(run)}__seed{seed}{suffix}.json"


def per_user_path(json_path: Path) -> Path:
    return json_path.with_name(json_path.name[: -len(".json")] + ".per_user.safetensors")


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    return versions


# the suite's code: what a record's numbers depend on besides its config and data
CODE_PATHS = ("benchmarks", "baselines", "lite_llm4rec", "run_all.py")
CODE_SUFFIXES = (".py", ".yaml")
COMMIT_ENV = "SUITE_GIT_COMMIT"  # names the commit where a copy of the checkout has no .git


def _code_hash(files) -> str:
    """files: (relative path, bytes) pairs."""
    digest = hashlib.sha256()
    for name, content in sorted(files):
        digest.update(name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:16]


def code_hash(root: Path = REPO_ROOT, suffixes: tuple = CODE_SUFFIXES) -> str:
    """Content hash of the suite's code files (*.py, *.yaml under CODE_PATHS) as they are on disk:
    identifies the code that ran where there is no git (a copy of the checkout on a GPU machine)."""
    root = Path(root)
    paths = []
    for top in CODE_PATHS:
        top = root / top
        paths += [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file() and p.suffix in suffixes]
    return _code_hash((p.relative_to(root).as_posix(), p.read_bytes()) for p in paths
                      if "__pycache__" not in p.parts)


def program_hash(root: Path = REPO_ROOT) -> str:
    """The hash of the Python files alone: what a checkpoint or a cached stage keys on beside the
    resolved config it already digests, so that editing an experiment file (a new row, a comment)
    does not throw away an hour of training whose settings it left as they were."""
    return code_hash(root, suffixes=(".py",))


@functools.lru_cache(maxsize=None)
def code_hash_at(commit: str, root: Path = REPO_ROOT) -> str | None:
    """The same hash for the code of a commit (read with git); None where git cannot read it."""
    def git(*args) -> bytes:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, check=True, timeout=30).stdout

    try:
        names = git("ls-tree", "-r", "--name-only", "-z", commit, "--", *CODE_PATHS).decode().split("\0")
        names = [n for n in names if n and (n == "run_all.py" or n.endswith(CODE_SUFFIXES))]
        return _code_hash((n, git("show", f"{commit}:{n}")) for n in names)
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> dict:
    """The commit the code ran at, whether the working tree had uncommitted changes, and the
    code's content hash. Without git (a copy of the checkout), the commit is the one named in
    $SUITE_GIT_COMMIT, marked as such: `code_hash_at` tells later whether the code matched it."""

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--verify", "--quiet", "HEAD")
        commit = commit if re.fullmatch(r"[0-9a-f]{40}", commit or "") else None
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "benchmarks", "baselines", "lite_llm4rec", "run_all.py"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    if commit is None and re.fullmatch(r"[0-9a-f]{40}", os.environ.get(COMMIT_ENV, "")):
        return {"commit": os.environ[COMMIT_ENV], "dirty": None, "commit_from": COMMIT_ENV, "code_hash": code_hash()}
    return {"commit": commit, "dirty": dirty, "code_hash": code_hash()}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def atomic_write(path: Path, write) -> None:
    """Write a file through `write(tmp_path)` then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # after writing: mkstemp makes the file private, and a writer may create it anew
        # (safetensors does); records are shared, and tarred back from GPU machines
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


PER_USER_FORMAT = "2"


def compact_per_user(record: dict, per_user: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The per-user file's arrays and metadata. Only ranks are stored: every per-user metric is a
    function of the rank (one target per user), recomputed on reading by the evaluator's own
    `metrics_from_ranks`. A rank past the record's largest K (or a target never listed) is
    stored as largest K + 1, which changes no metric the record holds, in the smallest unsigned
    type; user_index is stored only where the users are not simply 0..n-1. A run over all 22,363
    Amazon Beauty users thus takes 22 KB instead of 1 MB: GPU campaigns commit hundreds of these,
    and the checkout travels to the GPU machine under a 64 MiB limit. The validation ranks of the
    kept weights (`valid_rank`, `valid_user_index`) are stored the same way where given."""
    ks = [int(k) for k in (record.get("evaluation") or {}).get("ks") or record["config"]["eval"]["ks"]]
    cap = max(ks) + 1
    dtype = np.uint8 if cap <= np.iinfo(np.uint8).max else np.uint16 if cap <= np.iinfo(np.uint16).max else np.uint32
    arrays = {}
    for prefix in ("", "valid_"):
        if (given := per_user.get(prefix + "rank")) is None:
            continue
        ranks = np.asarray(given, dtype=np.float64)
        if np.isnan(ranks).any() or (ranks < 1).any():
            raise ValueError("per-user ranks must be >= 1 (inf for a target never listed)")
        arrays[prefix + "rank"] = np.minimum(ranks, cap).astype(dtype)
        users = per_user.get(prefix + "user_index")
        if users is not None and not np.array_equal(users, np.arange(len(ranks))):
            arrays[prefix + "user_index"] = np.asarray(users, dtype=np.int32)
    metadata = {"per_user_format": PER_USER_FORMAT, "ks": ",".join(map(str, ks)), "rank_cap": str(cap)}
    return arrays, metadata


def write_record(path: Path, record: dict, per_user: dict[str, np.ndarray] | None = None) -> None:
    """per_user: {"rank": each evaluated user's rank of the target, "user_index": optional, and the
    validation ranks of the kept weights, "valid_rank" and "valid_user_index", where measured}."""
    if per_user:
        arrays, metadata = compact_per_user(record, per_user)
        atomic_write(per_user_path(path), lambda tmp: save_file(arrays, tmp, metadata=metadata))
    text = json.dumps({"record_format": RECORD_FORMAT, **record}, indent=2, sort_keys=False, default=_json_default)

    def write_json(tmp):
        with open(tmp, "w") as handle:
            handle.write(text + "\n")

    atomic_write(path, write_json)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_record(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_per_user(path: Path, part: str = "test") -> dict[str, np.ndarray] | None:
    """{"user_index", "rank", "recall@K", "ndcg@K", ...} of a record's test users, or with
    part="valid" of its validation users under the kept weights (None where the file holds no
    validation ranks: records made before 2026-12-05). Files written before the compact form hold
    every test array as it was; compact ones get their metrics recomputed from the ranks (a rank
    past the largest K reads as largest K + 1)."""
    from .evaluate import metrics_from_ranks  # late import: records stays free of torch

    prefix = {"test": "", "valid": "valid_"}[part]
    with safe_open(str(per_user_path(Path(path))), framework="np") as handle:
        metadata = handle.metadata() or {}
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
    if metadata.get("per_user_format") != PER_USER_FORMAT:
        return arrays if part == "test" else None
    if prefix + "rank" not in arrays:
        return None
    ranks = arrays[prefix + "rank"].astype(np.float64)
    users = arrays[prefix + "user_index"].astype(np.int64) if prefix + "user_index" in arrays else np.arange(len(ranks))
    ks = [int(k) for k in metadata["ks"].split(",")]
    return {"user_index": users, "rank": ranks, **metrics_from_ranks(ranks, ks)}


def iter_records(results_dir: str | Path):
    """Every finished record under results_dir (temporary files are skipped)."""
    for path in sorted(Path(results_dir).rglob("*.json")):
        record = read_record(path)
        if record is not None and "record_format" in record:
            yield path, record
