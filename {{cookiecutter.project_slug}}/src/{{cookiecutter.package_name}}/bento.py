"""`bento`: build the service's bento, with the registry's champion pinned inside it.

The bento is built from build/bento/: a copy of this package and the `serve` dependency group
exported from uv.lock, so the container installs exactly the locked versions. Its version and
labels name the model version it serves.
"""

import argparse
import shutil
import subprocess
from pathlib import Path

from .champion import store
from .config import load_params
from .errors import ProjectError
from .registry import load_registered

BUILD_DIR = Path("build/bento")
BENTOFILE = Path("bentofile.yaml")
PACKAGE = Path(__file__).parent


def export_requirements(target: Path) -> None:
    """The `serve` group of uv.lock, pinned and with every file's hash, as a requirements file:
    the image's installer (uv) refuses a download whose hash is not listed."""
    command = ["uv", "export", "--locked", "--only-group", "serve", "--quiet"]
    try:
        result = subprocess.run(
            [*command, "--output-file", str(target)], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise ProjectError("uv is not on PATH: install it with `pip install uv`") from None
    if result.returncode != 0:
        raise ProjectError(f"uv export failed: {result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bento", description=__doc__)
    parser.add_argument("--alias", default="champion", help="the registry alias to serve")
    args = parser.parse_args(argv)
    champion = load_registered(load_params().mlflow, args.alias)
    model_tag, _ = store(champion)

    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    shutil.copytree(PACKAGE, BUILD_DIR / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    export_requirements(BUILD_DIR / "requirements.txt")

    import bentoml

    bento = bentoml.bentos.build_bentofile(
        str(BENTOFILE.resolve()),
        build_ctx=str(BUILD_DIR),
        labels={"mlflow_model": champion.name, "mlflow_version": champion.version},
    )
    print(f"bento: {bento.tag} serves {champion.name} version {champion.version} ({model_tag})")
    print(f"bento: {bento.path}")
    return 0
