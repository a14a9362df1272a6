"""The command lines the scaling tests run, read from the README ("Scaling out", the bash block
after "What the tests run"): the tests run those lines, so the README names exactly what they test,
and a line changed there changes the test (or breaks it) rather than drifting from it.

The README prints names relative to a temporary folder (toyexp.yaml, toy-ml1m, jobs) and
FREE_PORT for accelerate's port; a test puts its own paths there and adds the folders every test
keeps in its temporary folder (results, reports, the data cache), which the README leaves out."""
import re
import shlex
import socket
import sys
from pathlib import Path

from tests.benchmarks.toy_models import REPO, toy_folders

# The block's lines, in order: the position of each line the tests run
LOCAL, LOCAL_AGAIN, LOCAL_LIST, SLURM, SLURM_GROUPED, ACCELERATE = range(6)
TEMPORARY_NAMES = ("toyexp.yaml", "toy-ml1m", "jobs")


def readme_test_commands() -> list[list[str]]:
    """The block's command lines, each split as a shell would (comments dropped)."""
    section = (REPO / "README.md").read_text().split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"What the tests run.*?```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line.split("  #")[0]) for line in block.splitlines() if line.strip()]


def in_folder(words: list[str], folder: Path) -> list[str]:
    return [str(folder / word) if word in TEMPORARY_NAMES else word for word in words]


def run_all_argv(index: int, folder: Path) -> list[str]:
    """README line `index` (a `python run_all.py ...` line) as run_all.main's arguments."""
    words = readme_test_commands()[index]
    assert words[:2] == ["python", "run_all.py"], words
    return in_folder(words[2:], folder) + toy_folders(folder)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(index: int, folder: Path) -> list[str]:
    """README line `index` (an `accelerate launch ... run_all.py ...` line) as a subprocess's
    command: this environment's accelerate, a free port."""
    words = readme_test_commands()[index]
    assert words[:2] == ["accelerate", "launch"] and "run_all.py" in words, words
    words = [str(Path(sys.executable).with_name("accelerate"))] + words[1:]
    words = [str(free_port()) if word == "FREE_PORT" else word for word in words]
    return in_folder(words, folder) + toy_folders(folder)
