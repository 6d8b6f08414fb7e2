"""`mlflow-server`: what it refuses before it starts anything, its files' modes, and what stop kills
(the server itself runs in the template's slow tier)."""

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.core.errors import ProjectError
from {{ cookiecutter.package_name }}.ops.mlflow_server import (
    admin_password,
    check_host,
    find_postgres,
    make_private_folders,
    server_dir,
)
from {{ cookiecutter.package_name }}.ops.processes import check_port_free, open_private, process_start_time


def server_programs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("initdb", "pg_ctl"):
        (folder / name).write_text("", encoding="utf-8")
    return folder


def test_no_postgresql_is_one_line_that_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ProjectError, match="no PostgreSQL server programs") as error:
        find_postgres(search=(f"{tmp_path}/lib/postgresql/*/bin",))
    assert "apt-get install postgresql" in str(error.value)


def test_the_newest_postgresql_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for version in ("9.6", "13", "15"):
        server_programs(tmp_path / "lib" / "postgresql" / version / "bin")
    (tmp_path / "lib" / "postgresql" / "17" / "bin").mkdir(parents=True)  # no programs in it
    found = find_postgres(search=(f"{tmp_path}/lib/postgresql/*/bin",))
    assert found == tmp_path / "lib" / "postgresql" / "15" / "bin"


def test_the_admin_password_must_be_set_and_long_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    with pytest.raises(ProjectError, match="MLFLOW_AUTH_ADMIN_PASSWORD is not set"):
        admin_password()
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "short")
    with pytest.raises(ProjectError, match="12 or more"):
        admin_password()
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "twelve chars")
    assert admin_password() == "twelve chars"


def test_a_taken_port_names_the_port_and_the_option() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ProjectError, match=f"port {port} on 127.0.0.1 is taken") as error:
            check_port_free("127.0.0.1", port, "PostgreSQL", "--pg-port")
    assert "--pg-port" in str(error.value)


def test_start_without_a_password_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_SERVER_DIR", str(tmp_path / "server"))
    assert main(["mlflow-server", "start"]) == 1
    assert capsys.readouterr().err.startswith("ERROR: MLFLOW_AUTH_ADMIN_PASSWORD is not set")
    assert not (tmp_path / "server").exists()


def test_stop_with_nothing_running_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_SERVER_DIR", str(tmp_path / "server"))
    assert main(["mlflow-server", "stop"]) == 0
    assert capsys.readouterr().out.strip() == "Nothing was running"


def test_a_network_host_is_refused_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "long enough password")
    monkeypatch.setenv("MLFLOW_SERVER_DIR", str(tmp_path / "server"))
    assert main(["mlflow-server", "start", "--host", "0.0.0.0"]) == 1  # noqa: S104
    assert capsys.readouterr().err.splitlines() == [
        "ERROR: --host 0.0.0.0 lets other machines reach the server, and basic auth sends the "
        "password with every request, in cleartext over plain HTTP: put a TLS proxy (https) in "
        "front of the server; then pass --allow-remote too"
    ]
    assert not (tmp_path / "server").exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_need_no_permission(host: str) -> None:
    assert check_host(host, allow_remote=False) is None


def test_an_allowed_network_host_still_warns() -> None:
    warning = check_host("0.0.0.0", allow_remote=True)  # noqa: S104
    assert warning is not None
    assert "in cleartext" in warning
    assert "TLS proxy" in warning


@pytest.fixture
def any_umask() -> Iterator[None]:
    """The most permissive umask: modes must not depend on the one a person happens to have."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("any_umask")
def test_the_server_folder_and_its_files_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_SERVER_DIR", str(tmp_path / "server"))
    layout = server_dir()
    # An older version made these with the umask's modes.
    layout.root.mkdir(mode=0o755)
    layout.artifacts.mkdir(mode=0o755)
    layout.log.write_text("an older line\n", encoding="utf-8")
    layout.log.chmod(0o644)

    make_private_folders(layout)
    with open_private(layout.log, append=True) as log:
        log.write(b"a new line\n")
    with open_private(layout.pid) as pid:
        pid.write(b"1 1\n")

    root_mode = 0o710 if os.geteuid() == 0 else 0o700  # root: PostgreSQL's user passes through
    assert stat.S_IMODE(layout.root.stat().st_mode) == root_mode
    assert stat.S_IMODE(layout.artifacts.stat().st_mode) == 0o700
    assert stat.S_IMODE(layout.log.stat().st_mode) == 0o600
    assert stat.S_IMODE(layout.pid.stat().st_mode) == 0o600
    assert layout.log.read_text(encoding="utf-8") == "an older line\na new line\n"


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is no server of ours, though its command line says `mlflow`."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "mlflow"],
        start_new_session=True,  # a process group of its own, as the server has
    )
    try:
        # Until Python runs, the child's command line is still its parent's.
        deadline = time.monotonic() + 30
        while b"mlflow" not in Path(f"/proc/{process.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the process did not start"
            time.sleep(0.05)
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("recorded", ["pid only", "another start time"])
def test_stop_kills_nothing_when_the_pid_is_now_another_process(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    bystander: subprocess.Popen[bytes],
    recorded: str,
) -> None:
    monkeypatch.setenv("MLFLOW_SERVER_DIR", str(tmp_path / "server"))
    layout = server_dir()
    layout.root.mkdir()
    started = process_start_time(bystander.pid)
    assert started is not None
    # A stale file: the server it names ended, and the kernel gave its pid to this process.
    text = str(bystander.pid) if recorded == "pid only" else f"{bystander.pid} {started - 1}"
    layout.pid.write_text(text, encoding="utf-8")

    assert main(["mlflow-server", "stop"]) == 0

    assert "killed nothing" in capsys.readouterr().out
    time.sleep(0.5)
    assert bystander.poll() is None
    assert not layout.pid.exists()


def test_stop_kills_the_process_it_recorded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    bystander: subprocess.Popen[bytes],
) -> None:
    monkeypatch.setenv("MLFLOW_SERVER_DIR", str(tmp_path / "server"))
    layout = server_dir()
    layout.root.mkdir()
    layout.pid.write_text(f"{bystander.pid} {process_start_time(bystander.pid)}\n")

    assert main(["mlflow-server", "stop"]) == 0

    assert capsys.readouterr().out.strip() == "Stopped the MLflow server"
    assert bystander.wait(timeout=10) == -signal.SIGTERM
