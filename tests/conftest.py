"""Baking helpers shared by the fast and slow tiers."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.main import cookiecutter

from . import timings
from .timings import pytest_runtest_protocol  # noqa: F401 (the hook: off unless TEST_TIMINGS is set)

ROOT = Path(__file__).resolve().parents[1]
CHOICES: dict[str, list[str]] = {
    key: value
    for key, value in json.loads((ROOT / "cookiecutter.json").read_text(encoding="utf-8")).items()
    if isinstance(value, list) and not key.startswith("_")  # `_copy_without_render` is no option
}
# Answers for every bake: one entry per combination we test, every option value at least once.
MATRIX: dict[str, dict[str, str]] = {
    "default": {},
    "regression-s3-py312-apache": {
        "task": "regression",
        "dvc_remote": "s3",
        "python_version": "3.12",
        "license": "Apache-2.0",
    },
    "classification-gcs-py313-bsd": {
        "task": "classification",
        "dvc_remote": "gcs",
        "python_version": "3.13",
        "license": "BSD-3-Clause",
    },
    "regression-azure-server-proprietary": {
        "project_name": "Churn Forecast",
        "task": "regression",
        "dvc_remote": "azure",
        "license": "Proprietary",
        "mlflow_tracking_uri": "http://127.0.0.1:5999",
    },
}
# The container tools of the image tests, each from Debian's package of the same name (`make
# system-tools` installs them as root), and their own container storage, kept between runs.
COMMANDS = ["buildah", "podman", "runc", "skopeo", "mmdebstrap", "docker-registry"]
STORE = ROOT / "build" / "image-test"
# No usage reports and no cloud metadata look-ups from anything a test starts.
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "True",
    "UV_PYTHON_DOWNLOADS": "never",
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}


# The slow tests that take longest (minutes each in `make test`'s --durations), longest first.
LONGEST_FIRST = (
    "tests/test_cycle_slow.py::",
    "tests/test_pipeline_slow.py::test_pipeline_lifecycle",
    "tests/test_spark_slow.py::",
    "tests/test_pipeline_slow.py::test_tracking_server_option",
    "tests/test_rehearsal.py::",
    "tests/test_cloud_remotes_slow.py::",
    "tests/test_image_slow.py::",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, the longest of them first. `make test` runs them on every core with
    `--dist worksteal`: the first worker's queue starts with the minutes-long tests, the others
    steal from its end, and the second-long fast tests fill in at the end instead of one worker
    finishing a long test alone, started last."""

    def order(item: pytest.Item) -> tuple[bool, int]:
        rank = next(
            (index for index, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)),
            len(LONGEST_FIRST),
        )
        return item.get_closest_marker("slow") is None, rank

    items.sort(key=order)


def python_dirs() -> list[str]:
    """Folders holding python3.X interpreters that a pyenv shim would hide from uv."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    return sorted(str(path.parent) for path in pyenv.glob("3.1[1-9]*/bin/python3"))


def has_python(version: str) -> bool:
    found = shutil.which(f"python{version}", path=os.pathsep.join(python_dirs()))
    return found is not None or shutil.which(f"python{version}") is not None


@pytest.fixture(scope="session")
def bake_env() -> dict[str, str]:
    """The environment baked projects run in: this one, quiet, with every local Python."""
    env = {**os.environ, **QUIET_ENV}
    env.pop("VIRTUAL_ENV", None)
    # Baked projects write .pyc files, as on a laptop or a GitHub runner: without them every
    # process compiles MLflow, scikit-learn and DVC again (seconds each).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PATH"] = os.pathsep.join([env["PATH"], *python_dirs()])
    # A project's own `make test` starts a pytest worker per core; the slow tier keeps every core
    # busy already, so each project's suite runs on one (still through pytest-xdist).
    env["PYTEST_XDIST_AUTO_NUM_WORKERS"] = "1"
    # uv keeps PyPI's files once fetched (tests/uv-config/uv/uv.toml says why).
    env["XDG_CONFIG_DIRS"] = str(ROOT / "tests" / "uv-config")
    return env


def run(
    command: list[str], cwd: Path, env: dict[str, str], *, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure show its output, which is what one needs to debug a bake."""
    with timings.command(timings.label(command)):
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode} in {cwd}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
    return result


def make(project: Path, env: dict[str, str], *targets: str) -> str:
    return run(["make", *targets], project, env).stdout


def require_java(env: dict[str, str]) -> None:
    """Fail, not skip, without the Java Spark 4 runs on: `make test` installs it (system-tools)."""
    assert shutil.which("java", path=env.get("PATH")) or "JAVA_HOME" in env, (
        "no Java: Spark 4 needs Java 17 or 21; run the tests through `make test`, whose "
        "system-tools step installs it"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(url: str) -> bool:
    """Whether `url` answers 200 right now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for_http(
    url: str, process: subprocess.Popen[bytes], seconds: float = 90, log: Path | None = None
) -> None:
    """Poll `url` until it answers 200; fail early, with the log's end, if the process dies."""
    deadline = time.monotonic() + seconds
    while not answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            output = log.read_text(encoding="utf-8", errors="replace")[-4000:] if log else ""
            pytest.fail(f"nothing answered at {url}\n{output}")
        time.sleep(0.5)


Bake = Callable[..., Path]


@pytest.fixture(scope="session")
def cookiecutter_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cookiecutter config, so no replay files land in the home folder."""
    home = tmp_path_factory.mktemp("cookiecutter")
    config = home / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {home / 'templates'}\nreplay_dir: {home / 'replay'}\n",
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="session")
def lock_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of uv.lock files by the dependencies they lock, shared by every xdist worker."""
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the session's folder, above each worker's own
    store = root / "uv-locks"
    store.mkdir(exist_ok=True)
    return store


def share_lock(project: Path, store: Path, env: dict[str, str]) -> None:
    """Give `project` the uv.lock of the session's first bake with the same dependencies,
    locking them (online) if this is that bake.

    `make setup` locks a project that has no uv.lock, and `uv lock` asks the index about every
    package each time: 10 to 20 s here, where the registry mirror sends no cache headers, so uv
    can keep no answer. With the lock already there, setup installs from it, as it does in a
    clone of a committed project; the first bake of each set of dependencies still locks.
    """
    inputs = [project / "pyproject.toml", project / ".python-version"]
    key = hashlib.sha256(b"\0".join(path.read_bytes() for path in inputs)).hexdigest()[:16]
    stored = store / f"{key}.lock"
    with (store / f"{key}.in-use").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one worker locks, the other waits for its result
        if not stored.exists():
            run(["uv", "lock"], project, env)
            shutil.copyfile(project / "uv.lock", stored)
    shutil.copyfile(stored, project / "uv.lock")


def render(answers: dict[str, Any], output: Path, cookiecutter_config: Path) -> Path:
    """Bake `answers` into the folder `output` without a question; return the project."""
    return Path(
        cookiecutter(
            str(ROOT),
            no_input=True,
            extra_context=answers,
            output_dir=str(output),
            config_file=str(cookiecutter_config),
        )
    )


@pytest.fixture
def bake(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    cookiecutter_config: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Bake:
    """bake(**answers) -> the generated project's folder. In the slow tier, with the uv.lock
    of its dependencies (`share_lock`)."""
    slow = request.node.get_closest_marker("slow") is not None
    baked: list[Path] = []

    def _bake(**answers: Any) -> Path:
        # Each bake in a folder of its own, so that a test can bake several projects.
        output = tmp_path / ("out" if not baked else f"out-{len(baked)}")
        for name, value in QUIET_ENV.items():
            monkeypatch.setenv(name, value)
        project = render(answers, output, cookiecutter_config)
        if slow:
            env = request.getfixturevalue("bake_env")
            share_lock(project, request.getfixturevalue("lock_store"), env)
        baked.append(project)
        return project

    return _bake


@pytest.fixture
def mlflow_server(tmp_path: Path, bake_env: dict[str, str]) -> Iterator[str]:
    """A real MLflow tracking server on 127.0.0.1, with its own SQLite store and artifacts."""
    port = free_port()
    env = {**bake_env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        *("mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"),
        *("--artifacts-destination", str(tmp_path / "server-artifacts")),
    ]
    server = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{uri}/health", server)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def engine_env(bake_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The environment for buildah, podman and `make container`: the tests' own container
    storage, emptied of everything but base images before and after, and held by one test at a
    time (another test's reset would remove this one's images)."""
    if os.geteuid() != 0:
        pytest.skip(
            f"needs root (uid {os.geteuid()} here): rootful podman and buildah, mmdebstrap's root "
            "mode and volumes owned by the Deployment's fsGroup; rootless is not set up"
        )
    missing = [command for command in COMMANDS if shutil.which(command) is None]
    assert not missing, f"run `make system-tools` as root: it installs Debian's {missing}"
    STORE.mkdir(parents=True, exist_ok=True)
    conf = STORE / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{STORE / "storage"}"\n'
        f'runroot = "{STORE / "run"}"\n',
        encoding="utf-8",
    )
    # chroot isolation: buildah's RUN steps need no OCI runtime, hence no cgroup setup.
    env = {**bake_env, "CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "chroot"}
    with (STORE / "in-use.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        reset_storage(env)
        yield env
        reset_storage(env)


def reset_storage(env: dict[str, str]) -> None:
    """Remove the containers and images earlier runs left; keep the base images (the cache)."""
    run(["podman", "rm", "--all", "--force"], STORE, env)
    run(["buildah", "rm", "--all"], STORE, env)
    # By ID: an image pulled by digest has no tag to name it by.
    images = run(["podman", "images", "--format", "{{.ID}} {{.Repository}}"], STORE, env)
    listed = [line.split() for line in images.stdout.splitlines()]
    others = sorted({image for image, name in listed if not name.startswith("docker.io/library/")})
    if others:
        run(["podman", "rmi", "--force", *others], STORE, env)
    run(["podman", "image", "prune", "--force"], STORE, env)
