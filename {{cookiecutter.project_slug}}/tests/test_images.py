"""The images the project builds on are pinned by digest, and the service runs the same Python.

Dependabot proposes new digests for deploy/mlflow.Dockerfile and deploy/compose.yaml; it does not
read bentofile.yaml, so this test fails on its pull request until the bentofile's base image is
the Dockerfile's again.
"""

import re

import yaml

from .conftest import ROOT

# name:tag@sha256:<64 hex>: the tag says what it is, the digest which bytes.
PINNED = re.compile(r"[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}")


def test_every_base_image_is_pinned_and_the_service_runs_the_servers_python() -> None:
    dockerfile = (ROOT / "deploy" / "mlflow.Dockerfile").read_text(encoding="utf-8")
    stages = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
    services = [spec["image"] for spec in compose["services"].values() if "image" in spec]
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text(encoding="utf-8"))
    service = bentofile["docker"]["base_image"]
    for image in [*stages, *services, service]:
        assert PINNED.fullmatch(image), f"{image}: not pinned by digest"

    python = [image for image in stages if image.startswith("python:")]
    assert python == [service], (
        f"bentofile.yaml's docker.base_image is {service}, deploy/mlflow.Dockerfile's Python is "
        f"{python}: copy the Dockerfile's (Dependabot updates only that one)"
    )
    version = (ROOT / ".python-version").read_text(encoding="utf-8").strip()
    assert service.startswith(f"python:{version}-"), f".python-version says {version}"
