"""Bake a project from this template into a folder, set it up and run commands in it quietly.

What the benchmarks share: the bake itself and its `make` targets, an environment with every
tool's telemetry off, running a command and stopping the benchmark with its output when it fails,
timings of repeated runs, and a description of the machine the figures come from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
QUIET_ENV = {
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "UV_PYTHON_DOWNLOADS": "never",
}
# Before measuring, wait up to QUIET_WAIT seconds for the 1-minute load average to drop below
# QUIET_LOAD, looking every QUIET_POLL seconds.
QUIET_LOAD = 1.0
QUIET_WAIT = 300.0
QUIET_POLL = 15.0
# Prints the Python version and those of the packages named on the command line, as JSON.
VERSIONS = """\
import json, platform, sys
from importlib.metadata import version
print(json.dumps({"python": platform.python_version(), **{n: version(n) for n in sys.argv[1:]}}))
"""


@dataclass(frozen=True)
class Project:
    """A baked, installed project and how to run things in it."""

    path: Path
    package: str
    model_name: str
    env: dict[str, str]

    @classmethod
    def baked(cls, path: Path, extra: Mapping[str, str] | None = None) -> Project:
        """The project baked at `path`, named as its recorded cookiecutter answers say.

        Its commands run in `quiet_env(extra)` with `.venv/bin` first on PATH, as `uv run` puts it.
        """
        answers = json.loads((path / ".cookiecutter.json").read_text(encoding="utf-8"))
        env = quiet_env(extra, first_on_path=path / ".venv" / "bin")
        return cls(path, answers["package_name"], answers["project_slug"], env)

    def tool(self, name: str) -> str:
        """A command installed in the project's .venv."""
        return str(self.path / ".venv" / "bin" / name)

    @property
    def python(self) -> str:
        return self.tool("python")


@dataclass(frozen=True)
class Timing:
    """Seconds of the repeated runs of one thing."""

    label: str
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def spread(self, between: str = "-") -> str:
        return f"{min(self.seconds):.2f}{between}{max(self.seconds):.2f}"

    def row(self, *middle: str, between: str = "-") -> str:
        """A markdown table row: label, median, range, the `middle` cells, number of runs."""
        cells = [self.label, f"{self.median:.2f}", self.spread(between), *middle]
        return f"| {' | '.join(cells)} | {len(self.seconds)} |"


def parse_command_line(doc: str | None) -> None:
    """Answer `--help` with the script's docstring, before anything slow; no other options."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args()


def quiet_env(
    extra: Mapping[str, str] | None = None, first_on_path: Path | None = None
) -> dict[str, str]:
    """This process's environment, telemetry off, no active virtualenv, plus `extra`.

    Python writes .pyc files, as on a laptop: a machine that turns them off would time Python
    compiling every import again.
    """
    unset = ("VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env.update(QUIET_ENV)
    env.update(extra or {})
    if first_on_path is not None:
        env["PATH"] = f"{first_on_path}{os.pathsep}{env.get('PATH', '')}"
    return env


def require_uv() -> None:
    if shutil.which("uv") is None:
        sys.exit(
            "ERROR: uv is not on PATH, and the baked project's Makefile runs everything with it; "
            "`make bench` installs it into build/tools/bin, or put uv on PATH"
        )


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command and return its output; stop the benchmark with that output if it fails."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(
            f"ERROR: {' '.join(command)} exited {result.returncode} in {cwd}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout + result.stderr


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """`run`, and the seconds it took."""
    start = time.perf_counter()
    output = run(command, cwd, env)
    return time.perf_counter() - start, output


def bake(folder: Path, answers: Mapping[str, str] | None = None) -> Path:
    """Bake the default project into `folder`, emptied first, with a private cookiecutter config.

    `answers` change the defaults; without them the DVC remote is a folder beside the project.
    Stops first if uv is missing: the baked project's Makefile runs everything with it.
    """
    require_uv()
    print(f"baking the default project into {folder} ...", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = folder / "cookiecutter.yaml"
    config.write_text(
        f"cookiecutters_dir: {json.dumps(str(folder / 'templates'))}\n"
        f"replay_dir: {json.dumps(str(folder / 'replay'))}\n",
        encoding="utf-8",
    )
    os.environ.update(QUIET_ENV)
    path = cookiecutter(
        str(ROOT),
        no_input=True,
        output_dir=str(folder),
        config_file=str(config),
        extra_context=dict(answers or {"dvc_remote_url": str(folder / "dvc-remote")}),
    )
    return Path(path)


def make(path: Path, targets: Sequence[str], env: dict[str, str]) -> float:
    """`make <target>` for each of `targets`, in turn, in the project at `path`; the seconds."""
    start = time.perf_counter()
    for target in targets:
        print(f"  make {target} ...", flush=True)
        run(["make", target], path, env)
    return time.perf_counter() - start


def set_up(folder: Path, targets: Sequence[str]) -> tuple[Project, float]:
    """Bake into `folder` and run `make <target>` for each of `targets` in the project.

    Returns the project and the seconds the targets took.
    """
    path = bake(folder)
    seconds = make(path, targets, quiet_env())
    return Project.baked(path), seconds


def cpu_model() -> str:
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def system() -> dict[str, str]:
    """Date, system and CPU."""
    return {
        "date": datetime.now().astimezone().isoformat(timespec="minutes"),
        "system": platform.platform(),
        "cpu": f"{os.cpu_count()} logical cores, {cpu_model()}",
    }


def versions(project: Project, packages: list[str]) -> dict[str, str]:
    """The versions of Python and `packages` in the project's .venv."""
    probe = [project.python, "-c", VERSIONS, *packages]
    found = json.loads(run(probe, project.path, project.env))
    return {
        "python": f"{found.pop('python')} (the baked project's .venv)",
        "packages": ", ".join(f"{name} {value}" for name, value in found.items()),
    }


def machine(project: Project, packages: list[str]) -> dict[str, str]:
    """Date, system, CPU, and the versions of Python and `packages` in the project's .venv."""
    return system() | versions(project, packages)


def wait_for_quiet() -> str:
    """Wait, up to QUIET_WAIT, for the 1-minute load average to drop below QUIET_LOAD."""
    start = time.monotonic()
    while os.getloadavg()[0] > QUIET_LOAD and time.monotonic() - start < QUIET_WAIT:
        print(
            f"  load average {load_average()}: waiting for it to drop below {QUIET_LOAD} ...",
            flush=True,
        )
        time.sleep(QUIET_POLL)
    waited = time.monotonic() - start
    state = "quiet" if os.getloadavg()[0] <= QUIET_LOAD else "still busy, measured anyway"
    return f"{load_average()} (after waiting {waited:.0f} s: {state})"


def peak_process(command: list[str], project: Project, log: Path) -> tuple[float, int, str]:
    """Run `command` in the project: wall seconds, peak RSS in KiB and its output (in `log`).

    Exits with the output's end when the command fails.
    """
    start = time.perf_counter()
    with (
        log.open("wb") as out,
        subprocess.Popen(
            command, cwd=project.path, env=project.env, stdout=out, stderr=subprocess.STDOUT
        ) as process,
    ):
        # wait4, not wait: it returns the child's own resource usage, peak RSS included.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    text = log.read_text(encoding="utf-8", errors="replace").strip()
    if process.returncode != 0:
        sys.exit(f"ERROR: {' '.join(command)} exited {process.returncode}\n{text[-3000:]}")
    return seconds, usage.ru_maxrss, text
