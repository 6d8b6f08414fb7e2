"""Time the template's own `make test`: where its minutes go, and the floor the cores set.

One run waits for a quiet machine, then runs `make test` in the template repository with
TEST_TIMINGS set, so that each test appends its wall and CPU time (tests/timings.py: set-up,
call and tear-down; its process and the children it waited for) to build/bench-tests/. It reads
the machine's CPU counters (/proc/stat) before and after: the CPU seconds the machine was busy,
divided by its cores, is the floor no scheduling of the same work could go below. It prints the
run's wall time against that floor and the goal (GOAL_MINUTES), then the tests' time by tier, by
file, the longest tests, and the commands the tests ran (a baked project's `make check`, a
rehearsed job's `make setup`) added up across tests. A failed `make test` is reported too, and
the script exits 1.

Run it from the template repository's root, with `uv` on PATH (`make bench-tests` does both);
nothing else may run meanwhile. It prints markdown, from which docs/benchmarks-tests.md is
written, and keeps `make test`'s output in build/bench-tests/make-test.log.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from _bake import ROOT, load_average, parse_command_line, quiet_env, system, wait_for_quiet

BENCH = ROOT / "build" / "bench-tests"
GOAL_MINUTES = 20
LONGEST = 15
COSTLIEST = 20
# /proc/stat's first line: the whole machine's CPU time by state, in clock ticks.
IDLE_STATES = ("idle", "iowait")
STATES = ("user", "nice", "system", *IDLE_STATES, "irq", "softirq", "steal")


@dataclass(frozen=True)
class Test:
    """One test's record from tests/timings.py."""

    test: str
    slow: bool
    wall: float
    cpu: float

    @property
    def file(self) -> str:
        return self.test.partition("::")[0]

    @property
    def tier(self) -> str:
        return "slow" if self.slow else "fast"


@dataclass(frozen=True)
class CpuTime:
    """Seconds the machine's cores spent busy and idle, all cores together."""

    busy: float
    idle: float

    @classmethod
    def now(cls) -> CpuTime:
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path("/proc/stat").read_text(encoding="utf-8").splitlines()[0].split()[1:]
        states = dict(zip(STATES, (int(value) / ticks for value in fields), strict=False))
        idle = sum(states[state] for state in IDLE_STATES)
        return cls(busy=sum(states.values()) - idle, idle=idle)

    def __sub__(self, other: CpuTime) -> CpuTime:
        return CpuTime(self.busy - other.busy, self.idle - other.idle)


@dataclass(frozen=True)
class Command:
    """One command a test ran and waited for, from tests/timings.py."""

    command: str
    test: str
    wall: float
    cpu: float


Record = TypeVar("Record", Test, Command)


def run_make_test(timings: Path, log: Path) -> tuple[int, float, CpuTime]:
    """`make test`, its output in `log`: exit code, wall seconds, the machine's CPU time."""
    env = quiet_env({"TEST_TIMINGS": str(timings)})
    before, start = CpuTime.now(), time.perf_counter()
    with log.open("wb") as out:
        code = subprocess.run(
            ["make", "test"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        ).returncode
    return code, time.perf_counter() - start, CpuTime.now() - before


def summary_line(log: Path) -> str:
    """pytest's last line (`=== 471 passed in ... ===`), or the log's last line."""
    lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines() or [""]
    found = [line for line in lines if re.match(r"=+ .*(passed|failed|error).* =+$", line)]
    return (found or lines)[-1].strip("= ")


def grouped(
    records: Iterable[Record], key: Callable[[Record], str], by: str = "wall"
) -> list[tuple[str, list[Record]]]:
    """The records (tests or commands) by `key`, the group with the most `by` (wall or cpu)
    first."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return sorted(groups.items(), key=lambda item: -sum(getattr(one, by) for one in item[1]))


def table(title: str, rows: list[tuple[str, list[Test]]]) -> list[str]:
    lines = [f"| {title} | tests | wall s | CPU s |", "|---|---:|---:|---:|"]
    for name, tests in rows:
        wall, cpu = sum(test.wall for test in tests), sum(test.cpu for test in tests)
        lines.append(f"| {name} | {len(tests)} | {wall:.0f} | {cpu:.0f} |")
    return lines


def command_table(commands: list[Command]) -> list[str]:
    """The commands by name, the most CPU first: how often, in how many tests, and their cost."""
    rows = grouped(commands, lambda command: command.command, by="cpu")
    lines = [
        f"| the {COSTLIEST} costliest commands | runs | tests | wall s | CPU s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, runs in rows[:COSTLIEST]:
        tests = len({run.test for run in runs})
        wall, cpu = sum(run.wall for run in runs), sum(run.cpu for run in runs)
        lines.append(f"| `{name}` | {len(runs)} | {tests} | {wall:.0f} | {cpu:.0f} |")
    return lines


def main() -> None:
    parse_command_line(__doc__)
    BENCH.mkdir(parents=True, exist_ok=True)
    timings, log = BENCH / "timings.jsonl", BENCH / "make-test.log"
    timings.unlink(missing_ok=True)
    quiet = wait_for_quiet()
    machine = system()  # its date: when `make test` started
    print(f"running make test (its output: {log.relative_to(ROOT)}) ...", flush=True)
    code, wall, cpu = run_make_test(timings, log)
    if not timings.exists():  # make stopped before pytest ran a test
        sys.exit(f"ERROR: make test exited {code} before any test ran; its output is in {log}")
    records = [json.loads(line) for line in timings.read_text(encoding="utf-8").splitlines()]
    tests = [Test(**record) for record in records if "command" not in record]
    commands = [Command(**record) for record in records if "command" in record]

    cores = os.cpu_count() or 1
    floor = cpu.busy / cores
    goal = GOAL_MINUTES * 60
    lines = [f"- {key}: {value}" for key, value in machine.items()]
    lines += [
        f"- load average before: {quiet}; after: {load_average()}",
        f"- `make test`: exit {code}, {summary_line(log)}",
        f"- wall: {wall:.0f} s ({wall / 60:.1f} min)",
        f"- the machine's CPU meanwhile: {cpu.busy:.0f} s busy, {cpu.idle:.0f} s idle "
        f"({cpu.busy / (cpu.busy + cpu.idle):.0%} busy)",
        f"- floor, busy CPU / {cores} cores: {floor:.0f} s ({floor / 60:.1f} min); "
        f"the run took {wall / floor:.2f}x it",
        f"- goal: {GOAL_MINUTES} min, i.e. at most {goal * cores:.0f} CPU s at this machine's "
        f"cores; {max(cpu.busy - goal * cores, 0):.0f} CPU s "
        f"({max(1 - goal * cores / cpu.busy, 0):.0%}) over it",
        f"- the tests' own records: {sum(t.wall for t in tests):.0f} worker-s of wall, "
        f"{sum(t.cpu for t in tests):.0f} CPU s (their processes and the children they waited for)",
        f"- the commands they ran and waited for: {len(commands)} runs, "
        f"{sum(c.cpu for c in commands):.0f} CPU s",
        "",
        *table("tier", grouped(tests, lambda test: test.tier)),
        "",
        *table("file", grouped(tests, lambda test: test.file)),
        "",
        f"| the {LONGEST} longest tests | tier | wall s | CPU s |",
        "|---|---|---:|---:|",
    ]
    for test in sorted(tests, key=lambda test: -test.wall)[:LONGEST]:
        lines.append(f"| `{test.test}` | {test.tier} | {test.wall:.0f} | {test.cpu:.0f} |")
    lines += ["", *command_table(commands)]
    print("\n".join(lines))
    if code != 0:
        sys.exit(f"ERROR: make test exited {code}; its output is in {log}")


if __name__ == "__main__":
    main()
