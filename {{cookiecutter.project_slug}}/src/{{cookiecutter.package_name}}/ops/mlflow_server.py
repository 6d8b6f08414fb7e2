"""`mlflow-server`: a shared MLflow server on PostgreSQL with basic auth, without containers.

- `mlflow-server start`: the first time, a PostgreSQL cluster in MLFLOW_SERVER_DIR (default
  `.mlflow-server/`) with two databases, `mlflow` (runs and registry) and `mlflow_auth` (users);
  then PostgreSQL on 127.0.0.1 and `mlflow server` in the background, with the flags of
  `deploy/compose.yaml`. It returns once the server answers.
- `mlflow-server stop`: stops both; the data stays.

The admin's password comes from MLFLOW_AUTH_ADMIN_PASSWORD (MLflow's own variable). The database
password and the server's secret key are generated once and kept in the folder. Only its owner
may enter the folder (0700, whatever the umask), and its files are 0600: it holds the models,
their input examples and the log. A host other than loopback is refused unless --allow-remote
says a TLS proxy is in front, because basic auth sends the password with every request.
"""

import argparse
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from ..core.errors import ProjectError
from .processes import check_port_free, last_line, running, spawn, write_private
from .processes import stop as stop_process

# Where PostgreSQL's server programs live when they are not on PATH (Debian and Ubuntu, RHEL).
SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin")
DATABASE_USER = "mlflow"
DATABASES = ("mlflow", "mlflow_auth")
# PostgreSQL refuses to run as root; root runs it as this user instead.
POSTGRES_OS_USER = "postgres"
MARKER = b"mlflow"  # in the server's command line: the pid file names the server, nothing else
MIN_PASSWORD = 12  # MLflow's rule for basic-auth passwords
REMOTE_HOST = (
    "basic auth sends the password with every request, in cleartext over plain HTTP: put a TLS "
    "proxy (https) in front of the server"
)


@dataclass(frozen=True)
class Layout:
    """What the server keeps in its folder."""

    root: Path
    data: Path  # PostgreSQL's cluster
    artifacts: Path
    auth_config: Path
    secrets: Path  # the database password and the Flask secret key
    log: Path
    pid: Path


def server_dir(root: Path | None = None) -> Layout:
    """The server's folder: `root`, else MLFLOW_SERVER_DIR, else .mlflow-server/."""
    root = (root or Path(os.environ.get("MLFLOW_SERVER_DIR") or ".mlflow-server")).absolute()
    names = ("postgres", "artifacts", "auth.ini", "secrets.json", "mlflow.log", "mlflow.pid")
    return Layout(root, *(root / name for name in names))


def find_postgres(search: Sequence[str] = SEARCH) -> Path:
    """The folder holding initdb and pg_ctl: PATH first, then the newest of `search`."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    found = [
        folder
        for pattern in search
        for folder in Path("/").glob(pattern.lstrip("/"))
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file()
    ]
    if not found:
        raise ProjectError(
            "no PostgreSQL server programs (initdb, pg_ctl) on PATH or in "
            f"{', '.join(search)}: install PostgreSQL (apt-get install postgresql, "
            "brew install postgresql) or run deploy/compose.yaml with Docker"
        )
    return max(found, key=lambda folder: _version_key(folder.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    digits = "".join(char if char.isdigit() else " " for char in name).split()
    return tuple(int(part) for part in digits)


def admin_password() -> str:
    """MLFLOW_AUTH_ADMIN_PASSWORD, checked against MLflow's rule before anything starts."""
    password = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")
    if not password:
        raise ProjectError(
            "MLFLOW_AUTH_ADMIN_PASSWORD is not set: export the password of the server's admin "
            f"user ({MIN_PASSWORD} characters or more) and start again"
        )
    if len(password) < MIN_PASSWORD:
        raise ProjectError(
            f"MLFLOW_AUTH_ADMIN_PASSWORD is {len(password)} characters long; MLflow wants "
            f"{MIN_PASSWORD} or more"
        )
    return password


def is_loopback(host: str) -> bool:
    """Whether every address the host name stands for is this machine's loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in found)


def check_host(host: str, allow_remote: bool) -> str | None:
    """Refuse a host other machines reach unless allowed; then return the warning to print."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise ProjectError(
            f"--host {host} lets other machines reach the server, and {REMOTE_HOST}; "
            "then pass --allow-remote too"
        )
    return f"the server listens on {host}: {REMOTE_HOST}"


def mlflow_command(
    host: str, port: int, workers: int, allowed_hosts: str, artifacts: str | None = None
) -> list[str]:
    """`mlflow server` and the flags deploy/compose.yaml gives it too.

    The backend store URI, which holds the database password, goes in MLFLOW_BACKEND_STORE_URI
    rather than on the command line, where any user of the machine could read it. Artifacts go
    to the server's folder unless `artifacts` names another destination (an s3:// bucket).
    """
    return [
        *("mlflow", "server", "--app-name", "basic-auth"),
        *("--host", host, "--port", str(port), "--workers", str(workers)),
        *("--serve-artifacts", "--artifacts-destination", artifacts or str(server_dir().artifacts)),
        *("--allowed-hosts", allowed_hosts),
    ]


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", POSTGRES_OS_USER, "--", *command] if os.geteuid() == 0 else command


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        raise ProjectError(
            f"PostgreSQL does not run as root, and there is no {POSTGRES_OS_USER!r} user to run "
            "it as: start the server as a regular user"
        ) from None


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() != 0:
        return
    user = _postgres_user()
    os.chown(path, user.pw_uid, user.pw_gid)


def make_passable_folder(folder: Path) -> None:
    """A folder for its owner only (0700); under root, PostgreSQL's group may pass (0710)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    if os.geteuid() == 0:
        os.chown(folder, -1, _postgres_user().pw_gid)
        folder.chmod(0o710)


def make_private_folders(layout: Layout) -> None:
    """The server's folder and its artifacts, for their owner only, whatever the umask.

    Started by root, PostgreSQL runs as its own user, whose group may pass through the
    folder (0710) to reach its cluster, and do nothing else there.
    """
    make_passable_folder(layout.root)
    layout.artifacts.mkdir(mode=0o700, exist_ok=True)
    layout.artifacts.chmod(0o700)


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
        program = command[command.index("--") + 1] if command[0] == "runuser" else command[0]
        raise ProjectError(f"{Path(program).name} failed: {output[-1]}")


def _load_secrets(layout: Layout) -> dict[str, str]:
    if layout.secrets.exists():
        stored: dict[str, str] = json.loads(layout.secrets.read_text(encoding="utf-8"))
        return stored
    generated = {"database": secrets.token_hex(24), "flask": secrets.token_hex(32)}
    write_private(layout.secrets, json.dumps(generated))
    return generated


def _postgres_running(bin_dir: Path, layout: Layout) -> bool:
    if not (layout.data / "postmaster.pid").exists():
        return False
    status = subprocess.run(
        _as_postgres([str(bin_dir / "pg_ctl"), "status", "-D", str(layout.data)]),
        capture_output=True,
        check=False,
    )
    return status.returncode == 0


def _start_postgres(bin_dir: Path, layout: Layout, port: int) -> None:
    _run(
        _as_postgres(
            [
                *(str(bin_dir / "pg_ctl"), "start", "-D", str(layout.data), "-w", "-t", "60"),
                *("-l", str(layout.data / "postgres.log"), "-o", f"-p {port}"),
            ]
        )
    )


def _init_postgres(bin_dir: Path, layout: Layout, port: int, password: str) -> None:
    """A new cluster that listens on 127.0.0.1 only, with the two databases MLflow uses."""
    layout.data.mkdir(mode=0o700)
    _give_to_postgres(layout.data)
    password_file = layout.root / "initdb-password"
    write_private(password_file, password)
    _give_to_postgres(password_file)
    try:
        _run(
            _as_postgres(
                [
                    *(str(bin_dir / "initdb"), "-D", str(layout.data), "-U", DATABASE_USER),
                    *(f"--pwfile={password_file}", "--auth=scram-sha-256", "-E", "UTF8"),
                    "--no-locale",
                ]
            )
        )
        with (layout.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# Only the MLflow server beside it connects, over TCP.\n")
            conf.write("listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
        _start_postgres(bin_dir, layout, port)
        env = {**os.environ, "PGPASSWORD": password}
        for database in DATABASES:
            createdb = [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port)]
            _run([*createdb, "-U", DATABASE_USER, database], env=env)
    except ProjectError:
        # A new cluster holds nothing yet: remove it, so that the next start begins afresh.
        subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "stop", "-D", str(layout.data), "-m", "fast"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(layout.data, ignore_errors=True)
        raise
    finally:
        password_file.unlink(missing_ok=True)


def _write_auth_config(layout: Layout, database_uri: str) -> None:
    username = admin_username()
    write_private(
        layout.auth_config,
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
    )


def _healthy(url: str) -> bool:
    """Whether the server answers its health check now; refused or failing means not (yet)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wait_until_healthy(url: str, server: subprocess.Popen[bytes], layout: Layout) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _healthy(url):
            return
        if server.poll() is not None:
            raise ProjectError(f"mlflow server stopped: {last_line(layout.log)}")
        time.sleep(0.5)
    raise ProjectError(f"mlflow server did not answer at {url} within 120 s; see {layout.log}")


def _admin_can_log_in(url: str, username: str, password: str) -> bool:
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/users/get?username={username}",
        headers={"Authorization": "Basic " + b64encode(f"{username}:{password}".encode()).decode()},
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except urllib.error.HTTPError:
        return False


def start(
    host: str,
    port: int,
    pg_port: int,
    workers: int,
    allow_remote: bool = False,
    *,
    layout: Layout | None = None,
    artifacts: str | None = None,
    password: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    moved_by: tuple[str, str] = ("mlflow-server", "--port"),
) -> str:
    """Start PostgreSQL and the server (or find them running); the server's URL.

    `make stack` passes its own folder, an s3:// artifact destination with the object store's
    variables in `extra_env`, the admin password it keeps, and its target and option that move
    the server's port (`moved_by`), for the message when the port is taken.
    """
    remote_warning = check_host(host, allow_remote)
    password = password or admin_password()
    for package in ("psycopg", "flask_wtf"):
        if find_spec(package) is None:
            raise ProjectError(
                f"{package} is not installed: the server needs the `server` dependency group "
                "(`make mlflow-server` installs it)"
            )
    bin_dir = find_postgres()
    layout = layout or server_dir()
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"  # noqa: S104
    if running(layout.pid, MARKER) is not None:
        print(f"The MLflow server is already running at {url}")
        return url
    target, port_option = moved_by
    check_port_free(host, port, "the MLflow server", port_option, target)
    make_private_folders(layout)
    stored = _load_secrets(layout)
    if not (layout.data / "PG_VERSION").exists():
        check_port_free("127.0.0.1", pg_port, "PostgreSQL", "--pg-port", target)
        _init_postgres(bin_dir, layout, pg_port, stored["database"])
    elif not _postgres_running(bin_dir, layout):
        check_port_free("127.0.0.1", pg_port, "PostgreSQL", "--pg-port", target)
        _start_postgres(bin_dir, layout, pg_port)

    database = f"postgresql://{DATABASE_USER}:{stored['database']}@127.0.0.1:{pg_port}"
    _write_auth_config(layout, f"{database}/mlflow_auth")
    allowed = os.environ.get("MLFLOW_SERVER_ALLOWED_HOSTS") or f"localhost:{port},127.0.0.1:{port}"
    env = {
        **os.environ,
        **(extra_env or {}),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_BACKEND_STORE_URI": f"{database}/mlflow",
        "MLFLOW_AUTH_CONFIG_PATH": str(layout.auth_config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": stored["flask"],
        # No background job runners: they cost 2 GB and nothing here uses them.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = mlflow_command(host, port, workers, allowed, artifacts)
    if remote_warning:
        print(f"WARNING: {remote_warning}", file=sys.stderr)
    server = spawn([sys.executable, "-m", *command], layout.log, layout.pid, env)
    try:
        _wait_until_healthy(url, server, layout)
    except ProjectError:
        stop(layout)
        raise
    username = admin_username()
    if not _admin_can_log_in(url, username, password):
        print(
            f"WARNING: {username} cannot log in with MLFLOW_AUTH_ADMIN_PASSWORD: MLflow sets the "
            "admin's password only on the first start; use the password set then",
            file=sys.stderr,
        )
    return url


def admin_username() -> str:
    return os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin"


def stop(layout: Layout | None = None) -> list[str]:
    """Stop the server and PostgreSQL; what was running."""
    layout = layout or server_dir()
    stopped = []
    if running(layout.pid, MARKER) is None and layout.pid.exists():
        print(
            f"{layout.pid} names no server that `mlflow-server start` began (it ended, and its "
            "pid may be another process's now): removed it, killed nothing"
        )
    if stop_process(layout.pid, MARKER):
        stopped.append("the MLflow server")
    if (layout.data / "postmaster.pid").exists():
        bin_dir = find_postgres()
        _run(_as_postgres([str(bin_dir / "pg_ctl"), "stop", "-D", str(layout.data), "-m", "fast"]))
        stopped.append("PostgreSQL")
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlflow-server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    starting = commands.add_parser("start", help="start PostgreSQL and the MLflow server")
    starting.add_argument(
        "--host", default="127.0.0.1", help="0.0.0.0 to share it on a network (--allow-remote)"
    )
    starting.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a host other machines reach: put a TLS proxy in front, or passwords travel "
        "in cleartext",
    )
    starting.add_argument("--port", type=int, default=5000)
    starting.add_argument("--pg-port", type=int, default=5432)
    starting.add_argument("--workers", type=int, default=2)
    commands.add_parser("stop", help="stop both; the data stays")
    args = parser.parse_args(argv)
    if args.command == "stop":
        stopped = stop()
        print(f"Stopped {' and '.join(stopped)}" if stopped else "Nothing was running")
        return 0
    url = start(args.host, args.port, args.pg_port, args.workers, args.allow_remote)
    layout = server_dir()
    print(f"MLflow server at {url} (PostgreSQL on 127.0.0.1:{args.pg_port}, data in {layout.root})")
    print("Point this project at it:")
    print(f"  export MLFLOW_TRACKING_URI={url} MLFLOW_TRACKING_USERNAME={admin_username()}")
    print("  export MLFLOW_TRACKING_PASSWORD=<the admin password>")
    print("`make mlflow-server-stop` stops it.")
    return 0
