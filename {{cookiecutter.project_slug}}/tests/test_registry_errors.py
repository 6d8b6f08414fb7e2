"""A registry that fails after MLflow's retries is one line naming what failed and what to do,
not urllib3's repr of the last exception."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow.artifacts
import pytest

from {{ cookiecutter.package_name }}.core.config import load_params
from {{ cookiecutter.package_name }}.core.errors import RegistryError
from {{ cookiecutter.package_name }}.release.registry import champion_candidate, registry_errors


class Failing(BaseHTTPRequestHandler):
    """A tracking server that answers HTTP 500 to every request, or drops the connection of
    those for model files: what MLflow's server does when its artifact store (the bucket behind
    --artifacts-destination) goes down, depending on when."""

    drop_artifacts = False

    def answer(self) -> None:
        if self.drop_artifacts and "/mlflow-artifacts/" in self.path:
            self.close_connection = True
            return
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the project's message, not the server's log."""


class Dropping(Failing):
    drop_artifacts = True


@pytest.fixture(params=[Failing, Dropping], ids=["500", "dropped"])
def failing_server(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once, not in minutes
    yield url
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_failing_artifact_store_says_so_and_what_to_do(failing_server: str) -> None:
    with pytest.raises(RegistryError) as error, registry_errors(load_params().mlflow):
        mlflow.artifacts.download_artifacts(
            artifact_uri="mlflow-artifacts:/1/model", tracking_uri=failing_server
        )
    assert str(error.value) == (
        f"MLflow at {failing_server}: the server could not store or read a model's files (HTTP "
        "5xx or a dropped connection, retried): its artifact store is down or failing (`make "
        "stack` starts the stack's object store again); see the server's log, then run this again"
    )


def test_a_failing_server_says_to_read_its_log(failing_server: str) -> None:
    with pytest.raises(RegistryError, match="kept failing") as error:
        champion_candidate(load_params().mlflow)
    assert str(error.value) == (
        f"MLflow at {failing_server}: the server kept failing (HTTP 5xx or a dropped connection, "
        "retried): see its log, then run this again"
    )
