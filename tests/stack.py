"""The stack of a baked project (`make stack`) for the slow tier: its ports, its folder, the
variables its clients read, and the objects its store holds.

tests/test_stack_slow.py checks the stack works; tests/test_stack_faults_slow.py stops its
services in the middle of the project's steps.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .conftest import free_port, run

SERVICES = ("mlflow", "pg", "s3", "registry", "prometheus")
# Every object of every bucket, as {bucket: [keys]}, listed with the project's own boto3.
LIST_BUCKETS = """
import json
import boto3
s3 = boto3.client("s3")
print(json.dumps({
    bucket["Name"]: [
        entry["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"])
        for entry in page.get("Contents", [])
    ]
    for bucket in s3.list_buckets()["Buckets"]
}))
"""


@dataclass(frozen=True)
class Stack:
    project: Path
    folder: Path
    ports: dict[str, int]
    service_port: int
    env: dict[str, str]  # the bake's environment: what `make` runs with

    def start_command(self) -> list[str]:
        args = " ".join(f"--{name}-port {port}" for name, port in self.ports.items())
        return ["make", "stack", f"ARGS={args}", f"PORT={self.service_port}"]

    def start(self) -> str:
        return run(self.start_command(), self.project, self.env).stdout

    def variables(self) -> dict[str, str]:
        """What stack.env exports, read the way `source` would."""
        found = {}
        for line in (self.folder / "stack.env").read_text(encoding="utf-8").splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                found[name] = shlex.split(value)[0]
        return found

    def client_env(self) -> dict[str, str]:
        return {**self.env, **self.variables()}

    def python(self, code: str, *args: str) -> str:
        """Run `code` with the project's Python, as a client of the stack; its output."""
        python = str(self.project / ".venv" / "bin" / "python")
        return run([python, "-c", code, *args], self.project, self.client_env()).stdout

    def objects(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = json.loads(self.python(LIST_BUCKETS))
        return found

    def kill(self, pid_file: str) -> None:
        """Stop one service's programs at once (SIGKILL to its process group), as a crash or
        an out-of-memory kill would, leaving the rest of the stack running. `pid_file` is
        relative to the stack's folder: `s3/moto.pid`, `mlflow/mlflow.pid`."""
        pid = int((self.folder / pid_file).read_text(encoding="utf-8").split()[0])
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)


@contextmanager
def stack_of(project: Path, bake_env: dict[str, str]) -> Iterator[Stack]:
    """A stack for `project` on free ports, not started yet; stopped and removed afterwards."""
    # Outside pytest's private temp folder: as root, PostgreSQL runs as the `postgres` user,
    # who must be able to reach its data folder.
    parent = Path(tempfile.mkdtemp(prefix="stack-"))
    parent.chmod(0o755)
    folder = parent / "stack"
    env = {**bake_env, "STACK_DIR": str(folder)}
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL_S3"):
        env.pop(name, None)
    ports = {name: free_port() for name in SERVICES}
    try:
        yield Stack(project, folder, ports, free_port(), env)
    finally:
        run(["make", "stack-stop"], project, env, check=False)
        shutil.rmtree(parent, ignore_errors=True)
