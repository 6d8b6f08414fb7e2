"""Fast tier: the generated deploy/compose.yaml is valid and describes the stack `make stack`
starts without containers: the same `mlflow server` flags, artifacts in the same bucket of an S3
object store (moto's server, from the same locked dependency group)."""

from __future__ import annotations

import json
import re
import sys
import tomllib

import pytest
import yaml

from .conftest import Bake, run

# ${NAME}, ${NAME:-default} and ${NAME:?error}: the variables Compose takes from deploy/.env.
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")
SECRETS = (
    "POSTGRES_PASSWORD",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
)


@pytest.mark.parametrize("remote", ["local", "s3"])
def test_compose_file_is_valid_and_matches_the_local_server(
    bake: Bake, bake_env: dict[str, str], remote: str
) -> None:
    project = bake(dvc_remote=remote)
    compose_file = project / "deploy" / "compose.yaml"
    # check-jsonschema's vendored copy of the Compose specification's schema: no download.
    run(
        ["check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(compose_file)],
        project,
        bake_env,
    )
    text = compose_file.read_text(encoding="utf-8")
    compose = yaml.safe_load(text)
    for secret in SECRETS:
        assert f"${{{secret}:?" in text, f"{secret} has no default: Compose must refuse to start"

    # Every variable the file reads is described in deploy/.env.example.
    example = (project / "deploy" / ".env.example").read_text(encoding="utf-8")
    described = set(re.findall(r"^#? ?([A-Z_][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert set(VARIABLE.findall(text)) == described

    # The same `mlflow server` flags as the stack without containers (ops/mlflow_server.py, with
    # the artifact destination ops/stack.py gives it).
    script = (
        "import json; from tumour_classifier.ops.mlflow_server import mlflow_command; "
        "from tumour_classifier.ops.stack import ARTIFACTS_BUCKET; "
        "print(json.dumps(mlflow_command('0.0.0.0', 5000, 2, 'localhost:5000', "
        "f's3://{ARTIFACTS_BUCKET}/mlflow')))"
    )
    local = json.loads(
        run([sys.executable, "-c", script], project, {**bake_env, "PYTHONPATH": "src"}).stdout
    )
    command = compose["services"]["mlflow"]["command"]
    assert command[:2] == local[:2] == ["mlflow", "server"]
    assert [arg for arg in command if arg.startswith("--")] == [
        arg for arg in local if arg.startswith("--")
    ]
    for flag in ("--app-name", "--host", "--port", "--workers", "--artifacts-destination"):
        assert command[command.index(flag) + 1] == local[local.index(flag) + 1], flag
    # PostgreSQL by digest (Dependabot's docker-compose ecosystem proposes new ones), and the
    # MLflow image built from base images by digest.
    assert re.fullmatch(
        r"postgres:17@sha256:[0-9a-f]{64}", compose["services"]["postgres"]["image"]
    )
    dockerfile = (project / "deploy" / "mlflow.Dockerfile").read_text(encoding="utf-8")
    stages = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert stages
    assert all(re.fullmatch(r"\S+:[\w.-]+@sha256:[0-9a-f]{64}", stage) for stage in stages)
    assert "pip install" not in dockerfile  # uv is copied from its pinned image
    healthy = compose["services"]["mlflow"]["depends_on"]["postgres"]["condition"]
    assert healthy == "service_healthy"
    assert set(compose["volumes"]) == {"postgres-data"}  # the artifacts are in the bucket

    # The object store: moto's server from the MLflow image, which installs the `server` group.
    services = compose["services"]
    assert services["s3"]["build"] == services["mlflow"]["build"]
    assert services["s3"]["command"][0] == "moto_server"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    server_group = " ".join(pyproject["dependency-groups"]["server"])
    assert "moto[server]" in server_group
    assert "boto3" in server_group
    # MLflow writes to it once the buckets exist: its own, and an s3 DVC remote's.
    assert services["mlflow"]["depends_on"]["buckets"] == {
        "condition": "service_completed_successfully"
    }
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://s3:9000"
    created = services["buckets"]["command"][-1]
    bucket = command[command.index("--artifacts-destination") + 1].split("/")[2]
    assert f'"{bucket}"' in created
    assert ('"tumour-classifier-dvc"' in created) == (remote == "s3")
