"""`bento`: build the service's bento, with the registry's champion pinned inside it.

The bento is built from build/bento/: a copy of what the image runs (the package's `serving` and
`core`, nothing else) and the `serve` dependency group exported from uv.lock, so the container
installs exactly the locked versions. Its version and
labels name the model version it serves. With --expect-dvc-lock (the release), the model it
holds is the models/model.skops that dvc.lock records: the file this run trained and gated.
"""

import argparse
import dataclasses
import shutil
import subprocess
from pathlib import Path

from ..core.config import MODEL_FILE, load_params
from ..core.errors import ModelError, ProjectError
from ..core.model_file import MODEL_SHA256, model_from_bytes, sha256
from .champion import store
from .lineage import DVC_LOCK, TRAIN_INPUTS, UNKNOWN, locked_md5, md5, train_inputs
from .registry import RegisteredModel, load_registered

BUILD_DIR = Path("build/bento")
BENTOFILE = Path("bentofile.yaml")
PACKAGE = Path(__file__).parents[1]
# What the image runs: the service and the core it imports, nothing else of the package (the
# `lint-imports` contracts in pyproject.toml keep `serving` from importing anything more).
SHIPPED = ("__init__.py", "core", "serving")


def copy_shipped(target: Path) -> None:
    """Copy the package's `SHIPPED` parts to `target`, without compiled files."""
    target.mkdir(parents=True)
    for name in SHIPPED:
        source = PACKAGE / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)


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


def from_checkout(model: RegisteredModel) -> RegisteredModel:
    """`model` as the models/model.skops of this checkout, which must be the file dvc.lock records.

    The version must be that file (the same md5) or a model trained from this checkout's code,
    data and parameters (its `train_inputs` tag), which is the same model in another file: the
    release registers a model once, and a run that trains it again finds the version it has.
    Anything else, such as a rollback's champion, is refused: it is not this checkout's model.
    """
    locked = locked_md5(MODEL_FILE)
    if locked is None:
        raise ModelError(f"{DVC_LOCK}: records no {MODEL_FILE}; run `make evaluate` first")
    if not MODEL_FILE.is_file():
        raise ModelError(f"{MODEL_FILE}: not found; run `make evaluate` first")
    data = MODEL_FILE.read_bytes()
    if md5(data) != locked:
        raise ModelError(
            f"{MODEL_FILE}: md5 {md5(data)} is not the {locked} that {DVC_LOCK} records; "
            "run `make evaluate` again"
        )
    if md5(model.model_file) == locked:
        return model
    inputs = train_inputs()
    if inputs == UNKNOWN or model.tags.get(TRAIN_INPUTS) != inputs:
        raise ModelError(
            f"{model.name} version {model.version} ('{model.alias}') is not this checkout's "
            f"model: its file's md5 {md5(model.model_file)} is not the {locked} that {DVC_LOCK} "
            f"records for {MODEL_FILE}, and it was trained from other code, data or parameters; "
            "build a rollback's champion without --expect-dvc-lock"
        )
    return dataclasses.replace(
        model, estimator=model_from_bytes(data, str(MODEL_FILE)), model_file=data
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bento", description=__doc__)
    parser.add_argument("--alias", default="champion", help="the registry alias to serve")
    parser.add_argument(
        "--expect-dvc-lock",
        action="store_true",
        help=f"ship the {MODEL_FILE} that {DVC_LOCK} records, and refuse if the version is "
        "not that model (the release)",
    )
    args = parser.parse_args(argv)
    champion = load_registered(load_params().mlflow, args.alias)
    if args.expect_dvc_lock:
        champion = from_checkout(champion)
        shipped = md5(champion.model_file)
        print(f"bento: the model is {MODEL_FILE} as {DVC_LOCK} records it (md5 {shipped})")
    model_tag, _ = store(champion)

    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    copy_shipped(BUILD_DIR / PACKAGE.name)
    export_requirements(BUILD_DIR / "requirements.txt")

    import bentoml

    bento = bentoml.bentos.build_bentofile(
        str(BENTOFILE.resolve()),
        build_ctx=str(BUILD_DIR),
        labels={
            "mlflow_model": champion.name,
            "mlflow_version": champion.version,
            MODEL_SHA256: sha256(champion.model_file),
        },
    )
    print(f"bento: {bento.tag} serves {champion.name} version {champion.version} ({model_tag})")
    print(f"bento: {bento.path}")
    return 0
