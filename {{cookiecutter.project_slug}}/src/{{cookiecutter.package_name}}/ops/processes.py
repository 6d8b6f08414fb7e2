"""Programs a command leaves running in the background: started with a log, recorded in a pid
file that names the very process, found again, and stopped.

A pid is reused once its process ends, so a pid file holds the pid and the process's start time
together, and a command line marker too must match before anything is signalled. A program's log
sits beside its pid file: `<name>.pid`, `<name>.log`.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..core.errors import ProjectError


def open_private(path: Path, append: bool = False) -> BinaryIO:
    """The file opened for writing, readable by its owner only (0600), whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    descriptor = os.open(path, flags, 0o600)
    os.fchmod(descriptor, 0o600)  # an older file may have been made with a wider mode
    return os.fdopen(descriptor, "ab" if append else "wb")


def write_private(path: Path, text: str) -> None:
    with open_private(path) as file:
        file.write(text.encode("utf-8"))


def process_start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (/proc/<pid>/stat, field 22).

    A pid is reused once its process ends; the pid and this time together name one process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    # Field 2, the command name in parentheses, may hold spaces and parentheses itself.
    fields = stat.rpartition(")")[2].split()
    return int(fields[22 - 3])


def record(pid_file: Path, pid: int) -> None:
    write_private(pid_file, f"{pid} {process_start_time(pid)}\n")


def running(pid_file: Path, marker: bytes) -> int | None:
    """The process the pid file names, if it still runs with `marker` in its command line.

    Both the pid and the process's start time must match: after the process ends, its pid may
    go to any other process, and a stale file must not name that one.
    """
    try:
        pid_text, started_text = pid_file.read_text(encoding="utf-8").split()
        pid, started = int(pid_text), int(started_text)
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if marker not in command or process_start_time(pid) != started:
        return None
    return pid


def spawn(
    command: list[str], log: Path, pid_file: Path, env: Mapping[str, str] | None = None
) -> "subprocess.Popen[bytes]":
    """Start `command` in its own session, its output appended to `log`, and record it."""
    with open_private(log, append=True) as output:
        process = subprocess.Popen(
            command,
            env=None if env is None else dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record(pid_file, process.pid)
    return process


def stop(pid_file: Path, marker: bytes, seconds: float = 30) -> bool:
    """Stop the recorded process group (SIGTERM, then SIGKILL); whether one was running."""
    pid = running(pid_file, marker)
    if pid is not None:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + seconds
        while running(pid_file, marker) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if running(pid_file, marker) is not None:
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return pid is not None


def last_line(log: Path) -> str:
    """The log's last error line, or its last line: what to say when a program stops."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"no log at {log}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line or "Exception" in line]
    return f"{(errors or lines or ['no output'])[-1]} (see {log})"


def answers(url: str) -> bool:
    """Whether `url` answers 200 now; refused or failing means not (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until_answers(
    url: str, process: "subprocess.Popen[bytes]", pid_file: Path, marker: bytes, what: str
) -> None:
    """Wait for `url` to answer; if the program stops or stays silent for 60 s, stop it and
    say why in one line, from its log."""
    deadline = time.monotonic() + 60
    while not answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(pid_file, marker)
            raise ProjectError(f"{what} did not start: {last_line(pid_file.with_suffix('.log'))}")
        time.sleep(0.3)


def check_port_free(
    host: str, port: int, what: str, option: str, target: str = "mlflow-server"
) -> None:
    """Refuse a taken port in one line naming the `make <target>` option that moves it."""
    with socket.socket() as sock:
        # As the servers themselves do: connections of a server just stopped do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise ProjectError(
                f"port {port} on {host} is taken, so {what} cannot listen there: stop what uses "
                f'it or pick another port (make {target} ARGS="{option} <port>")'
            ) from None


@dataclass(frozen=True)
class Daemon:
    """One program of `make stack`: how messages name it, the option that moves its port, and
    its pid file (its log beside it) with the marker its command line holds."""

    what: str
    option: str
    port: int
    pid: Path
    marker: bytes

    def is_running(self) -> bool:
        return running(self.pid, self.marker) is not None

    def stop(self) -> bool:
        return stop(self.pid, self.marker)


def start_daemon(
    daemon: Daemon,
    command: Callable[[], list[str]],
    ready: str,
    env: Mapping[str, str] | None = None,
) -> None:
    """Start a program of the stack on 127.0.0.1: its port checked free, its folder made (0700),
    then `command()` (which may write its configuration there first) spawned, and
    waited for until `ready` answers; a program that stops or stays silent is stopped again,
    with one line from its log."""
    check_port_free("127.0.0.1", daemon.port, daemon.what, daemon.option, "stack")
    daemon.pid.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    process = spawn(command(), daemon.pid.with_suffix(".log"), daemon.pid, env)
    wait_until_answers(ready, process, daemon.pid, daemon.marker, daemon.what)
