"""The stack's OCI registry: Debian's `docker-registry` (CNCF distribution), plain HTTP on
127.0.0.1, images kept as files in the stack's folder, so they survive a stop."""

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..core.errors import ProjectError
from .processes import Daemon, start_daemon, write_private

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

    @property
    def daemon(self) -> Daemon:
        return Daemon("the registry", "--registry-port", self.port, self.pid, MARKER)


def is_running(registry: Registry) -> bool:
    return registry.daemon.is_running()


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
    config = registry.folder / "config.yml"

    def configured() -> list[str]:
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
        return [program, "serve", str(config)]

    start_daemon(registry.daemon, configured, f"http://{registry.address}/v2/")


def stop(registry: Registry) -> bool:
    return registry.daemon.stop()
