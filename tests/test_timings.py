"""Fast tier: the timings plugin behind `make bench-tests` records what each test cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from . import timings
from .conftest import ROOT

# A sample suite: the marker is bound to a name so that this file's text is no slow test file.
SAMPLE = """
import subprocess
import sys
import time

import pytest

from tests import timings

slow = pytest.mark.slow
BURN = "import time\\nstart = time.process_time()\\nwhile time.process_time() - start < 0.3: pass"


def test_waits():
    time.sleep(0.3)


@slow
def test_burns_cpu_in_a_child():
    with timings.command("burn"):
        subprocess.run([sys.executable, "-c", BURN], check=True)


def test_fails():
    assert False
"""


def run_sample(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers = slow\n", encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.timings"],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )


def test_each_test_s_wall_and_cpu_time_are_recorded_failed_or_not(tmp_path: Path) -> None:
    timings = tmp_path / "timings.jsonl"

    result = run_sample(tmp_path, {"TEST_TIMINGS": str(timings)})

    assert result.returncode == 1, result.stdout  # test_fails
    lines = [json.loads(line) for line in timings.read_text(encoding="utf-8").splitlines()]
    records = {record["test"].split("::")[1]: record for record in lines if "slow" in record}
    assert sorted(records) == ["test_burns_cpu_in_a_child", "test_fails", "test_waits"]
    waits, burns = records["test_waits"], records["test_burns_cpu_in_a_child"]
    assert waits["wall"] >= 0.3
    assert waits["cpu"] < 0.2  # sleeping costs no CPU
    assert burns["cpu"] >= 0.3  # the child's CPU counts
    assert (burns["slow"], waits["slow"]) == (True, False)
    # The command inside the test: its own line, named, with the child's CPU and its test.
    (burn,) = [record for record in lines if "command" in record]
    assert burn["command"] == "burn"
    assert burn["test"] == "test_sample.py::test_burns_cpu_in_a_child"
    assert 0.3 <= burn["cpu"] <= burns["cpu"]
    assert burn["wall"] <= burns["wall"]


def test_nothing_is_recorded_without_a_file_named(tmp_path: Path) -> None:
    result = run_sample(tmp_path, {"TEST_TIMINGS": ""})

    assert "1 failed, 2 passed" in result.stdout, result.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pytest.ini", "test_sample.py"]


def test_a_command_is_named_by_its_program_and_first_words() -> None:
    assert timings.label(["make", "promote", "REASON=a reason"]) == "make promote"
    assert timings.label(["uv", "run", "--locked", "dvc", "push", "-r", "x"]) == "uv run dvc"
    assert timings.label(["/usr/bin/git", "clone", "-q", "/tmp/a", "/tmp/b"]) == "git clone"
    assert timings.label("make remotes READ_ONLY=1\nmake evaluate\n") == "make remotes"
    assert timings.label('make plan >> "$GITHUB_OUTPUT"') == "make plan"
    assert timings.label(["ruff", "check", "."]) == "ruff check"
    assert timings.label('echo "a quote closed\non the next line"') == "echo quote closed"
    assert timings.label("  ") == "(empty)"
