"""The bundle for an offline GPU machine: data sets and unpacked wheels survive the round trip
(packed here, unpacked there) and the unpacked packages import from PYTHONPATH."""
import subprocess
import sys
import zipfile

import pytest

from tools import offline_bundle


def fake_wheel(folder, name, body):
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{name}/__init__.py", body)
        zf.writestr(f"{name}-1.0.dist-info/METADATA", f"Name: {name}\nVersion: 1.0\n")
    return wheel


def test_pack_and_unpack_round_trip(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    (here / "shared" / "toy-set").mkdir(parents=True)
    (here / "shared" / "toy-set" / "ratings.dat").write_text("1::2::5::0\n")
    wheels = [fake_wheel(tmp_path, "alpha", "VALUE = 41\n"), fake_wheel(tmp_path, "beta", "from alpha import VALUE\nANSWER = VALUE + 1\n")]
    with zipfile.ZipFile(fake_wheel(tmp_path, "pandas", "OK = True\n"), "a") as zf:  # its test suite stays behind
        zf.writestr("pandas/tests/test_frame.py", "assert False\n")
    wheels.append(tmp_path / "pandas-1.0-py3-none-any.whl")
    there.mkdir()
    offline_bundle.pack_folders(here / "shared", ["toy-set"], there / "datasets.tgz")
    offline_bundle.pack_site(wheels, there / "site.tar.xz")
    (here / "minilm-fp16").mkdir()
    (here / "minilm-fp16" / "config.json").write_text("{}")
    offline_bundle.pack_folders(here, ["minilm-fp16"], there / "minilm-fp16.tar.xz")

    extracted = offline_bundle.unpack(there)
    assert extracted == [there / "toy-set", there / "minilm-fp16", there / "site"]
    assert (there / "minilm-fp16" / "config.json").read_text() == "{}"
    with offline_bundle.tarfile.open(there / "minilm-fp16.tar.xz", "r:xz"):  # the .xz name is xz inside
        pass
    assert (there / "toy-set" / "ratings.dat").read_text() == "1::2::5::0\n"
    out = subprocess.run([sys.executable, "-c", "import beta; print(beta.ANSWER)"], check=True, text=True,
                         capture_output=True, env={"PYTHONPATH": str(there / "site")}).stdout
    assert out.strip() == "42"
    assert (there / "site" / "pandas" / "__init__.py").is_file() and not (there / "site" / "pandas" / "tests").exists()


def test_missing_data_set_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="ml-1m-partial"):
        offline_bundle.pack_folders(tmp_path, ["ml-1m-partial"], tmp_path / "datasets.tgz")


def test_tracked_bytes_counts_the_checkout():
    assert offline_bundle.tracked_bytes(offline_bundle.Path(".")) > offline_bundle.size_of(offline_bundle.Path("run_all.py"))


def test_preflight_names_what_recbole_cannot_import_there(tmp_path):
    (tmp_path / "site").mkdir()
    assert offline_bundle.preflight(tmp_path) is None  # this venv's RecBole, nothing shadowing it
    broken = tmp_path / "broken" / "site" / "recbole"  # an unpacked RecBole whose logger needs a module
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("import colorama_not_in_this_image\n")
    error = offline_bundle.preflight(tmp_path / "broken")
    assert error is not None and "colorama_not_in_this_image" in error


def test_preflight_names_what_the_plan_cannot_import_there(tmp_path):
    # every plan reads the tuning studies through Optuna: a bundle without it stops before a run
    broken = tmp_path / "site" / "optuna"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("import sqlalchemy_not_in_this_image\n")
    error = offline_bundle.preflight(tmp_path)
    assert error is not None and "sqlalchemy_not_in_this_image" in error


def test_the_bundle_carries_optuna_and_what_it_needs():
    names = {p.split("==")[0].lower() for p in offline_bundle.PACKAGES}
    assert {"optuna", "alembic", "sqlalchemy", "mako", "recbole"} <= names
