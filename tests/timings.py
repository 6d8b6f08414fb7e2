"""What each test costs, for `make bench-tests`: off unless TEST_TIMINGS names a file.

Appends one JSON line per test: its node id, whether it is slow, its wall time (set-up, call and
tear-down) and the CPU time its process and the children it waited for spent meanwhile. Each
xdist worker appends its own lines; a line is short enough to be written in one piece.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Generator
from pathlib import Path

import pytest


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    target = os.environ.get("TEST_TIMINGS")
    if not target:
        return (yield)
    wall, cpu = time.perf_counter(), _cpu_seconds()
    try:
        return (yield)
    finally:
        record = {
            "test": item.nodeid,
            "slow": item.get_closest_marker("slow") is not None,
            "wall": round(time.perf_counter() - wall, 3),
            "cpu": round(_cpu_seconds() - cpu, 3),
        }
        with Path(target).open("a", encoding="utf-8") as timings:
            timings.write(json.dumps(record) + "\n")
