"""What an offline GPU machine needs, packed into one ignored folder that travels with the checkout.

    python -m tools.offline_bundle data_local            # here: needs PyPI and ../shared/datasets
    python3 -m tools.offline_bundle --unpack data_local  # there: unpack, then check RecBole imports

Packing writes, under the folder:
- `datasets.tgz`: the real data sets (ml-1m-partial and amazon-beauty) read from ../shared/datasets;
- `minilm-fp16.tar.xz`: the fp16 copy of all-MiniLM-L6-v2 (half the bytes; loads as fp32 through
  MINILM_PATH, see backbones.export_fp16), xz-compressed (41 MB instead of 46);
- `site.tar.xz`: the Python packages the GPU image lacks (RecBole and its small pure-Python needs;
  Optuna and its needs, which every plan reads the tuning studies with)
  or holds in a version RecBole 1.2.1 cannot use (it fails under pandas 3: pandas 2.3.3 travels),
  as unpacked wheels for the device's Python, to be put on PYTHONPATH. Unpacked (less pandas'
  own tests) and compressed as one archive they take about 10 MiB (7 before Optuna, whose
  SQLAlchemy is most of the rest; RecBole's part was 15 MiB as wheels).
It then adds the checkout's tracked files and says whether the whole stays within the device's
carry limit (64 MiB a call). Unpacking extracts the data sets and the packages next to the
archives, `<folder>/<dataset>/`, `<folder>/minilm-fp16/` and `<folder>/site/`, then imports RecBole
and Optuna through them in a fresh interpreter and exits 1, naming what is missing, where that
fails: a campaign that would fail at its plan or its first RecBole row stops before it starts.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DATASETS = ("ml-1m-partial", "amazon-beauty")
# RecBole and what it imports that the GPU image does not have; pandas < 3 (with its two needs)
# because RecBole 1.2.1 breaks under pandas 3 (see baselines/recbole/compat.py, check_pandas)
PACKAGES = ("recbole==1.2.1", "colorlog==4.7.2", "colorama==0.4.4", "texttable==1.7.2",
            "thop==0.1.1.post2209072238", "pandas==2.3.3", "pytz", "tzdata",
            # the plan reads the tuning studies (results/tuning/studies.db) through Optuna's SQL storage;
            # the image has none of the four (seen 2026-12-04: "No module named 'optuna'")
            "optuna==5.1.0", "alembic==1.20.1", "SQLAlchemy==2.1.9", "Mako==1.4.3")
# what the suite's RecBole path imports (the trainer pulls in scikit-learn and tensorboard, which
# the GPU image has and which are too large to carry): checked there before any run starts
PREFLIGHT_MODULES = ("recbole.config", "recbole.data", "recbole.utils", "recbole.trainer",
                     "recbole.model.sequential_recommender", "optuna.storages")
DEVICE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64")
CARRY_LIMIT_MIB = 64.0
ARCHIVES = ("datasets.tgz", "minilm-fp16.tar.xz", "site.tar.xz")
# never imported at run time; pandas' own test suite is 15 MB of the 45 unpacked (1.7 MiB packed)
SKIPPED_IN_WHEELS = ("pandas/tests/",)


def size_of(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pack_folders(root: Path, names, archive: Path) -> Path:
    """The folders `root/<name>` in one archive, xz-compressed where its name ends in .xz, else gzip."""
    missing = [n for n in names if not (Path(root) / n).is_dir()]
    if missing:
        raise FileNotFoundError(f"no folder {', '.join(missing)} under {root}")
    with tarfile.open(archive, "w:xz" if Path(archive).suffix == ".xz" else "w:gz") as tar:
        for name in names:
            tar.add(Path(root) / name, arcname=name)
    return archive


def download_wheels(packages, dest: Path, python_version: str = DEVICE_PYTHON) -> list[Path]:
    """Binary wheels for the device's Python and platform, without their dependencies (the image
    has them: torch, numpy, scipy, ...)."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    subprocess.run(command + list(packages), check=True)
    return sorted(Path(dest).glob("*.whl"))


def pack_site(wheels, archive: Path) -> Path:
    """Wheels unpacked into one `site/` folder (what `pip install --target` gives for pure and
    binary wheels that need no build step, less SKIPPED_IN_WHEELS), archived with xz."""
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(site, [n for n in zf.namelist() if not n.startswith(SKIPPED_IN_WHEELS)])
        with tarfile.open(archive, "w:xz") as tar:
            tar.add(site, arcname="site")
    return archive


def tracked_bytes(repo: Path) -> int:
    """Bytes of the checkout's tracked files (they travel with every call)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=repo, check=True, capture_output=True).stdout
    return sum((Path(repo) / n).stat().st_size for n in names.decode().split("\0") if n and (Path(repo) / n).is_file())


def pack(folder: Path, datasets_root: Path, *, python_version: str = DEVICE_PYTHON,
         limit_mib: float = CARRY_LIMIT_MIB, repo: Path = Path(".")) -> dict:
    from benchmarks.backbones import export_fp16

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pack_folders(datasets_root, DATASETS, folder / "datasets.tgz")
    with tempfile.TemporaryDirectory() as tmp:
        # exported to a temporary folder: an unpacked copy left in the bundle would travel too
        export_fp16(Path(tmp) / "minilm-fp16")
        pack_folders(Path(tmp), ["minilm-fp16"], folder / "minilm-fp16.tar.xz")
        pack_site(download_wheels(PACKAGES, Path(tmp), python_version), folder / "site.tar.xz")
    sizes = {name: size_of(folder / name) for name in ARCHIVES}
    sizes["tracked files"] = tracked_bytes(repo)
    return {"sizes": sizes, "total_mib": sum(sizes.values()) / 2**20, "limit_mib": limit_mib}


def unpack(folder: Path) -> list[Path]:
    """There: the data sets and the packages extracted next to their archives."""
    folder = Path(folder)
    out = []
    for archive in ARCHIVES:
        with tarfile.open(folder / archive) as tar:
            tar.extractall(folder, filter="data")
            out += sorted({folder / Path(m.name).parts[0] for m in tar.getmembers()})
    return out


def preflight(folder: Path) -> str | None:
    """There, after unpacking: import RecBole's modules the way the runs will (the suite's
    compatibility fixes first, the unpacked packages on the path), and Optuna's storage, in a
    fresh interpreter. Returns the error, e.g. a module the image lacks, or None; a campaign
    should not start without it."""
    code = ("from baselines.recbole.compat import import_recbole\nimport importlib\nimport_recbole()\n"
            f"for name in {PREFLIGHT_MODULES!r}:\n    importlib.import_module(name)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(folder).resolve() / "site"),
                                                                      os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="an ignored folder of the checkout, e.g. data_local")
    parser.add_argument("--unpack", action="store_true", help="there: extract the data sets and packages")
    parser.add_argument("--datasets-root", default="../shared/datasets", help="where the real data sets are")
    parser.add_argument("--python-version", default=DEVICE_PYTHON, help="the device's Python (default %(default)s)")
    parser.add_argument("--limit-mib", type=float, default=CARRY_LIMIT_MIB)
    args = parser.parse_args(argv)
    if args.unpack:
        for path in unpack(Path(args.folder)):
            print(f"[bundle] {path}")
        error = preflight(Path(args.folder))
        print(f"[bundle] RecBole and Optuna imports: {error or 'ok'}")
        return 1 if error else 0
    result = pack(Path(args.folder), Path(args.datasets_root), python_version=args.python_version,
                  limit_mib=args.limit_mib)
    for name, size in result["sizes"].items():
        print(f"[bundle] {name}: {size / 2**20:.1f} MiB")
    ok = result["total_mib"] <= result["limit_mib"]
    print(f"[bundle] in all {result['total_mib']:.1f} MiB of a {result['limit_mib']:.0f} MiB carry limit"
          + ("" if ok else ": too much, the device will refuse the call"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
