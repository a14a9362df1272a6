"""The launcher: the plan's runs as submitit jobs (processes here with --launcher local; Slurm's
sbatch files through a stand-in sbatch), reports built once, only missing runs submitted."""
import json
import os
import re
from pathlib import Path

import pytest

import run_all
from benchmarks import cli as climod
from tests.benchmarks.scaling_commands import (ACCELERATE, LOCAL, LOCAL_AGAIN, LOCAL_LIST, SLURM, SLURM_GROUPED,
                                               readme_test_commands, run_all_argv)
from tests.benchmarks.toy_models import toy_cli, write_toy_experiment


def test_local_launcher_runs_each_run_as_a_job_reports_once_and_submits_only_what_is_missing(
        tmp_path, toy_ml1m, one_thread_children, monkeypatch, capsys):
    write_toy_experiment(tmp_path)  # toyexp.yaml, as the README's lines name it
    builds, real_report = [], climod.report
    monkeypatch.setattr(climod, "report", lambda args: builds.append(args.reports_dir) or real_report(args))
    # the README's lines (tests/benchmarks/scaling_commands.py), run in this process so that the
    # report builds are counted
    assert run_all.main(run_all_argv(LOCAL, tmp_path)) == 0
    out = capsys.readouterr().out
    ran = re.findall(r"\[launch\] job (\S+) ran in process (\d+) on \S+: (\S+) ok", out)
    assert sorted(key for *_, key in ran) == ["toyexp/ml-1m/MostPopular/seed0", "toyexp/ml-1m/Toy/seed0"]
    processes = {int(pid) for _, pid, _ in ran}
    assert len(processes) == 2 and os.getpid() not in processes  # two jobs, two processes, neither this one
    folder = tmp_path / "results" / "toyexp" / "ml-1m"
    records = {path.name: json.loads(path.read_text()) for path in folder.glob("*.json")}
    assert set(records) == {"MostPopular__seed0.json", "Toy__seed0.json"}  # one results folder
    assert all(record["status"] == "ok" for record in records.values())
    assert records["Toy__seed0.json"]["training"]["processes"] == 1
    assert builds == [str(tmp_path / "reports")] and "| Toy" in (tmp_path / "reports" / "table3.md").read_text()

    # submitted again: every run has its record, nothing is submitted
    jobs_before = sorted(p.name for p in (tmp_path / "jobs").iterdir())
    assert run_all.main(run_all_argv(LOCAL_AGAIN, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "nothing to submit: all 2 run(s) have records" in out and "[launch] job" not in out
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == jobs_before

    # a job cut before its record (a cancelled task): only its run is submitted again
    (folder / "MostPopular__seed0.json").unlink()
    assert run_all.main(run_all_argv(LOCAL_LIST, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "1 task(s) for local processes (1 of 2 run(s) recorded, not submitted)" in out
    assert "toyexp/ml-1m/MostPopular/seed0" in out and "Toy/seed0" not in out


def fake_sbatch(tmp_path, monkeypatch) -> Path:
    """An `sbatch` that keeps each script it is given and answers as Slurm does (and an `srun`)."""
    kept = tmp_path / "sbatch"
    kept.mkdir()
    tool = tmp_path / "bin" / "sbatch"
    tool.parent.mkdir()
    tool.write_text(f"#!/bin/sh\nn=$(ls {kept} | wc -l)\ncp \"$1\" {kept}/$((n + 100)).sh\n"
                    "echo \"Submitted batch job $((n + 100))\"\n")
    tool.chmod(0o755)
    (tool.parent / "srun").symlink_to("/bin/true")  # submitit looks for srun to know it is on Slurm
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    return kept


def test_slurm_launcher_submits_arrays_by_time_limit_then_a_report_job_after_all(tmp_path, toy_ml1m, monkeypatch, capsys):
    kept = fake_sbatch(tmp_path, monkeypatch)
    write_toy_experiment(tmp_path)
    assert run_all.main(run_all_argv(SLURM, tmp_path)) == 0
    scripts = [(kept / f"{n}.sh").read_text() for n in (100, 101, 102)]
    assert not (kept / "103.sh").exists()
    # no records: each run's limit from its family's declared estimate (MostPopular 60 s, a model
    # of one's own 3600 s), padded and rounded up to a tier; one array (here one task) per limit
    assert "#SBATCH --time=30" in scripts[0] and "#SBATCH --time=120" in scripts[1]
    for script in scripts[:2]:
        assert "#SBATCH --gpus-per-node=1" in script and "#SBATCH --partition=gpu" in script
        assert "#SBATCH --account=proj" in script and "#SBATCH --ntasks-per-node=1" in script
    report = scripts[2]
    assert "#SBATCH --dependency=afterany:100:101" in report and "#SBATCH --job-name=llm4rec-reports" in report
    assert "gpus" not in report and "#SBATCH --account=proj" in report
    out = capsys.readouterr().out
    assert "report job 102 starts once every task has ended (afterany:100:101)" in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "reports").exists()  # nothing ran here

    # a time per run: cheap runs share a task up to it (one array of one task), 2 GPUs: 2 processes
    assert run_all.main(run_all_argv(SLURM_GROUPED, tmp_path)) == 0
    grouped = (kept / "103.sh").read_text()
    assert "#SBATCH --time=200" in grouped and "#SBATCH --gpus-per-node=2" in grouped
    assert "#SBATCH --ntasks-per-node=2" in grouped
    assert "#SBATCH --dependency=afterany:103" in (kept / "104.sh").read_text()
    assert "2 run(s)" in capsys.readouterr().out


@pytest.mark.parametrize("bad, message", [
    (["--shard", "1/2"], "without --shard"), (["--slurm-gpus-per-run", "-1"], ">= 0"),
    (["--slurm-time-per-run", "0"], "minutes > 0"), (["--max-parallel", "0"], ">= 1"),
    (["--slurm-option", "account"], "KEY=VALUE"), (["--tune"], "give it without --tune")])
def test_bad_launcher_options_are_config_errors(tmp_path, toy_ml1m, capsys, monkeypatch, bad, message):
    fake_sbatch(tmp_path, monkeypatch)
    exp = write_toy_experiment(tmp_path)
    assert run_all.main(toy_cli(tmp_path, toy_ml1m, exp) + ["--launcher", "slurm"] + bad) == 2
    assert message in capsys.readouterr().err


def test_slurm_launcher_without_slurm_here_says_so(tmp_path, toy_ml1m, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    exp = write_toy_experiment(tmp_path)
    assert run_all.main(toy_cli(tmp_path, toy_ml1m, exp) + ["--launcher", "slurm"]) == 2
    assert "no sbatch here" in capsys.readouterr().err


def test_the_readme_names_exactly_the_command_lines_the_scaling_tests_run():
    """The tests above and test_data_parallel.py run the README's lines by position: the block
    must hold those lines, in that order, and each must parse."""
    lines = readme_test_commands()
    assert len(lines) == ACCELERATE + 1
    local = lines[LOCAL]
    assert local[:4] == ["python", "run_all.py", "--experiments", "toyexp.yaml"] and "local" in local
    assert lines[LOCAL_AGAIN] == local and lines[LOCAL_LIST] == local + ["--list"]  # again; then listed
    assert "slurm" in lines[SLURM] and lines[SLURM_GROUPED][:len(lines[SLURM])] == lines[SLURM]
    for line in lines[:ACCELERATE]:
        climod.parser().parse_args(line[2:])
    launch_words = lines[ACCELERATE][:lines[ACCELERATE].index("run_all.py")]
    assert launch_words[:5] == ["accelerate", "launch", "--multi_gpu", "--num_processes", "2"]
    climod.parser().parse_args(lines[ACCELERATE][len(launch_words) + 1:])
