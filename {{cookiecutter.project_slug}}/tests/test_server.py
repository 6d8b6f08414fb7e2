"""`mlflow-server`: what it refuses before it starts anything (the server itself runs in CI)."""

import socket
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.errors import ProjectError
from {{ cookiecutter.package_name }}.server import admin_password, check_port_free, find_postgres


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
