"""Slow tier: the `gcs` and `azure` DVC remotes, for real, against emulators on 127.0.0.1.

A project baked with `dvc_remote=gcs` (or `azure`) is pointed at gcp-storage-emulator (from PyPI,
in the template's test environment) or Azurite (from npm, pinned by tests/azurite/ and installed
by `make test`) through `.dvc/config.local` alone, as docs/dvc-cloud.md tells a user to. `make
setup` pushes the sample data through the project's own DVC extra (gcsfs, adlfs); every object
is then in the emulator under its md5, whole; a clone on a second path, given only
`.dvc/config.local`, pulls it back byte for byte with `make setup`.

Then the same project trains and promotes, and `make batch ENGINE=spark` reads rows from the
emulator and writes its predictions back to it (README, "Batch scoring on Spark"): Spark's
workers reach the store through fsspec, which finds the emulator and its credentials in the
environment, as it finds a user's.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import ROOT, Bake, free_port, make, require_java, run, wait_for_http

pytestmark = pytest.mark.slow
AZURITE = ROOT / "build" / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# The default dvc_remote_url of a project named Tumour Classifier: <scheme>://<this>/storage.
BUCKET = "tumour-classifier-dvc"
# Azurite's one built-in account and its key: public, the same in every Azurite (Microsoft's
# documentation of the emulator gives them), so nothing secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# The URL scheme of each remote's bucket, as DVC spells it.
SCHEMES = {"gcs": "gs", "azure": "azure"}
# Only config.local points DVC at the emulator: none of this machine's cloud variables helps.
CLOUD_VARIABLES = (
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
)
# Run with the project's own environment: the container made, then every blob's md5 read back,
# with the Azure SDK that dvc[azure] installs.
CREATE_CONTAINER = """
import sys
from azure.storage.blob import BlobServiceClient
BlobServiceClient.from_connection_string(sys.argv[1]).create_container(sys.argv[2])
"""
BLOB_MD5S = """
import hashlib, json, sys
from azure.storage.blob import ContainerClient
container = ContainerClient.from_connection_string(sys.argv[1], sys.argv[2])
print(json.dumps({
    blob.name: hashlib.md5(container.download_blob(blob.name).readall()).hexdigest()
    for blob in container.list_blobs()
}))
"""
# Run with the project's own environment: a local file copied to a store URL; the Parquet files
# under a store URL read back as JSON records, then the names of the other files there.
PUT_FILE = """
import sys, fsspec
from tumour_classifier.core.stores import fsspec_url
with open(sys.argv[1], "rb") as source, fsspec.open(fsspec_url(sys.argv[2]), "wb") as target:
    target.write(source.read())
"""
READ_PARQUET = """
import sys, fsspec, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
from tumour_classifier.core.stores import fsspec_url
fs, root = fsspec.core.url_to_fs(fsspec_url(sys.argv[1]))
names = sorted(fs.ls(root, detail=False))
def read(name):
    # Arrow's own copy of the bytes: a Python file it reads may be let go of on its thread as
    # the interpreter exits, which aborts this script (apache/arrow#34314).
    copy = pa.BufferOutputStream()
    copy.write(fs.cat_file(name))
    return pq.read_table(pa.BufferReader(copy.getvalue())).to_pandas()
parts = [read(name) for name in names if name.endswith(".parquet")]
print(pd.concat(parts).to_json(orient="records"))
print(" ".join(name.rsplit("/", 1)[-1] for name in names if not name.endswith(".parquet")))
"""


@dataclass(frozen=True)
class Emulator:
    remote: str
    command: list[str]  # what starts it on its port, its data in a given folder
    local_config: dict[str, str]  # what `dvc remote modify --local storage` is given
    env: dict[str, str]  # what DVC needs besides, in every process that runs it
    ready: Callable[[subprocess.Popen[bytes], Path], None]  # waits until it answers
    create: Callable[[Path, dict[str, str]], None]  # makes the bucket or container, if needed
    objects: Callable[[Path, dict[str, str]], dict[str, str]]  # key -> md5 of its content
    fsspec_env: dict[str, str]  # what points fsspec (gcsfs, adlfs) at the emulator


def gcs_emulator(port: int, folder: Path) -> Emulator:
    url = f"http://127.0.0.1:{port}"

    def ready(process: subprocess.Popen[bytes], log: Path) -> None:
        wait_for_http(f"{url}/", process, log=log)

    def objects(project: Path, env: dict[str, str]) -> dict[str, str]:
        # The JSON API that gsutil and gcloud use; the emulator checks no credentials.
        with urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}/o", timeout=10) as response:
            listing = json.load(response)
        assert "nextPageToken" not in listing
        found = {}
        for item in listing.get("items", []):
            with urllib.request.urlopen(item["mediaLink"], timeout=10) as response:
                found[item["name"]] = hashlib.md5(response.read()).hexdigest()
        return found

    return Emulator(
        remote="gcs",
        command=[
            *(sys.executable, "-m", "gcp_storage_emulator", "--data-dir", str(folder)),
            *("start", "--host", "127.0.0.1", "--port", str(port), "--default-bucket", BUCKET),
        ],
        # Anonymous: DVC neither looks for Google credentials nor sends any to the emulator.
        local_config={"endpointurl": url, "allow_anonymous_login": "true"},
        # gcsfs 2026.3 and later first ask Google's Storage Control API, over gRPC, whether a
        # bucket is hierarchical; no emulator serves it, and each question waits 60 s before
        # gcsfs falls back to the JSON API. gcsfs's own switch, an environment variable (DVC's
        # config has no key for it), turns the question off.
        env={"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"},
        ready=ready,
        create=lambda project, env: None,  # --default-bucket made it
        objects=objects,
        # gcsfs's own variable for an emulator, and fsspec's for gcsfs's `token` argument:
        # anonymous, without first asking Google's metadata server for credentials.
        fsspec_env={"STORAGE_EMULATOR_HOST": url, "FSSPEC_GS_TOKEN": "anon"},
    )


def azure_emulator(port: int, folder: Path) -> Emulator:
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )

    def ready(process: subprocess.Popen[bytes], log: Path) -> None:
        wait_for_port(port, process, log)

    def python(project: Path) -> str:
        return str(project / ".venv" / "bin" / "python")

    def create(project: Path, env: dict[str, str]) -> None:
        # adlfs makes no container: a push to a missing one fails ("No such container").
        run([python(project), "-c", CREATE_CONTAINER, connection, BUCKET], project, env)

    def objects(project: Path, env: dict[str, str]) -> dict[str, str]:
        listed = run([python(project), "-c", BLOB_MD5S, connection, BUCKET], project, env)
        found: dict[str, str] = json.loads(listed.stdout)
        return found

    return Emulator(
        remote="azure",
        command=[
            *(str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port)),
            *("--location", str(folder), "--disableTelemetry", "--silent"),
            # The Azure SDK that dvc[azure] resolves to speaks a newer API version than any
            # pinned Azurite knows; Azurite refuses such requests unless told not to check.
            "--skipApiVersionCheck",
        ],
        local_config={"connection_string": connection},
        env={},
        ready=ready,
        create=create,
        objects=objects,
        fsspec_env={"AZURE_STORAGE_CONNECTION_STRING": connection},  # adlfs reads it
    )


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Azurite answers nothing without a signed request: wait until its port takes connections."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Azurite did not listen on {port}\n{log.read_text()[-4000:]}")
            time.sleep(0.3)


@pytest.fixture(params=["gcs", "azure"])
def emulator(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Emulator]:
    """The remote's emulator on a free port, its data in the test's folder, stopped after."""
    remote: str = request.param
    if remote == "azure":
        assert AZURITE.exists(), "run the tests through `make test`, which installs Azurite"
    folder = tmp_path / f"{remote}-emulator"
    folder.mkdir()
    log = tmp_path / f"{remote}-emulator.log"
    started = {"gcs": gcs_emulator, "azure": azure_emulator}[remote](free_port(), folder)
    with log.open("wb") as output:
        process = subprocess.Popen(started.command, stdout=output, stderr=subprocess.STDOUT)
    try:
        started.ready(process, log)
        yield started
    finally:
        process.terminate()
        process.wait(timeout=30)


def tracked_md5s(project: Path) -> set[str]:
    """The md5 of every data file the project tracks with DVC, from its .dvc pointers."""
    found = set()
    for pointer in project.glob("data/*/*.dvc"):
        (out,) = yaml.safe_load(pointer.read_text(encoding="utf-8"))["outs"]
        found.add(out["md5"])
    return found


def store_env(bake_env: dict[str, str], emulator: Emulator) -> dict[str, str]:
    """The tests' environment without this machine's cloud variables, with the emulator's."""
    env = {name: value for name, value in bake_env.items() if name not in CLOUD_VARIABLES}
    return env | emulator.env


def set_up(project: Path, emulator: Emulator, env: dict[str, str]) -> None:
    """Point the project's DVC remote at the emulator, as a user would, then `make setup`.

    Configured before the first push: `uv run` makes the environment (what `make setup` does
    first), then DVC writes the git-ignored config.local.
    """
    for key, value in emulator.local_config.items():
        modify = ["uv", "run", "dvc", "remote", "modify", "--local", "storage", key, value]
        run(modify, project, env)
    emulator.create(project, env)
    setup = run(["make", "setup"], project, env)
    assert "could not push" not in setup.stderr, setup.stderr


def test_push_to_the_emulator_pull_into_a_clone_and_score_on_spark_through_it(
    emulator: Emulator, bake: Bake, bake_env: dict[str, str], tmp_path: Path
) -> None:
    """One project per cloud, through its life against the emulator: pushed, cloned and
    pulled, then trained and its champion scoring rows on Spark from the bucket into it."""
    require_java(bake_env)
    project = bake(dvc_remote=emulator.remote)
    env = store_env(bake_env, emulator)
    shared = (project / ".dvc" / "config").read_text(encoding="utf-8")
    assert f"url = {SCHEMES[emulator.remote]}://{BUCKET}/storage" in shared
    set_up(project, emulator, env)
    assert "Everything is up to date" in make(project, env, "push")
    assert (project / ".dvc" / "config").read_text(encoding="utf-8") == shared

    # Every object is there under its md5, whole: its content hashes to its key.
    md5s = tracked_md5s(project)
    assert len(md5s) == 2  # the raw and the current sample
    objects = emulator.objects(project, env)
    assert set(objects) == {f"storage/files/md5/{md5[:2]}/{md5[2:]}" for md5 in md5s}
    for key, content_md5 in objects.items():
        assert key.removeprefix("storage/files/md5/").replace("/", "") == content_md5

    # A clone on a second path, given only .dvc/config.local, pulls both files back.
    run(["git", "add", "--all"], project, env)
    committed = run(["git", "ls-files"], project, env).stdout.splitlines()
    assert ".dvc/config" in committed
    assert ".dvc/config.local" not in committed
    run(["git", "commit", "--quiet", "--message", "the sample data"], project, env)
    clone = tmp_path / "second-machine"
    run(["git", "clone", "--quiet", str(project), str(clone)], tmp_path, env)
    shutil.copy(project / ".dvc" / "config.local", clone / ".dvc" / "config.local")
    pulled = make(clone, env, "setup")
    # Not the bundled sample rebuilt, which is what `make setup` does when the pull fails.
    assert pulled.count("pulled from the DVC remote") == 2, pulled
    for data in [*project.glob("data/raw/*.csv"), *project.glob("data/current/*.csv")]:
        assert (clone / data.relative_to(project)).read_bytes() == data.read_bytes()

    # Spark reads rows from the bucket and writes the champion's predictions back into it.
    make(project, env, "repro")
    make(project, env, "promote")
    env |= emulator.fsspec_env
    python = str(project / ".venv" / "bin" / "python")
    rows = project / "data" / "raw" / "breast_cancer.csv"
    bucket = f"{SCHEMES[emulator.remote]}://{BUCKET}"
    run([python, "-c", PUT_FILE, str(rows), f"{bucket}/in/rows.csv"], project, env)

    local = tmp_path / "local.parquet"
    make(project, env, "batch", f"INPUT={rows}", f"OUTPUT={local}")
    output = f"{bucket}/scores/predictions.parquet"
    spark = ["batch", "ENGINE=spark", f"INPUT={bucket}/in/rows.csv", f"OUTPUT={output}"]
    scored = make(project, env, *spark)
    assert f"scored 569 rows with tumour-classifier version 1 ('champion') -> {output}" in scored

    read_back = run([python, "-c", READ_PARQUET, output], project, env).stdout
    records, others = read_back.splitlines()
    assert others == "_SUCCESS"
    result = pd.read_json(io.StringIO(records)).sort_values("row", ignore_index=True)
    expected = pd.read_parquet(local)
    assert list(result.columns) == list(expected.columns)
    assert list(result["row"]) == list(range(569))
    assert (result["prediction"] == expected["prediction"]).all()
    assert ((result["probability"] - expected["probability"]).abs() < 1e-9).all()
