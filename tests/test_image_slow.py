"""Slow tier: the service's real image. Built by `make container BACKEND=buildah` (BentoML's own
Dockerfile), pushed with the tags `make image-name` computes to a registry on 127.0.0.1, pulled
back and run with podman the way deploy/kubernetes/deployment.yaml runs it.

No Docker daemon and no Docker Hub are needed. The bentofile names its base by digest
(`python:3.11-slim@sha256:...`), which cannot be pulled here and which no image made here can
have: the test checks that pin, then writes the same name without the digest into the bake's
bentofile, and makes that image from Debian's packages with mmdebstrap, in a container storage
of these tests' own under build/, where it stays between runs (rebuilt when its recipe or the
host's CA bundle changes). The FROM line is the only difference from the Dockerfile that ships,
which the test checks against the Dockerfile BentoML generates from the pinned bentofile.
"""

from __future__ import annotations

import hashlib
import json
import re
import resource
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from .conftest import STORE, Bake, free_port, make, run, wait_for_http
from .test_deploy import assert_serves_every_queried_metric, container, quantity
from .test_deploy import resources as manifests

pytestmark = pytest.mark.slow
# The Debian release whose python3 is the version a python:3.X-slim base carries.
DEBIAN_PYTHON = {"3.11": "bookworm"}
BASE_KEY_LABEL = "org.mlops-template.base-key"
# The host's trust store: package downloads from inside the build may pass a TLS-intercepting
# proxy. Copied into the base image only, never into the generated project.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def base_recipe(suite: str) -> dict[str, Any]:
    """How the stand-in for python:3.X-slim is made: Debian's python3 as `python`, `python3`,
    `pip`; no PEP 668 marker (the official image has none, and the Dockerfile pip-installs uv);
    SSL_CERT_FILE so that uv, which has its own roots, trusts the host's CA bundle too."""
    return {
        "suite": suite,
        # None given: mmdebstrap's default Debian mirror, with updates and security for a
        # stable release, as the host's own apt sources have.
        "sources": [],
        "include": ["ca-certificates", "python3", "python3-pip", "python-is-python3"],
        "hooks": [
            'mkdir -p "$1/usr/local/share/ca-certificates"',
            f'cp {HOST_CA_BUNDLE} "$1/usr/local/share/ca-certificates/host.crt"',
            'chroot "$1" update-ca-certificates',
            'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
        ],
        "changes": [
            "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            f"ENV SSL_CERT_FILE={HOST_CA_BUNDLE}",
            'CMD ["python3"]',
        ],
    }


def base_image(dockerfile: Path, env: dict[str, str], tmp_path: Path) -> str:
    """The image the Dockerfile's FROM names, made from Debian's packages unless a current one is
    in the tests' storage already."""
    (line,) = [text for text in dockerfile.read_text("utf-8").splitlines() if text[:5] == "FROM "]
    name = line.split()[1]  # python:3.11-slim
    version = name.removeprefix("python:").removesuffix("-slim")
    assert version in DEBIAN_PYTHON, f"no Debian release here ships the python3 of {name}"
    reference = f"docker.io/library/{name}"
    recipe = base_recipe(DEBIAN_PYTHON[version])
    key = hashlib.sha256(
        json.dumps(recipe, sort_keys=True).encode() + HOST_CA_BUNDLE.read_bytes()
    ).hexdigest()
    label = f'{{{{index .Labels "{BASE_KEY_LABEL}"}}}}'
    found = run(
        ["podman", "image", "inspect", "--format", label, reference], STORE, env, check=False
    )
    if found.returncode == 0 and found.stdout.strip() == key:
        return reference
    rootfs = tmp_path / "base.tar"
    hooks = [f"--customize-hook={hook}" for hook in recipe["hooks"]]
    include = ",".join(recipe["include"])
    command = ["mmdebstrap", "--variant=minbase", f"--include={include}", *hooks]
    run([*command, recipe["suite"], str(rootfs), *recipe["sources"]], tmp_path, env)
    changes = [*recipe["changes"], f"LABEL {BASE_KEY_LABEL}={key}"]
    run(
        ["podman", "import", *(f"--change={c}" for c in changes), str(rootfs), reference],
        tmp_path,
        env,
    )
    rootfs.unlink()
    return reference


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1: host:port."""
    port = free_port()
    config = tmp_path / "registry.yaml"
    settings = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "only-for-this-test"},
    }
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    log = tmp_path / "registry.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/", server, seconds=30, log=log)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def machine_limits() -> list[str]:
    """runc sets every limit podman asks for, and without CAP_SYS_RESOURCE cannot raise a hard
    limit: podman's default (1048576 open files and processes) fails on a machine whose hard
    limits are lower. Ask for what podman itself runs with: the hard open-file limit, and
    processes capped at the kernel's pid_max (podman lowers its own limit to that)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text(encoding="utf-8"))
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = pid_max if nproc == resource.RLIM_INFINITY else min(nproc, pid_max)
    return [f"--ulimit=nofile={nofile}:{nofile}", f"--ulimit=nproc={nproc}:{nproc}"]


def as_the_deployment_runs_it(project: Path, volumes: Path) -> list[str]:
    """`podman run` options from deploy/kubernetes/deployment.yaml: user and groups, read-only
    root, dropped capabilities, no privilege escalation, env, CPU and memory limits, and each
    volume as a fresh folder owned by the fsGroup (an emptyDir)."""
    pod = manifests(project)["Deployment"]["spec"]["template"]["spec"]
    user, service = pod["securityContext"], container(project)
    assert user["runAsNonRoot"]
    assert user["runAsUser"] != 0
    options = [f"--user={user['runAsUser']}:{user['runAsGroup']}"]
    options.append(f"--group-add={user['fsGroup']}")
    security = service["securityContext"]
    if security["readOnlyRootFilesystem"]:
        # Kubernetes adds no writable /run or /var/tmp the way podman's --read-only does.
        options += ["--read-only", "--read-only-tmpfs=false"]
    if not security["allowPrivilegeEscalation"]:
        options.append("--security-opt=no-new-privileges")
    options += [f"--cap-drop={cap}" for cap in security["capabilities"].get("drop", [])]
    options += [f"--cap-add={cap}" for cap in security["capabilities"].get("add", [])]
    options += [f"--env={item['name']}={item['value']}" for item in service["env"]]
    limits = service["resources"]["limits"]
    options += [f"--memory={int(quantity(limits['memory']))}", f"--cpus={quantity(limits['cpu'])}"]
    for mount in service["volumeMounts"]:
        folder = volumes / mount["name"]
        folder.mkdir(parents=True)
        shutil.chown(folder, 0, user["fsGroup"])
        folder.chmod(0o2770)  # writable through the fsGroup only, as Kubernetes sets it up
        options.append(f"--volume={folder}:{mount['mountPath']}")
    return options


def call(url: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers in lower case, body) of a GET, or of a JSON POST when `body` is given."""
    headers = {"content-type": "application/json"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def release_tags(project: Path, registry: str, env: dict[str, str]) -> dict[str, Any]:
    """`make image-name`, as the release workflow runs it, moved from ghcr.io to `registry`:
    {"image": name, "version": champion's version, "tags": [name:tag, ...]}."""
    answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    owner_env = {**env, "GITHUB_REPOSITORY_OWNER": answers["github_owner"]}
    owner_env["GITHUB_SHA"] = "0123456789abcdef" * 2 + "01234567"
    named = dict(line.split("=", 1) for line in make(project, owner_env, "image-name").split())
    released = [named["image"], *named["tags"].split(",")]
    assert all(name.startswith("ghcr.io/") for name in released), released
    image, *tags = [f"{registry}/{name.removeprefix('ghcr.io/')}" for name in released]
    return {"image": image, "version": named["version"], "tags": tags, "ghcr": named["image"]}


def push(tags: list[str], registry: str, env: dict[str, str], folder: Path) -> str:
    """Push every tag; the registry lists each, all pointing at one manifest: its digest."""
    digests = set()
    for tag in tags:
        digest = folder / "digest"
        command = ["podman", "push", "--quiet", "--tls-verify=false", f"--digestfile={digest}"]
        run([*command, tag], folder, env)
        digests.add(digest.read_text(encoding="utf-8").strip())
    assert len(digests) == 1, digests
    repository = tags[0].removeprefix(f"{registry}/").rsplit(":", 1)[0]
    listed = json.loads(call(f"http://{registry}/v2/{repository}/tags/list")[2])["tags"]
    assert sorted(listed) == sorted(tag.rsplit(":", 1)[1] for tag in tags)
    inspect = ["skopeo", "inspect", "--tls-verify=false", "--format={{.Digest}}"]
    for tag in tags:
        assert run([*inspect, f"docker://{tag}"], folder, env).stdout.strip() in digests
    (digest,) = digests
    return digest


PINNED_BASE = re.compile(r"(python:3\.\d+-slim)@sha256:[0-9a-f]{64}")


def unpinned_base(project: Path) -> tuple[str, str]:
    """(the bentofile's pinned base, the same name without its digest), after writing the latter
    into the bake's bentofile.yaml: Docker Hub's image by digest cannot be had here, and the
    stand-in made from Debian's packages cannot have its digest."""
    bentofile = project / "bentofile.yaml"
    text = bentofile.read_text(encoding="utf-8")
    pinned = yaml.safe_load(text)["docker"]["base_image"]
    match = PINNED_BASE.fullmatch(pinned)
    assert match, f"bentofile.yaml: docker.base_image {pinned} is not pinned by digest"
    bentofile.write_text(text.replace(pinned, match.group(1)), encoding="utf-8")
    return pinned, match.group(1)


def assert_only_the_base_differs(
    project: Path, dockerfile: Path, pinned: str, env: dict[str, str]
) -> None:
    """The Dockerfile built here, line by line, is the one BentoML generates for this bento with
    the shipped bentofile's base image, but for its FROM line."""
    script = (
        "import sys, yaml; from pathlib import Path\n"
        "from bentoml._internal.bento.bento import ImageInfo\n"
        "from _bentoml_impl.docker import generate_dockerfile\n"
        "bento = Path(sys.argv[2])\n"
        "spec = yaml.safe_load((bento / 'bento.yaml').read_text())\n"
        "assert not spec.get('envs'), spec['envs']\n"
        "image = ImageInfo(**{**spec['image'], 'base_image': sys.argv[1]})\n"
        "print(generate_dockerfile(image, bento, enable_buildkit=False, envs=[], secret_envs=[]),"
        " end='')"
    )
    python = str(project / ".venv" / "bin" / "python")
    shipped = run([python, "-c", script, pinned, str(dockerfile.parents[2])], project, env).stdout
    built = dockerfile.read_text(encoding="utf-8")
    differ = [
        (ours, theirs)
        for ours, theirs in zip(built.splitlines(), shipped.splitlines(), strict=True)
        if ours != theirs
    ]
    (base,) = [line for line in shipped.splitlines() if line.startswith("FROM ")]
    assert differ == [(base.replace(pinned, pinned.split("@")[0]), base)], differ


@contextmanager
def running(
    command: list[str], name: str, env: dict[str, str], grace: int, log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """(the attached `podman run`, what stopping it did): on leaving, `podman stop` sends SIGTERM
    and SIGKILL after `grace` seconds, as Kubernetes does after preStop; then the container goes."""
    stopped: dict[str, Any] = {}
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield process, stopped
    finally:
        started = time.monotonic()
        stop = run(["podman", "stop", f"--time={grace}", name], log.parent, env, check=False)
        stopped["seconds"] = time.monotonic() - started
        stopped["error"] = stop.stderr.strip() if stop.returncode else ""
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        inspect = ["podman", "inspect", "--format={{.State.ExitCode}}", name]
        stopped["exit code"] = run(inspect, log.parent, env, check=False).stdout.strip()
        run(["podman", "rm", "--force", name], log.parent, env, check=False)


def sample_rows(project: Path) -> list[dict[str, float]]:
    """The first five rows of the raw data, without the target: what a client sends."""
    bento = next((project / ".bentoml" / "bentos").glob("*/*/bento.yaml")).parent
    package = json.loads((project / ".cookiecutter.json").read_text("utf-8"))["package_name"]
    schema = yaml.safe_load((bento / "src" / package / "core" / "schema.yaml").read_text("utf-8"))
    raw = next((project / "data" / "raw").glob("*.csv")).read_text("utf-8").splitlines()
    header = raw[0].split(",")
    return [
        {
            name: float(value)
            for name, value in zip(header, line.split(","), strict=True)
            if name != schema["target"]["name"]
        }
        for line in raw[1:6]
    ]


def test_the_image_builds_pushes_with_the_release_tags_and_serves_as_the_deployment_runs_it(
    bake: Bake, bake_env: dict[str, str], engine_env: dict[str, str], registry: str, tmp_path: Path
) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    project = bake(dvc_remote_url=str(tmp_path / "dvc-remote"))
    pinned, unpinned = unpinned_base(project)
    make(project, bake_env, "setup", "repro", "promote", "bento")
    release = release_tags(project, registry, bake_env)
    timings["bake; make setup repro promote bento image-name"] = time.monotonic() - started

    # The base the bento's Dockerfile names; a container runtime that cannot run it is why the
    # test skips, in podman's words.
    started = time.monotonic()
    dockerfile = next((project / ".bentoml" / "bentos").glob("*/*/env/docker/Dockerfile"))
    assert_only_the_base_differs(project, dockerfile, pinned, bake_env)
    base = base_image(dockerfile, engine_env, tmp_path)
    assert base == f"docker.io/library/{unpinned}"
    runtime = ["--runtime=runc", *machine_limits()]
    probe = ["podman", "run", "--rm", *runtime, base, "true"]
    tried = run(probe, tmp_path, engine_env, check=False)
    if tried.returncode != 0:
        pytest.skip(f"podman cannot run a container here: {tried.stderr.strip()}")
    timings["base image (kept in build/image-test/ while current)"] = time.monotonic() - started

    # `make container` on buildah, then the release's tags pushed.
    started = time.monotonic()
    tags = release["tags"]
    container_make = ["make", "container", "BACKEND=buildah", f"TAGS={','.join(tags)}"]
    run(container_make, project, engine_env, timeout=1800)
    timings["make container BACKEND=buildah"] = time.monotonic() - started
    started = time.monotonic()
    digest = push(tags, registry, engine_env, tmp_path)
    timings["push every tag"] = time.monotonic() - started

    # The image the Deployment names, pulled back from the registry (nothing of it left here),
    # whose own user is the one the manifest runs as.
    started = time.monotonic()
    run(["podman", "rmi", *tags], tmp_path, engine_env)
    service = container(project)
    # The reference the release's notes give (`make deploy-notes`), which kustomize writes
    # over the Deployment's image name: the pushed digest.
    assert service["image"] == release["ghcr"]
    notes_env = {**bake_env, "IMAGE": release["ghcr"], "DIGEST": digest}
    notes = make(project, notes_env, "deploy-notes")
    (reference,) = re.findall(r'kustomize edit set image "([^"]+)"', notes)
    assert reference == f"{release['ghcr']}@{digest}"
    deployed = reference.replace(release["ghcr"], release["image"], 1)
    pull = ["--pull=always", "--tls-verify=false", *runtime]
    pod = manifests(project)["Deployment"]["spec"]["template"]["spec"]
    whoami = ["podman", "run", "--rm", *pull, "--entrypoint=id", deployed]
    ids = run(whoami, tmp_path, engine_env).stdout
    assert f"uid={pod['securityContext']['runAsUser']}(" in ids
    assert f"gid={pod['securityContext']['runAsGroup']}(" in ids

    # Run as the Deployment runs it, published on 127.0.0.1 only.
    volumes = tmp_path / "volumes"
    port = free_port()
    name = f"image-test-{port}"
    (http,) = service["ports"]
    command = [
        *("podman", "run", f"--name={name}", *pull, *as_the_deployment_runs_it(project, volumes)),
        *(f"--publish=127.0.0.1:{port}:{http['containerPort']}", deployed),
    ]
    grace = pod["terminationGracePeriodSeconds"]
    grace -= service["lifecycle"]["preStop"]["sleep"]["seconds"]
    url = f"http://127.0.0.1:{port}"
    version = release["version"]
    log = tmp_path / "container.log"
    with running(command, name, engine_env, grace, log) as (process, stopped):
        wait_for_http(url + service["readinessProbe"]["httpGet"]["path"], process, 180, log)
        timings["pull and start until ready"] = time.monotonic() - started
        assert call(url + service["livenessProbe"]["httpGet"]["path"])[0] == 200
        assert call(url + service["startupProbe"]["httpGet"]["path"])[0] == 200

        params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
        client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
        champion = client.get_model_version_by_alias(params["mlflow"]["model_name"], "champion")
        assert str(champion.version) == version
        rows = sample_rows(project)
        ids: list[str] = []
        for count in (1, 3, 5):
            status, headers, answer = call(
                url + "/predict", json.dumps({"rows": rows[:count]}).encode()
            )
            assert status == 200, answer
            assert headers["x-model-version"] == version
            assert len(json.loads(answer)) == count
            ids += [item["prediction_id"] for item in json.loads(answer)]
        for bad in (b'{"rows": []}', b"not json", json.dumps({"rows": [{"x": 1}]}).encode()):
            status, headers, answer = call(url + "/predict", bad)
            assert status == 400, answer
            assert headers["x-model-version"] == version
        status, _, scrape = call(url + "/metrics")
        assert status == 200

    assert not stopped["error"], stopped["error"]
    assert stopped["seconds"] < grace, f"SIGTERM: stopped after {stopped['seconds']:.1f} s"
    assert stopped["exit code"] == "0", log.read_text(encoding="utf-8")[-4000:]
    # Every scored row, in the inference log's volume.
    env = {item["name"]: item["value"] for item in service["env"]}
    (inference,) = [
        mount["name"]
        for mount in service["volumeMounts"]
        if mount["mountPath"] == env["INFERENCE_LOG_DIR"]
    ]
    logs = (volumes / inference).glob("inference-*.jsonl")
    lines = [line for path in logs for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 9
    # Each row's line carries the id its answer did, the ground truth's join key; none repeats.
    assert sorted(json.loads(line)["prediction_id"] for line in lines) == sorted(ids)
    assert len(set(ids)) == 9
    assert_serves_every_queried_metric(project, scrape)
    print("\n".join(f"{seconds:7.1f} s  {step}" for step, seconds in timings.items()))
