"""What each test costs, for `make bench-tests`: off unless TEST_TIMINGS names a file.

Appends one JSON line per test: its node id, whether it is slow, its wall time (set-up, call and
tear-down) and the CPU time its process and the children it waited for spent meanwhile. The
tests' helpers also append one line per command they run and wait for (`command`: `make check`,
`uv run dvc`, a rehearsed job's `make setup`), so that the costs shared by many tests add up.
Each xdist worker appends its own lines; a line is short enough to be written in one piece.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BOTH = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)


def _cpu_seconds(*who: int) -> float:
    """User and system CPU seconds of this process, or of its waited-for children, or both."""
    usages = [resource.getrusage(of) for of in who]
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


def _append(target: str, record: dict[str, object]) -> None:
    with Path(target).open("a", encoding="utf-8") as timings:
        timings.write(json.dumps(record) + "\n")


def label(command: list[str] | str) -> str:
    """A command's name across tests: the program and its first two words that are no option,
    setting, path or redirection (`make promote REASON=x` is `make promote`; `uv run --locked
    dvc push` is `uv run dvc`). A shell script is named after its first line."""
    if isinstance(command, str):
        line = command.strip().partition("\n")[0]
        try:
            command = shlex.split(line)
        except ValueError:  # an unclosed quote that a later line closes
            command = line.split()
    if not command:
        return "(empty)"
    words = [word for word in command[1:] if word[:1].isalnum() and not {"=", "/"} & set(word)]
    return " ".join([Path(command[0]).name, *words[:2]])


@contextmanager
def command(name: str) -> Iterator[None]:
    """Record the command run inside: its wall time and the CPU time of the children this
    process waited for meanwhile (the command, and all it ran and waited for)."""
    target = os.environ.get("TEST_TIMINGS")
    if not target:
        yield
        return
    wall, cpu = time.perf_counter(), _cpu_seconds(resource.RUSAGE_CHILDREN)
    try:
        yield
    finally:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rpartition(" ")[0]
        _append(
            target,
            {
                "command": name,
                "test": test,
                "wall": round(time.perf_counter() - wall, 3),
                "cpu": round(_cpu_seconds(resource.RUSAGE_CHILDREN) - cpu, 3),
            },
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    target = os.environ.get("TEST_TIMINGS")
    if not target:
        return (yield)
    wall, cpu = time.perf_counter(), _cpu_seconds(*BOTH)
    try:
        return (yield)
    finally:
        record = {
            "test": item.nodeid,
            "slow": item.get_closest_marker("slow") is not None,
            "wall": round(time.perf_counter() - wall, 3),
            "cpu": round(_cpu_seconds(*BOTH) - cpu, 3),
        }
        _append(target, record)
