"""The stack's OCI registry: Debian's `docker-registry` (CNCF distribution), plain HTTP on
127.0.0.1, images kept as files in the stack's folder, so they survive a stop."""

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..core.errors import ProjectError
from .mlflow_server import check_port_free
from .processes import running, spawn, wait_until_answers, write_private
from .processes import stop as stop_process

MARKER = b"docker-registry"


@dataclass(frozen=True)
class Registry:
    folder: Path
    port: int

    @property
    def address(self) -> str:
        """What image names start with: `127.0.0.1:<port>/<name>:<tag>`."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> Path:
        return self.folder / "registry.pid"


def is_running(registry: Registry) -> bool:
    return running(registry.pid, MARKER) is not None


def start(registry: Registry) -> None:
    program = shutil.which("docker-registry")
    if program is None:
        raise ProjectError(
            "docker-registry is not installed: the stack's image registry is Debian's "
            "docker-registry package (sudo apt-get install docker-registry)"
        )
    if is_running(registry):
        print(f"The registry is already running at {registry.address}")
        return
    check_port_free("127.0.0.1", registry.port, "the registry", "--registry-port", "stack")
    registry.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = registry.folder / "config.yml"
    settings = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(registry.folder / "data")},
            "delete": {"enabled": True},  # a rollback may remove a tag
        },
        # The secret signs upload sessions; a new one each start is fine for one instance.
        "http": {"addr": registry.address, "secret": secrets.token_hex(16)},
    }
    write_private(config, yaml.safe_dump(settings, sort_keys=False))
    process = spawn([program, "serve", str(config)], registry.pid.with_suffix(".log"), registry.pid)
    url = f"http://{registry.address}/v2/"
    wait_until_answers(url, process, registry.pid, MARKER, "the registry")


def stop(registry: Registry) -> bool:
    return stop_process(registry.pid, MARKER)
