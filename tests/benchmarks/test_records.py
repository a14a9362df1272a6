"""Provenance where there is no git: the code's content hash, the same for a checkout on disk and
for its commit read with git, and the commit named by $SUITE_GIT_COMMIT checked against it."""
import json
import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks import records
from benchmarks.reports import index as report


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_code_hash_on_disk_equals_the_commits_and_follows_the_code(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "metric.py").write_text("K = 10\n")
    (tmp_path / "benchmarks" / "notes.txt").write_text("not code\n")
    (tmp_path / "run_all.py").write_text("print('run')\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert records.code_hash(tmp_path) == records.code_hash_at(head, tmp_path)
    (tmp_path / "benchmarks" / "notes.txt").write_text("still not code\n")
    assert records.code_hash(tmp_path) == records.code_hash_at(head, tmp_path)
    (tmp_path / "benchmarks" / "metric.py").write_text("K = 20\n")
    assert records.code_hash(tmp_path) != records.code_hash_at(head, tmp_path)
    assert records.code_hash_at("0" * 40, tmp_path) is None


def test_without_git_the_commit_is_the_named_one_and_marked(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "REPO_ROOT", tmp_path)  # no .git there
    monkeypatch.delenv(records.COMMIT_ENV, raising=False)
    assert records.git_commit()["commit"] is None
    monkeypatch.setenv(records.COMMIT_ENV, "a" * 40)
    git_info = records.git_commit()
    assert git_info["commit"] == "a" * 40 and git_info["commit_from"] == records.COMMIT_ENV
    assert git_info["dirty"] is None and len(git_info["code_hash"]) == 16


def test_report_checks_a_named_commit_against_the_code_that_ran(monkeypatch):
    monkeypatch.setattr(records, "code_hash_at", lambda commit: {"a" * 40: "h1"}.get(commit))
    named = {"commit": "a" * 40, "commit_from": records.COMMIT_ENV}
    assert "matches" in report._named_commit_check({**named, "code_hash": "h1"})
    assert "DIFFERS" in report._named_commit_check({**named, "code_hash": "h2"})
    assert "not checkable" in report._named_commit_check({**named, "commit": "b" * 40, "code_hash": "h1"})
    assert report._named_commit_check({"commit": "a" * 40, "dirty": False}) == ""


def test_per_user_ranks_round_trip_compactly_with_every_metric_recomputed(tmp_path):
    import numpy as np
    import pytest
    from safetensors.numpy import save_file

    from benchmarks.evaluate import metrics_from_ranks

    rng = np.random.default_rng(0)
    ranks = rng.integers(1, 12_000, 22_363).astype(np.float64)
    ranks[:8] = [1, 5, 10, 11, 20, 21, 300, np.inf]  # around both Ks, far past them, never listed
    rec = {"config": {"eval": {"ks": [10, 20]}}, "evaluation": {"ks": [10, 20]}, "status": "ok"}
    path = tmp_path / "all__seed0.json"
    records.write_record(path, rec, {"user_index": np.arange(len(ranks)), "rank": ranks})
    assert records.per_user_path(path).stat().st_size < 23_000  # 1 byte a user (was 48)
    assert {p.stat().st_mode & 0o777 for p in (path, records.per_user_path(path))} == {0o644}  # readable by all
    back = records.read_per_user(path)
    expected = metrics_from_ranks(ranks, (10, 20))
    assert set(back) == {"user_index", "rank", *expected}
    for name, values in expected.items():
        assert np.array_equal(back[name], values), name  # exact, not approximately
    assert np.array_equal(back["user_index"], np.arange(len(ranks)))
    assert back["rank"][:8].tolist() == [1, 5, 10, 11, 20, 21, 21, 21]  # past K=20: 21

    subset = tmp_path / "subset__seed0.json"  # a seeded subset keeps its user ids; K up to 500
    records.write_record(subset, {"config": {"eval": {"ks": [50, 500]}}}, {"user_index": np.array([7, 3, 9]),
                                                                            "rank": np.array([499.0, 501.0, 2.0])})
    back = records.read_per_user(subset)
    assert back["user_index"].tolist() == [7, 3, 9] and back["rank"].tolist() == [499, 501, 2]
    assert back["recall@500"].tolist() == [1.0, 0.0, 1.0] and back["recall@50"].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match=">= 1"):
        records.write_record(subset, rec, {"rank": np.array([0.0, 3.0])})

    both = tmp_path / "both__seed0.json"  # the validation ranks beside the test's, on users of their own
    records.write_record(both, rec, {"rank": np.array([1.0, 30.0]), "valid_user_index": np.array([5]),
                                     "valid_rank": np.array([np.inf])})
    assert records.read_per_user(both)["rank"].tolist() == [1, 21]
    back = records.read_per_user(both, "valid")
    assert back["user_index"].tolist() == [5] and back["rank"].tolist() == [21] and back["recall@20"].tolist() == [0.0]
    assert records.read_per_user(subset, "valid") is None  # written without validation ranks
    with pytest.raises(ValueError, match=">= 1"):
        records.write_record(both, rec, {"rank": np.array([2.0]), "valid_rank": np.array([0.0])})

    old = tmp_path / "old__seed0.json"  # files written before the compact form read as they are
    save_file({"rank": np.array([3.0]), "recall@10": np.array([1.0]), "user_index": np.array([4])},
              str(records.per_user_path(old)))
    assert records.read_per_user(old)["user_index"].tolist() == [4]
    assert records.read_per_user(old, "valid") is None


# ----------------------------------------------------------------------------- atomic writes


def _only_files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_write_that_fails_midway_leaves_the_old_record_whole_and_no_temporary_file(tmp_path):
    import pytest

    path = tmp_path / "exp" / "ml-1m" / "Toy__seed0.json"
    records.write_record(path, {"status": "ok", "metrics": {"recall@10": 0.25}})
    old = path.read_bytes()

    def half_then_fail(tmp):
        assert Path(tmp) != path and Path(tmp).parent == path.parent  # beside it, then renamed over it
        assert path.read_bytes() == old  # readers see the old record while the new one is written
        with open(tmp, "w") as handle:
            handle.write('{"record_format": 1, "status": "o')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        records.atomic_write(path, half_then_fail)
    assert path.read_bytes() == old and records.read_record(path)["metrics"] == {"recall@10": 0.25}
    assert _only_files(path.parent) == [path.name]


def test_write_record_interrupted_in_its_json_write_keeps_the_old_record(tmp_path, monkeypatch):
    """A disk that fills up half-way through the record's own write (the JSON text is made
    before anything is written, so only the write itself can fail part-way)."""
    import builtins

    import numpy as np
    import pytest

    path = tmp_path / "Toy__seed0.json"
    ranks = {"rank": np.array([1.0, 4.0, 30.0])}
    records.write_record(path, {"config": {"eval": {"ks": [10]}}, "status": "ok", "run": "first"}, ranks)
    old_json = path.read_bytes()

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()
            return False

        def write(self, text):
            self.handle.write(text[: len(text) // 2])
            self.handle.flush()
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(records, "open", lambda file, mode="r", *a, **k: FullDisk(builtins.open(file, mode, *a, **k)),
                        raising=False)
    with pytest.raises(OSError, match="No space left"):
        records.write_record(path, {"config": {"eval": {"ks": [10]}}, "status": "ok", "run": "second"}, ranks)
    monkeypatch.undo()
    assert path.read_bytes() == old_json and records.read_record(path)["run"] == "first"
    assert records.read_per_user(path)["rank"].tolist() == [1, 4, 11]  # rewritten whole (ranks past K=10 read 11)
    assert _only_files(tmp_path) == sorted([path.name, records.per_user_path(path).name])
    # an object json cannot serialise fails before any file is touched
    with pytest.raises(TypeError, match="not JSON serialisable"):
        records.write_record(path, {"status": "ok", "run": "third", "model": object()})
    assert path.read_bytes() == old_json and _only_files(tmp_path) == sorted([path.name, records.per_user_path(path).name])
    assert [p.name for p, _ in records.iter_records(tmp_path)] == [path.name]


# ----------------------------------------------------------------------------- provenance with git


def _code_tree(root):
    for rel, text in {"benchmarks/metric.py": "K = 10\n", "benchmarks/defaults.yaml": "k: 1\n",
                      "baselines/model.py": "M = 1\n", "lite_llm4rec/model.py": "L = 1\n",
                      "run_all.py": "print('run')\n", "README.md": "# not code\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_git_commit_names_the_head_and_whether_the_code_was_changed(tmp_path, monkeypatch):
    _code_tree(tmp_path)
    git(tmp_path, "init", "-q")
    monkeypatch.setattr(records, "REPO_ROOT", tmp_path)
    monkeypatch.delenv(records.COMMIT_ENV, raising=False)
    assert records.git_commit() == {"commit": None, "dirty": False, "code_hash": records.code_hash()}  # no commit yet
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert records.git_commit() == {"commit": head, "dirty": False, "code_hash": records.code_hash()}
    # an uncommitted change to any code path makes the tree dirty ...
    for rel in ("benchmarks/metric.py", "baselines/model.py", "lite_llm4rec/model.py", "run_all.py"):
        original = (tmp_path / rel).read_text()
        (tmp_path / rel).write_text(original + "# changed\n")
        info = records.git_commit()
        assert info["dirty"] is True and info["commit"] == head, rel
        (tmp_path / rel).write_text(original)
    # ... but not a change elsewhere, nor a new file git does not track
    (tmp_path / "README.md").write_text("# edited\n")
    (tmp_path / "benchmarks" / "scratch.py").write_text("x = 1\n")
    assert records.git_commit()["dirty"] is False
    # a commit named in the environment does not override the one git reads
    monkeypatch.setenv(records.COMMIT_ENV, "a" * 40)
    assert records.git_commit()["commit"] == head and "commit_from" not in records.git_commit()


def test_git_commit_without_git_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable to run
    monkeypatch.delenv(records.COMMIT_ENV, raising=False)
    assert records.git_commit() == {"commit": None, "dirty": None, "code_hash": records.code_hash()}
    monkeypatch.setenv(records.COMMIT_ENV, "not a commit")
    assert records.git_commit()["commit"] is None
    monkeypatch.setenv(records.COMMIT_ENV, "b" * 40)
    assert records.git_commit() == {"commit": "b" * 40, "dirty": None, "commit_from": records.COMMIT_ENV,
                                    "code_hash": records.code_hash()}


def test_code_hash_is_stable_and_counts_only_code_files(tmp_path):
    """Records keep the hash of the code that made them; a later check recomputes it from the named
    commit (`code_hash_at`), so the hash of a given tree must not change between versions."""
    _code_tree(tmp_path)
    assert records.code_hash(tmp_path) == "6f6e936888130596"
    # not code: other suffixes, __pycache__, files outside the code paths
    (tmp_path / "benchmarks" / "notes.txt").write_text("n\n")
    (tmp_path / "benchmarks" / "__pycache__").mkdir()
    (tmp_path / "benchmarks" / "__pycache__" / "metric.py").write_text("stale\n")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "helper.py").write_text("h = 1\n")
    assert records.code_hash(tmp_path) == "6f6e936888130596"
    (tmp_path / "baselines" / "extra.yaml").write_text("e: 1\n")
    assert records.code_hash(tmp_path) != "6f6e936888130596"
    # a file's name and content are kept apart: moving bytes between them changes the hash
    assert records._code_hash([("a.py", b"bc")]) != records._code_hash([("a.pyb", b"c")])
    assert records._code_hash([("a.py", b"x"), ("b.py", b"")]) != records._code_hash([("a.py", b"x\0b.py")])


def test_program_hash_follows_the_python_files_and_not_the_experiment_files(tmp_path):
    # checkpoints and the first-stage cache key on it beside the resolved config: a new row or a
    # comment in an experiment file must not discard them, a code change must
    _code_tree(tmp_path)
    before, code_before = records.program_hash(tmp_path), records.code_hash(tmp_path)
    (tmp_path / "benchmarks" / "experiments.yaml").write_text("runs: {new_row: {}}\n")
    assert records.code_hash(tmp_path) != code_before  # the record's hash still names the edit
    assert records.program_hash(tmp_path) == before
    next(p for p in (tmp_path / "benchmarks").rglob("*.py")).write_text("changed = True\n")
    assert records.program_hash(tmp_path) != before


def test_library_versions_and_timestamps():
    versions = records.library_versions()
    assert list(versions) == ["python", *records.LIBRARIES]
    assert versions["python"] == platform.python_version() and versions["numpy"] == np.__version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", records.now())  # UTC, to the second


def test_library_versions_of_a_missing_library_are_none(monkeypatch):
    monkeypatch.setattr(records, "LIBRARIES", ["numpy", "no-such-library-here"])
    versions = records.library_versions()
    assert versions["no-such-library-here"] is None and versions["numpy"]


def test_records_hold_numpy_values_and_paths_as_json(tmp_path):
    path = tmp_path / "Toy__seed0.json"
    records.write_record(path, {"status": "ok", "epochs": np.int64(7), "loss": np.float32(0.5),
                                "ranks": np.array([1, 2]), "cache": Path("data") / "cache"})
    back = json.loads(path.read_text())
    assert back == {"record_format": records.RECORD_FORMAT, "status": "ok", "epochs": 7, "loss": 0.5,
                    "ranks": [1, 2], "cache": str(Path("data") / "cache")}
    assert type(back["epochs"]) is int and type(back["loss"]) is float
    # records are committed: one key a line, so a changed value is a one-line diff
    assert path.read_text().splitlines()[:3] == ["{", f'  "record_format": {records.RECORD_FORMAT},', '  "status": "ok",']
    with pytest.raises(TypeError, match="not JSON serialisable: set"):
        records.write_record(path, {"status": "ok", "bad": {1, 2}})


def test_record_paths_main_and_variant_round_trip(tmp_path):
    from benchmarks.variants import parse_record_name

    main = records.record_path(tmp_path, "table3 overall", "ml-1m", "Lite-LLM4Rec/sampling", 2)
    assert main == tmp_path / "table3_overall" / "ml-1m" / "Lite-LLM4Rec_sampling__seed2.json"
    variant = records.record_path(tmp_path, "table3 overall", "ml-1m", "Lite-LLM4Rec/sampling", 2, variant="gpu")
    assert variant == main.with_name("Lite-LLM4Rec_sampling__seed2__gpu.json")  # beside its main record
    assert records.record_path(tmp_path, "e", "d", "r", 0, variant="") == records.record_path(tmp_path, "e", "d", "r", 0)
    # the name the reports read back: run, seed and tag
    assert parse_record_name(main.name) == ("Lite-LLM4Rec_sampling", 2, None)
    assert parse_record_name(variant.name) == ("Lite-LLM4Rec_sampling", 2, "gpu")


def test_per_user_ranks_stored_in_the_smallest_unsigned_type_capped_at_the_evaluated_k(tmp_path):
    """compact_per_user's docstring: a rank past the largest K is stored as largest K + 1, in the
    smallest unsigned type that holds it; the Ks are those the evaluation ran with (its block),
    the config's only for records without one."""
    ranks = np.array([1.0, 3.0, 7.0, np.inf])
    for largest_k, dtype in ((254, np.uint8), (255, np.uint16), (65534, np.uint16), (65535, np.uint32)):
        arrays, meta = records.compact_per_user({"config": {"eval": {"ks": [1, largest_k]}}}, {"rank": ranks})
        assert arrays["rank"].dtype == dtype, largest_k
        assert arrays["rank"].tolist() == [1, 3, 7, largest_k + 1] and meta["rank_cap"] == str(largest_k + 1)
    evaluated = {"config": {"eval": {"ks": [10, 20]}}, "evaluation": {"ks": [5]}}
    arrays, meta = records.compact_per_user(evaluated, {"rank": ranks})
    assert arrays["rank"].tolist() == [1, 3, 6, 6] and meta["ks"] == "5" and meta["rank_cap"] == "6"
    # users other than 0..n-1 are kept, as int32 (4 bytes a user); read back as int64 indices
    arrays, _ = records.compact_per_user(evaluated, {"rank": ranks, "user_index": np.array([9, 2, 4, 7])})
    assert arrays["user_index"].dtype == np.int32 and arrays["user_index"].tolist() == [9, 2, 4, 7]
    path = tmp_path / "Toy__seed0.json"
    records.write_record(path, evaluated, {"rank": ranks, "user_index": np.array([9, 2, 4, 7])})
    back = records.read_per_user(path)
    assert back["user_index"].dtype == np.int64 and back["user_index"].tolist() == [9, 2, 4, 7]
    assert back["recall@5"].tolist() == [1.0, 1.0, 0.0, 0.0]
    for bad in ([0.0, 2.0], [1.0, np.nan]):
        with pytest.raises(ValueError, match=r"^per-user ranks must be >= 1 \(inf for a target never listed\)$"):
            records.compact_per_user(evaluated, {"rank": np.array(bad)})


def test_per_user_file_sits_beside_its_record_under_a_fixed_name(tmp_path):
    # the committed results hold files of this name: reading them depends on it
    assert records.per_user_path(Path("results") / "t3" / "ml-1m" / "SASRec__seed0.json") == \
        Path("results") / "t3" / "ml-1m" / "SASRec__seed0.per_user.safetensors"
    assert records.per_user_path(Path("SASRec__seed0__gpu.json")).name == "SASRec__seed0__gpu.per_user.safetensors"


def test_iter_records_yields_finished_records_only(tmp_path):
    records.write_record(tmp_path / "e" / "d" / "A__seed0.json", {"status": "ok", "run": "A"})
    (tmp_path / "e" / "d" / "B__seed0.json").write_text('{"status": "ok", "run"')  # cut short
    (tmp_path / "e" / "study.json").write_text('{"trials": 8}')  # a JSON file that is no record
    assert [(path.name, rec["run"]) for path, rec in records.iter_records(tmp_path)] == [("A__seed0.json", "A")]

