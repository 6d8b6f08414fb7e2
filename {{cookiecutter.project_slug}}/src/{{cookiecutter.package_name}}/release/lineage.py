"""Where a model came from: the code, data and parameters that produced it."""

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ..core.config import PARAMS_FILE, PRODUCTION_IDS, RAW_DATA

UNKNOWN = "unknown"
DVC_LOCK = Path("dvc.lock")
# The version tag that names a model by what trained it (see `train_inputs`).
TRAIN_INPUTS = "train_inputs"
# The version tag that says which labelled production rows trained the model: the md5 of
# data/raw/production_ids.txt as DVC tracks it, or NO_PRODUCTION_ROWS before `make refresh`.
PRODUCTION_IDS_MD5 = "production_ids_md5"
NO_PRODUCTION_ROWS = "none"
# Files the pipeline itself rewrites: changes to them do not make the code dirty.
PIPELINE_OUTPUTS = ("dvc.lock", "reports")


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_commit() -> str:
    return _git("rev-parse", "HEAD") or UNKNOWN


def committed(revision: str, path: Path) -> str | None:
    """`path` as committed at `revision`; None if git, the revision or the file is missing."""
    return _git("show", "--end-of-options", f"{revision}:{path.as_posix()}")


def git_dirty() -> str:
    """'true' when tracked files other than the pipeline's outputs have uncommitted changes."""
    excludes = [f":(exclude){path}" for path in PIPELINE_OUTPUTS]
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *excludes)
    if status is None:
        return UNKNOWN
    return "true" if status else "false"


def pointer(path: Path) -> Path:
    """The `.dvc` file that tracks `path`."""
    return path.with_name(path.name + ".dvc")


def tracked_md5(path: Path) -> str | None:
    """The hash the `.dvc` pointer records for `path`."""
    try:
        return pointer_md5(pointer(path).read_text(encoding="utf-8"))
    except OSError:
        return None


def pointer_md5(text: str) -> str | None:
    """The hash a `.dvc` pointer's `text` records; None if it records none."""
    try:
        return str(yaml.safe_load(text)["outs"][0]["md5"])
    except (KeyError, IndexError, TypeError, yaml.YAMLError):
        return None


def production_ids_md5(pointer_text: str | None) -> str:
    """Which production rows a model was trained with, by the text of its checkout's
    production_ids.txt.dvc (None: there is none, so no production rows); UNKNOWN if unreadable."""
    if pointer_text is None:
        return NO_PRODUCTION_ROWS
    return pointer_md5(pointer_text) or UNKNOWN


def data_md5(data: Path = RAW_DATA) -> str:
    """The hash DVC recorded for the raw data (the `.dvc` file next to it)."""
    return tracked_md5(data) or UNKNOWN


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def md5(data: bytes) -> str:
    """The md5 of a file's bytes, the hash DVC records for the pipeline's outputs."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def locked_md5(path: Path, lock_text: str | None = None) -> str | None:
    """The md5 dvc.lock (or `lock_text`) records for the stage output `path`; None if none."""
    try:
        text = DVC_LOCK.read_text(encoding="utf-8") if lock_text is None else lock_text
        lock: Any = yaml.safe_load(text)
    except (FileNotFoundError, yaml.YAMLError):
        return None
    stages = lock.get("stages") if isinstance(lock, dict) else None
    for stage in stages.values() if isinstance(stages, dict) else []:
        for out in stage.get("outs", []) if isinstance(stage, dict) else []:
            if isinstance(out, dict) and out.get("path") == path.as_posix():
                found = out.get("md5")
                return found if isinstance(found, str) else None
    return None


def train_inputs(lock_text: str | None = None) -> str:
    """One hash of everything the `train` stage read: its code, its data and its parameters, as
    dvc.lock records them (`lock_text`: another revision's dvc.lock). A retrained model file
    differs byte for byte (skops names its entries after objects in memory); this does not, so
    it tells a model trained again from the same inputs from a new one. UNKNOWN without a lock."""
    try:
        text = DVC_LOCK.read_text(encoding="utf-8") if lock_text is None else lock_text
        lock: Any = yaml.safe_load(text)
    except (FileNotFoundError, yaml.YAMLError):
        return UNKNOWN
    stage = lock.get("stages", {}).get("train") if isinstance(lock, dict) else None
    if not isinstance(stage, dict):
        return UNKNOWN
    read = {
        "deps": sorted((dep["path"], dep.get("md5")) for dep in stage.get("deps", [])),
        "params": stage.get("params", {}),
    }
    return hashlib.sha256(json.dumps(read, sort_keys=True).encode()).hexdigest()


def trained_on_production() -> str:
    """The production rows this checkout's data holds (PRODUCTION_IDS_MD5's value)."""
    try:
        text: str | None = pointer(PRODUCTION_IDS).read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    return production_ids_md5(text)


def lineage_tags() -> dict[str, str]:
    """Tags for the MLflow run and model version."""
    return {
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "data_md5": data_md5(),
        "params_sha256": file_sha256(PARAMS_FILE),
        TRAIN_INPUTS: train_inputs(),
        PRODUCTION_IDS_MD5: trained_on_production(),
    }
