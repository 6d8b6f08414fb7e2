"""Fast tier: the generated deploy/compose.yaml is valid and runs the local server's flags."""

from __future__ import annotations

import json
import re
import sys

import yaml

from .conftest import Bake, run

# ${NAME}, ${NAME:-default} and ${NAME:?error}: the variables Compose takes from deploy/.env.
VARIABLE = re.compile(r"\$\{([A-Z_]+)")
SECRETS = ("POSTGRES_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")


def test_compose_file_is_valid_and_matches_the_local_server(
    bake: Bake, bake_env: dict[str, str]
) -> None:
    project = bake()
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
    described = set(re.findall(r"^#? ?([A-Z_]+)=", example, flags=re.MULTILINE))
    assert set(VARIABLE.findall(text)) == described

    # The same `mlflow server` flags as the server without containers, ops/mlflow_server.py.
    script = (
        "import json; from tumour_classifier.ops.mlflow_server import mlflow_command; "
        "print(json.dumps(mlflow_command('0.0.0.0', 5000, 2, 'localhost:5000')))"
    )
    local = json.loads(
        run([sys.executable, "-c", script], project, {**bake_env, "PYTHONPATH": "src"}).stdout
    )
    command = compose["services"]["mlflow"]["command"]
    assert command[:2] == local[:2] == ["mlflow", "server"]
    assert [arg for arg in command if arg.startswith("--")] == [
        arg for arg in local if arg.startswith("--")
    ]
    for flag in ("--app-name", "--host", "--port", "--workers"):
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
    assert set(compose["volumes"]) == {"postgres-data", "mlflow-artifacts"}
