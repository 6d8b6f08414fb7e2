"""Time `dvc push` and `dvc pull` against the stack's object store and a local folder remote.

One run bakes the default project with `dvc_remote=s3` into a temporary folder, runs
`make setup` in it (the sample data is written and tracked; its push waits for a remote), and
installs the `server` dependency group, which `make stack` runs on. Then it starts the stack's
object store alone (moto's S3 server on 127.0.0.1 and a free port, with the project's own
`ops.object_store.start`), and points the project's DVC remote at it in `.dvc/config.local`
as `make stack` does (`ops.stack.point_dvc`). MLflow, the registry and Prometheus are not
started: DVC talks to the object store only. A second remote, a folder, is added with
`dvc remote add --local`.

For each payload, the sample data (the files `make setup` tracks, data/raw and data/current)
and then one file of random bytes (`--size-mb`, `dvc add`ed), it runs ROUNDS rounds; in each,
the two remotes take turns (which goes first alternates), and for each remote:

- the remote is emptied, then `dvc push -r <remote> <the payload's .dvc files>` is timed;
- `.dvc/cache` and the payload's files are deleted, then `dvc pull -r <remote> ...` is timed:
  DVC downloads into the cache and copies into the workspace. Every pulled file's MD5 is
  checked against its .dvc file.

It prints a markdown report: the machine, the payloads, and for each payload, remote and step
the median and the minimum wall time and the throughput they give. `--json PATH` writes the
same figures and every run's seconds. The object store is stopped and the temporary folder
removed at the end, on errors and on SIGTERM too.

Run it from the template repository's root, with `uv` on PATH:
`uv run --locked python benchmarks/remotes.py` (or `make bench-remotes`). The figures in
docs/benchmarks-remotes.md come from one such run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from _bake import (
    Project,
    bake,
    load_average,
    machine,
    make,
    quiet_env,
    run,
    timed,
    wait_for_quiet,
)

ROUNDS = 3
SIZE_MIB = 1024
MIB = 1024 * 1024
CHUNK = 16 * MIB
S3 = "object store"
FOLDER = "local folder"
FOLDER_REMOTE = "folder"  # the second remote's name, in .dvc/config.local
BIG_FILE = "data/bench/random.bin"
PACKAGES = ["dvc", "dvc-s3", "s3fs", "moto", "boto3"]
# AWS variables of the machine running this would point DVC or moto elsewhere.
UNSET = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_CONFIG_FILE")

# Run with the bake's python in the project: start the object store alone, as `make stack` does,
# and point the default remote at it; argv: the store's folder and port. Prints the remote.
START_STORE = """\
import json, sys
from pathlib import Path
from PACKAGE.ops import object_store, stack

store = object_store.ObjectStore(Path(sys.argv[1]), int(sys.argv[2]), "BENCHKEY", "benchsecret")
remote, url = stack.dvc_remote()
bucket = stack.dvc_bucket(url)
if bucket is None:
    sys.exit(f"ERROR: the default DVC remote {remote!r} is {url}, not s3://")
object_store.start(store, [bucket])
stack.point_dvc(store, remote)
print(json.dumps({"remote": remote, "url": url, "bucket": bucket, "endpoint": store.url}))
"""
# Stop it without `object_store.stop`'s copy of every bucket to disk: the folder goes anyway.
STOP_STORE = """\
import sys
from pathlib import Path
from PACKAGE.ops import object_store, processes

processes.stop(Path(sys.argv[1]) / "moto.pid", object_store.MARKER)
"""
# Delete every object of a bucket; argv: endpoint, bucket. Prints how many were deleted.
EMPTY_BUCKET = """\
import sys
import boto3

s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="BENCHKEY",
                  aws_secret_access_key="benchsecret", region_name="us-east-1")
deleted = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2]):
    keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
    if keys:
        s3.delete_objects(Bucket=sys.argv[2], Delete={"Objects": keys})
        deleted += len(keys)
print(deleted)
"""


@dataclass(frozen=True)
class Payload:
    """Files tracked by DVC, pushed and pulled together."""

    name: str
    pointers: tuple[str, ...]  # the .dvc files, relative to the project
    files: dict[str, str]  # tracked file -> its MD5, from the .dvc files
    size: int  # bytes, all files together

    @classmethod
    def tracked(cls, project: Project, name: str, pointers: list[str]) -> Payload:
        files = {}
        for pointer in pointers:
            outs = yaml.safe_load((project.path / pointer).read_text(encoding="utf-8"))["outs"]
            for out in outs:
                files[str(Path(pointer).parent / out["path"])] = out["md5"]
        size = sum((project.path / path).stat().st_size for path in files)
        return cls(name, tuple(pointers), files, size)


@dataclass(frozen=True)
class Remote:
    label: str
    name: str  # the DVC remote's name
    empty: Callable[[], None]  # delete everything the remote holds


@dataclass
class Figures:
    facts: dict[str, str]
    payloads: list[Payload]
    # (payload, remote, step) -> seconds of each round
    seconds: dict[tuple[str, str, str], list[float]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per payload")
    parser.add_argument(
        "--size-mb", type=int, default=SIZE_MIB, help="size of the random file, in MiB"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="measure at once instead of waiting for the load average to drop",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.size_mb < 1:
        parser.error("--rounds and --size-mb must be at least 1")
    return args


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def on_signal(number: int, _frame: object) -> None:
    raise SystemExit(f"stopped by signal {number}")


def package_script(project: Project, code: str, *args: str) -> str:
    command = [project.python, "-c", code.replace("PACKAGE", project.package), *args]
    return run(command, project.path, project.env).strip()


@contextmanager
def object_store(project: Project, folder: Path) -> Iterator[dict[str, str]]:
    """The stack's object store, started alone; stopped when the block ends, however it ends."""
    print("starting the object store alone ...", flush=True)
    try:
        started = package_script(project, START_STORE, str(folder), str(free_port()))
        yield json.loads(started.splitlines()[-1])
    finally:
        # Not `run`: a failure here must not hide the one that ended the block.
        stop = [project.python, "-c", STOP_STORE.replace("PACKAGE", project.package), str(folder)]
        subprocess.run(stop, cwd=project.path, env=project.env, check=False)


def set_up(work: Path) -> Project:
    """The s3 bake, set up, with the `server` group installed and DVC's state inside `work`."""
    path = bake(work / "bake", {"dvc_remote": "s3"})
    # moto spills large objects to temporary files: keep them in `work` too.
    (work / "tmp").mkdir()
    extra = {"TMPDIR": str(work / "tmp")}
    env = {key: value for key, value in quiet_env(extra).items() if key not in UNSET}
    # DVC keeps hashes and indexes in a machine-wide folder (/var/tmp/dvc) unless told otherwise.
    site_cache = f"[core]\n    site_cache_dir = {work / 'dvc-site-cache'}\n"
    (path / ".dvc" / "config.local").write_text(site_cache, encoding="utf-8")
    make(path, ["setup"], env)
    print("  uv sync --locked --group server ...", flush=True)
    run(["uv", "sync", "--locked", "--group", "server"], path, env)
    project = Project.baked(path, extra)
    for name in UNSET:
        project.env.pop(name, None)
    return project


def dvc(project: Project, *args: str) -> str:
    return run([project.tool("dvc"), *args], project.path, project.env)


def sample_payload(project: Project) -> Payload:
    pointers = sorted(
        str(path.relative_to(project.path))
        for folder in ("data/raw", "data/current")
        for path in (project.path / folder).glob("*.dvc")
    )
    if not pointers:
        sys.exit("ERROR: `make setup` tracked no files in data/raw or data/current")
    return Payload.tracked(project, "sample data (data/raw + data/current)", pointers)


def random_payload(project: Project, size_mib: int) -> Payload:
    """`size_mib` MiB of random bytes, written and `dvc add`ed (not timed)."""
    path = project.path / BIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing {size_mib} MiB of random bytes to {BIG_FILE} and `dvc add`ing it ...")
    with path.open("wb") as file:
        left = size_mib * MIB
        while left:
            file.write(os.urandom(min(CHUNK, left)))
            left -= min(CHUNK, left)
    dvc(project, "add", BIG_FILE)
    return Payload.tracked(project, f"random bytes, {size_mib} MiB", [f"{BIG_FILE}.dvc"])


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        while block := file.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def push(project: Project, payload: Payload, remote: Remote) -> float:
    remote.empty()
    command = [project.tool("dvc"), "push", "-r", remote.name, *payload.pointers]
    seconds, output = timed(command, project.path, project.env)
    count = len(payload.files)
    if f"{count} file{'s' if count > 1 else ''} pushed" not in output:
        sys.exit(f"ERROR: `dvc push` to the {remote.label} did not push {count} file(s):\n{output}")
    return seconds


def pull(project: Project, payload: Payload, remote: Remote) -> float:
    shutil.rmtree(project.path / ".dvc" / "cache", ignore_errors=True)
    for path in payload.files:
        (project.path / path).unlink()
    command = [project.tool("dvc"), "pull", "-r", remote.name, *payload.pointers]
    seconds, output = timed(command, project.path, project.env)
    for path, expected in payload.files.items():
        if not (project.path / path).is_file() or md5(project.path / path) != expected:
            sys.exit(f"ERROR: `dvc pull` from the {remote.label} did not restore {path}:\n{output}")
    return seconds


def measure(
    project: Project, payload: Payload, remotes: list[Remote], rounds: int, figures: Figures
) -> None:
    """`rounds` rounds of push and pull, the remotes taking turns to go first."""
    print(f"{payload.name}: {rounds} rounds ...", flush=True)
    for round_ in range(rounds):
        order = remotes if round_ % 2 == 0 else remotes[::-1]
        for remote in order:
            pushed = push(project, payload, remote)
            pulled = pull(project, payload, remote)
            figures.seconds.setdefault((payload.name, remote.label, "push"), []).append(pushed)
            figures.seconds.setdefault((payload.name, remote.label, "pull"), []).append(pulled)
            print(
                f"  round {round_ + 1}, {remote.label}: push {pushed:.2f} s, pull {pulled:.2f} s",
                flush=True,
            )
    figures.payloads.append(payload)


def remotes_of(project: Project, store: dict[str, str], folder: Path) -> list[Remote]:
    def empty_bucket() -> None:
        package_script(project, EMPTY_BUCKET, store["endpoint"], store["bucket"])

    def empty_folder() -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()

    dvc(project, "remote", "add", "--local", FOLDER_REMOTE, str(folder))
    return [
        Remote(S3, store["remote"], empty_bucket),
        Remote(FOLDER, FOLDER_REMOTE, empty_folder),
    ]


def run_benchmark(work: Path, args: argparse.Namespace) -> Figures:
    project = set_up(work)
    facts = machine(project, PACKAGES)
    figures = Figures(facts, [], {})
    with object_store(project, work / "s3") as store:
        remotes = remotes_of(project, store, work / "folder-remote")
        facts[f"remote {S3}"] = (
            f"DVC remote `{store['remote']}`, {store['url']}, moto's server at {store['endpoint']}"
        )
        facts[f"remote {FOLDER}"] = (
            f"DVC remote `{FOLDER_REMOTE}` (`dvc remote add --local`), a folder on the same disk"
        )
        size = args.size_mb
        if not args.no_wait:
            print("  waiting for a quiet machine ...", flush=True)
            facts["load average (1, 5, 15 min) before measuring"] = wait_for_quiet()
        else:
            facts["load average (1, 5, 15 min) before measuring"] = load_average()
        # The random file is added after the sample's rounds: each pull empties the cache.
        for payload in (lambda: sample_payload(project), lambda: random_payload(project, size)):
            measure(project, payload(), remotes, args.rounds, figures)
        facts["load average (1, 5, 15 min) at end"] = load_average()
    return figures


def rate(size: int, seconds: float) -> str:
    return f"{size / MIB / seconds:.2f}"


def table(figures: Figures) -> list[str]:
    lines = [
        "| payload | remote | step | median s | min s | median MiB/s | best MiB/s | runs |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for payload in figures.payloads:
        for (name, remote, step), seconds in figures.seconds.items():
            if name != payload.name:
                continue
            middle, least = statistics.median(seconds), min(seconds)
            lines.append(
                f"| {name} | {remote} | `dvc {step}` | {middle:.2f} | {least:.2f} | "
                f"{rate(payload.size, middle)} | {rate(payload.size, least)} | {len(seconds)} |"
            )
    return lines


def report(figures: Figures) -> str:
    lines = [f"- {name}: {value}" for name, value in figures.facts.items()]
    lines += [
        f"- payload {payload.name}: {len(payload.files)} file(s), {payload.size:,} bytes"
        for payload in figures.payloads
    ]
    return "\n".join([*lines, "", *table(figures)])


def as_json(figures: Figures) -> dict[str, Any]:
    return {
        "machine": figures.facts,
        "payloads": {p.name: {"files": list(p.files), "bytes": p.size} for p in figures.payloads},
        "results": [
            {
                "payload": name,
                "remote": remote,
                "step": step,
                "seconds": seconds,
                "median_s": statistics.median(seconds),
                "min_s": min(seconds),
                "median_mib_s": size / MIB / statistics.median(seconds),
                "best_mib_s": size / MIB / min(seconds),
            }
            for (name, remote, step), seconds in figures.seconds.items()
            for size in [next(p.size for p in figures.payloads if p.name == name)]
        ],
    }


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    work = Path(tempfile.mkdtemp(prefix="bench-remotes-"))
    try:
        figures = run_benchmark(work, args)
    finally:
        print(f"removing {work} ...", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(as_json(figures), indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
