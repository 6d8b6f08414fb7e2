"""The stack's Prometheus: Debian's `prometheus`, on 127.0.0.1, scraping the model service with
the project's alert rules (deploy/monitoring/alerts.yaml) loaded; its data in the stack's folder.

The scrape job is named after the project, the label the rules and the dashboard select by.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..core.errors import ProjectError
from .processes import Daemon, start_daemon, write_private

MARKER = b"prometheus"
JOB = "{{ cookiecutter.project_slug }}"  # the `job` label of deploy/monitoring/alerts.yaml
RULES = Path("deploy/monitoring/alerts.yaml")
# Short intervals, so a trial on a laptop (or a test) sees data and alerts within seconds.
INTERVAL = "5s"


@dataclass(frozen=True)
class Prometheus:
    folder: Path
    port: int
    service: str  # host:port of the model service (`make serve`)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> Path:
        return self.folder / "prometheus.pid"

    @property
    def daemon(self) -> Daemon:
        return Daemon("Prometheus", "--prometheus-port", self.port, self.pid, MARKER)


def is_running(prometheus: Prometheus) -> bool:
    return prometheus.daemon.is_running()


def start(prometheus: Prometheus) -> None:
    program = shutil.which("prometheus")
    if program is None:
        raise ProjectError(
            "prometheus is not installed: the stack's monitoring is Debian's prometheus "
            "package (sudo apt-get install prometheus)"
        )
    if not RULES.is_file():
        raise ProjectError(f"no {RULES}: run the stack from the project's folder")
    if is_running(prometheus):
        print(f"Prometheus is already running at {prometheus.url}")
        return
    config = prometheus.folder / "prometheus.yml"

    def configured() -> list[str]:
        settings = {
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "rule_files": [str(RULES.absolute())],
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": [prometheus.service]}]},
            ],
        }
        write_private(config, yaml.safe_dump(settings, sort_keys=False))
        return [
            program,
            f"--config.file={config}",
            f"--storage.tsdb.path={prometheus.folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus.port}",
        ]

    start_daemon(prometheus.daemon, configured, f"{prometheus.url}/-/ready")


def stop(prometheus: Prometheus) -> bool:
    return prometheus.daemon.stop()
