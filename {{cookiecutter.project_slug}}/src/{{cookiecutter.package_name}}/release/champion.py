"""`champion`: copy the registry's champion into BentoML's model store, where the service finds it.

`make serve` and `make bento` run this first. The newest BentoML model is always the current
champion, so the service's `:latest` reference follows promotions and rollbacks, and
`bentoml build` pins the exact version into the bento.
"""

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.config import load_params
from ..core.model_file import BENTO_MODEL, FILE_NAME, MODEL_SHA256, sha256
from .registry import RegisteredModel, load_registered

if TYPE_CHECKING:
    from bentoml import Model


def latest(name: str) -> "Model | None":
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(f"{name}:latest")
    except NotFound:
        return None


def store(champion: RegisteredModel) -> tuple[str, bool]:
    """Make the champion the newest BentoML model; return its tag and whether it was added.

    The BentoML model holds the champion's checked file byte for byte, its sha256 in a label.
    """
    import bentoml

    name = BENTO_MODEL
    digest = sha256(champion.model_file)
    newest = latest(name)
    if newest is not None and (
        newest.info.labels.get("mlflow_version"),
        newest.info.labels.get(MODEL_SHA256),
    ) == (champion.version, digest):
        return str(newest.tag), False
    labels = {
        "mlflow_model": champion.name,
        "mlflow_version": champion.version,
        "alias": champion.alias,
        MODEL_SHA256: digest,
    }
    with bentoml.models.create(name, labels=labels) as model:
        (Path(model.path) / FILE_NAME).write_bytes(champion.model_file)
    return str(model.tag), True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="champion", description=__doc__)
    parser.add_argument("--alias", default="champion", help="the registry alias to serve")
    args = parser.parse_args(argv)
    champion = load_registered(load_params().mlflow, args.alias)
    tag, added = store(champion)
    verb = "stored as" if added else "already stored as"
    print(f"champion: {champion.name} version {champion.version} {verb} BentoML model {tag}")
    return 0
