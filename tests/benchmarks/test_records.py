"""Provenance where there is no git: the code's content hash, the same for a checkout on disk and
for its commit read with git, and the commit named by $SUITE_GIT_COMMIT checked against it."""
import subprocess

from benchmarks import records, report


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
