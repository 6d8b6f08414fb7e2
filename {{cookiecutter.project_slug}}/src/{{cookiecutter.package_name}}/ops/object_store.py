"""The stack's S3-compatible object store: moto's server on 127.0.0.1, and its buckets.

moto keeps every object in memory and has no option to keep them on disk. So `stop` first copies
each bucket into the stack's folder (`s3/<bucket>/<key>`), and `start` puts them back before
anything else connects: what a clean stop kept survives; a crash loses what changed since the
last start. moto accepts any credentials; the stack still hands out a key pair, as a real bucket
needs one.
"""

import shutil
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..core.errors import ProjectError
from .processes import Daemon, start_daemon

MARKER = b"moto"
REGION = "us-east-1"


@dataclass(frozen=True)
class ObjectStore:
    folder: Path  # the snapshot of every bucket, moto's log and pid file
    port: int
    access_key: str
    secret_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def snapshot(self) -> Path:
        return self.folder / "buckets"

    @property
    def pid(self) -> Path:
        return self.folder / "moto.pid"

    @property
    def log(self) -> Path:
        return self.folder / "moto.log"

    @property
    def daemon(self) -> Daemon:
        return Daemon("the object store", "--s3-port", self.port, self.pid, MARKER)

    def client_env(self) -> dict[str, str]:
        """What an S3 client (boto3, DVC, MLflow's server) reads to reach this store."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.url,
            "MLFLOW_S3_ENDPOINT_URL": self.url,
        }


def client(store: ObjectStore) -> Any:
    import boto3  # the `server` dependency group: only the stack's commands load it

    return boto3.client(
        "s3",
        endpoint_url=store.url,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
        region_name=REGION,
    )


def is_running(store: ObjectStore) -> bool:
    return store.daemon.is_running()


def start(store: ObjectStore, buckets: list[str]) -> None:
    """moto on 127.0.0.1:<port>, the kept objects put back, and `buckets` made if missing."""
    for package in ("moto", "boto3"):
        if find_spec(package) is None:
            raise ProjectError(
                f"{package} is not installed: the stack needs the `server` dependency group "
                "(`make stack` installs it)"
            )
    if is_running(store):
        print(f"The object store is already running at {store.url}")
        return
    command = [sys.executable, "-c", "from moto.server import main; main()"]
    start_daemon(
        store.daemon,
        lambda: [*command, "-H", "127.0.0.1", "-p", str(store.port)],
        f"{store.url}/moto-api/",
    )
    s3 = client(store)
    restored = _restore(s3, store.snapshot)
    for bucket in buckets:
        if bucket not in restored:
            s3.create_bucket(Bucket=bucket)


def stop(store: ObjectStore) -> bool:
    """Copy every bucket into the folder, then stop moto; whether it was running."""
    if is_running(store):
        _save(client(store), store.snapshot)
    return store.daemon.stop()


def _save(s3: Any, snapshot: Path) -> None:
    """Every object of every bucket into `snapshot`, written aside first and then swapped in,
    so that a failed copy leaves the previous snapshot whole."""
    partial = snapshot.with_name(snapshot.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700, parents=True)
    for bucket in (entry["Name"] for entry in s3.list_buckets()["Buckets"]):
        (partial / bucket).mkdir(mode=0o700)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                target = _inside(partial / bucket, entry["Key"])
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                s3.download_file(bucket, entry["Key"], str(target))
    shutil.rmtree(snapshot, ignore_errors=True)
    partial.rename(snapshot)


def _restore(s3: Any, snapshot: Path) -> set[str]:
    """Put the kept buckets and objects back; the buckets' names."""
    if not snapshot.is_dir():
        return set()
    buckets = sorted(path for path in snapshot.iterdir() if path.is_dir())
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket.name)
        for path in sorted(bucket.rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), bucket.name, path.relative_to(bucket).as_posix())
    return {bucket.name for bucket in buckets}


def _inside(folder: Path, key: str) -> Path:
    """The file for `key` under `folder`; a key that would leave it is refused."""
    target = (folder / key).resolve()
    if not target.is_relative_to(folder.resolve()) or key.endswith("/"):
        raise ProjectError(f"cannot keep the object {key!r} as a file under {folder}")
    return target
