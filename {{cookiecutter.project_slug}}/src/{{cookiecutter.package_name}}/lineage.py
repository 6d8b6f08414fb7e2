"""Where a model came from: the code, data and parameters that produced it."""

import hashlib
import subprocess
from pathlib import Path

from .config import PARAMS_FILE, RAW_DATA
from .data import tracked_md5

UNKNOWN = "unknown"
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


def git_dirty() -> str:
    """'true' when tracked files other than the pipeline's outputs have uncommitted changes."""
    excludes = [f":(exclude){path}" for path in PIPELINE_OUTPUTS]
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *excludes)
    if status is None:
        return UNKNOWN
    return "true" if status else "false"


def data_md5(data: Path = RAW_DATA) -> str:
    """The hash DVC recorded for the raw data (the `.dvc` file next to it)."""
    return tracked_md5(data) or UNKNOWN


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_md5(path: Path) -> str:
    """The md5 of a file, the hash DVC records for the pipeline's outputs."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def lineage_tags() -> dict[str, str]:
    """Tags for the MLflow run and model version."""
    return {
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "data_md5": data_md5(),
        "params_sha256": file_sha256(PARAMS_FILE),
    }
