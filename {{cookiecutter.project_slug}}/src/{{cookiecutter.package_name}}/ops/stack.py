"""`stack`: the services a team shares, on one machine, without containers (docs: team.md).

- `stack start`: an S3-compatible object store (moto) with a bucket for MLflow's artifacts, one
  for the service's inference log (INFERENCE_LOG_URL) and the DVC remote's bucket; PostgreSQL
  and the MLflow server (`mlflow-server`) with its artifacts in that bucket; an OCI registry
  (docker-registry); Prometheus scraping the model service with the alert rules loaded. All on
  127.0.0.1, each on a port of its own. Then it writes `stack.env`, every variable a client
  needs, and points DVC at the object store in `.dvc/config.local` (never `.dvc/config`, which
  git shares).
- `stack stop`: stops them; MLflow's database, the objects and the images stay in the folder.
- `stack status`: which of them run.

The folder is STACK_DIR, by default `.stack/` (git ignores it): for its owner only, as it holds
the credentials, the models and the data.
"""

import argparse
import json
import os
import secrets
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ProjectError
from . import mlflow_server, object_store, oci_registry, prometheus
from .processes import running, write_private

ARTIFACTS_BUCKET = "mlflow-artifacts"
# Where a service run against the stack ships its inference log (the drift stage and the
# monitor read it) and its feedback log (the monitor's labels).
INFERENCE_LOG_BUCKET = "inference-log"
INFERENCE_LOG_URL = f"s3://{INFERENCE_LOG_BUCKET}/inference"
FEEDBACK_LOG_URL = f"s3://{INFERENCE_LOG_BUCKET}/feedback"


@dataclass(frozen=True)
class Stack:
    root: Path
    store: object_store.ObjectStore
    mlflow: mlflow_server.Layout
    registry: oci_registry.Registry
    prometheus: prometheus.Prometheus

    @property
    def env_file(self) -> Path:
        return self.root / "stack.env"


def stack_dir() -> Path:
    return Path(os.environ.get("STACK_DIR") or ".stack").absolute()


def load_secrets(root: Path) -> dict[str, str]:
    """The S3 key pair and the MLflow admin's password: made on the first start, then kept.

    MLflow sets the admin's password on its first start only: MLFLOW_AUTH_ADMIN_PASSWORD when
    it is set then (checked against MLflow's rule), else a generated one.
    """
    path = root / "secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        return stored
    given = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD")
    made = {
        "s3_access_key": "STACK" + secrets.token_hex(8).upper(),
        "s3_secret_key": secrets.token_hex(20),
        "mlflow_admin": mlflow_server.admin_password() if given else secrets.token_hex(16),
    }
    write_private(path, json.dumps(made))
    return made


def layout(args: argparse.Namespace, stored: dict[str, str]) -> Stack:
    root = stack_dir()
    ports = vars(args)
    return Stack(
        root,
        object_store.ObjectStore(
            root / "s3", ports["s3_port"], stored["s3_access_key"], stored["s3_secret_key"]
        ),
        mlflow_server.server_dir(root / "mlflow"),
        oci_registry.Registry(root / "registry", ports["registry_port"]),
        prometheus.Prometheus(root / "prometheus", ports["prometheus_port"], ports["service"]),
    )


def dvc(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        lines = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
        raise ProjectError(f"dvc {' '.join(args[:2])} failed: {lines[-1]}")
    return result.stdout.strip()


def dvc_remote() -> tuple[str, str]:
    """The default DVC remote's name and URL."""
    name = dvc("remote", "default")
    return name, dvc("config", f"remote.{name}.url")


def dvc_bucket(url: str) -> str | None:
    """The bucket of an s3:// remote URL; None for any other kind of remote."""
    if not url.startswith("s3://"):
        return None
    return url.removeprefix("s3://").split("/", 1)[0]


def point_dvc(store: object_store.ObjectStore, remote: str) -> None:
    """The s3 remote's endpoint and keys, in .dvc/config.local only."""
    settings = {
        "endpointurl": store.url,
        "access_key_id": store.access_key,
        "secret_access_key": store.secret_key,
    }
    for option, value in settings.items():
        dvc("remote", "modify", "--local", remote, option, value)


def client_env(stack: Stack, mlflow_url: str, password: str) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_TRACKING_USERNAME": mlflow_server.admin_username(),
        "MLFLOW_TRACKING_PASSWORD": password,
        **stack.store.client_env(),
        "STACK_REGISTRY": stack.registry.address,
        "STACK_PROMETHEUS_URL": stack.prometheus.url,
        # Not INFERENCE_LOG_URL itself: a project without s3fs (a local, gcs or azure remote)
        # would refuse to serve in every shell that sources the file.
        "STACK_INFERENCE_LOG_URL": INFERENCE_LOG_URL,
        "STACK_FEEDBACK_LOG_URL": FEEDBACK_LOG_URL,
    }


def write_env_file(stack: Stack, variables: dict[str, str]) -> None:
    lines = [
        "# Written by `make stack`: what a client of the stack needs. Load it with",
        f"#   source {shlex.quote(str(shown(stack.env_file)))}",
        *(f"export {name}={shlex.quote(value)}" for name, value in variables.items()),
    ]
    write_private(stack.env_file, "\n".join(lines) + "\n")


def shown(path: Path) -> Path:
    """The path relative to the working folder when inside it: what a person types."""
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def start(args: argparse.Namespace) -> None:
    root = stack_dir()
    mlflow_server.make_passable_folder(root)
    stored = load_secrets(root)
    stack = layout(args, stored)
    remote, url = dvc_remote()
    # What `stop` and `status` need to find the services again: the ports they listen on.
    write_private(root / "ports.json", json.dumps(vars(args)))
    bucket = dvc_bucket(url)
    try:
        buckets = [ARTIFACTS_BUCKET, INFERENCE_LOG_BUCKET, *([bucket] if bucket else [])]
        object_store.start(stack.store, buckets)
        artifacts = f"s3://{ARTIFACTS_BUCKET}/mlflow"
        mlflow_url = mlflow_server.start(
            "127.0.0.1",
            args.mlflow_port,
            args.pg_port,
            args.workers,
            layout=stack.mlflow,
            artifacts=artifacts,
            password=stored["mlflow_admin"],
            extra_env=stack.store.client_env(),
            moved_by=("stack", "--mlflow-port"),
        )
        oci_registry.start(stack.registry)
        prometheus.start(stack.prometheus)
    except ProjectError:
        stop_all(stack)
        raise
    write_env_file(stack, client_env(stack, mlflow_url, stored["mlflow_admin"]))
    print(f"The stack runs on 127.0.0.1 (its data in {shown(root)}):")
    print(f"  MLflow        {mlflow_url}, PostgreSQL on 127.0.0.1:{args.pg_port}")
    print(f"                artifacts in {artifacts}")
    print(f"  object store  {stack.store.url} (S3 API)")
    print(f"                inference log: INFERENCE_LOG_URL={INFERENCE_LOG_URL}")
    print(f"                feedback log:  FEEDBACK_LOG_URL={FEEDBACK_LOG_URL}")
    print(f"  registry      {stack.registry.address} (OCI, plain HTTP)")
    print(f"  Prometheus    {stack.prometheus.url}, scraping {args.service}")
    if bucket:
        point_dvc(stack.store, remote)
        print(f"DVC: the remote {remote!r} ({url}) is the object store's, in .dvc/config.local")
    else:
        print(
            f"DVC: the remote {remote!r} is {url}, not s3://: DVC keeps using it (the object "
            "store speaks S3 only)"
        )
    print(f"Point a shell at it: source {shlex.quote(str(shown(stack.env_file)))}")
    print("`make stack-stop` stops it; the data stays.")


def stop_all(stack: Stack) -> list[str]:
    stopped = []
    if prometheus.stop(stack.prometheus):
        stopped.append("Prometheus")
    if oci_registry.stop(stack.registry):
        stopped.append("the registry")
    stopped += mlflow_server.stop(stack.mlflow)
    # Last: MLflow may still be writing an artifact.
    if object_store.stop(stack.store):
        stopped.append("the object store")
    return stopped


def status(stack: Stack) -> None:
    states = {
        "object store": object_store.is_running(stack.store),
        "MLflow": running(stack.mlflow.pid, mlflow_server.MARKER) is not None,
        "registry": oci_registry.is_running(stack.registry),
        "Prometheus": prometheus.is_running(stack.prometheus),
    }
    for name, up in states.items():
        print(f"  {name:<13} {'running' if up else 'stopped'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    starting = commands.add_parser("start", help="start the stack (or say what already runs)")
    starting.add_argument("--mlflow-port", type=int, default=5000)
    starting.add_argument("--pg-port", type=int, default=5432)
    starting.add_argument("--workers", type=int, default=2)
    starting.add_argument("--s3-port", type=int, default=9000)
    starting.add_argument("--registry-port", type=int, default=5050)
    starting.add_argument("--prometheus-port", type=int, default=9090)
    starting.add_argument(
        "--service", default="127.0.0.1:3000", help="host:port Prometheus scrapes (make serve)"
    )
    commands.add_parser("stop", help="stop every service; the data stays")
    commands.add_parser("status", help="which services run")
    args = parser.parse_args(argv)
    if args.command == "start":
        start(args)
        return 0
    root = stack_dir()
    if not (root / "ports.json").exists():
        print(f"No stack in {shown(root)}: nothing was running")
        return 0
    started = json.loads((root / "ports.json").read_text(encoding="utf-8"))
    stack = layout(argparse.Namespace(**started), load_secrets(root))
    if args.command == "status":
        status(stack)
        return 0
    stopped = stop_all(stack)
    print(f"Stopped {', '.join(stopped)}" if stopped else "Nothing was running")
    return 0
