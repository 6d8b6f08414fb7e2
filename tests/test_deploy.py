"""deploy/: Kubernetes manifests, Prometheus alerts and a Grafana dashboard for the service.

Fast tier: the manifests against Kubernetes' own schemas (offline, kubernetes-validate), the
image name against what the release workflow pushes, the probes, port and security context
against the service, the rules with promtool and the dashboard's structure. Slow tier: the
service run the way the Deployment runs it, and every metric the PromQL reads in its /metrics.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from importlib.resources import files
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cookiecutter.main import cookiecutter

from .conftest import QUIET_ENV, ROOT, Bake, free_port, make, run, wait_for_http

# The oldest Kubernetes the manifests are written for (preStop `sleep` is on by default since
# 1.30), and the newest whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
MANIFESTS = ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"]
# Bakes: the default answers, and another task, owner case and a name that needs JSON escaping.
OTHER = {
    "project_name": 'Churn "Forecast" \\ 数据',
    "task": "regression",
    "github_owner": "My-Org",
}
CASES = {"default": {}, "regression-other-owner": OTHER}
# Series that Prometheus makes itself for every target, not the service.
PROMETHEUS_SERIES = {"up"}
PROMQL_KEYWORDS = {
    *("by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"),
    *("and", "or", "unless", "inf", "nan"),
}


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))]


def resources(project: Path) -> dict[str, dict[str, Any]]:
    """kind -> the resource, for the files the kustomization lists."""
    found: dict[str, dict[str, Any]] = {}
    for name in MANIFESTS:
        for document in load_yaml_documents(project / "deploy" / "kubernetes" / name):
            found[document["kind"]] = document
    return found


def container(project: Path) -> dict[str, Any]:
    (service,) = resources(project)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return service


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, label names or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, may hold anything
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery windows
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)\s*(\()?", text):
        name, call = match.groups()
        if call is None and name.lower() not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def dashboard_exprs(project: Path) -> list[str]:
    dashboard = json.loads((project / "deploy/monitoring/dashboard.json").read_text("utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_exprs(project: Path) -> list[str]:
    rules = yaml.safe_load((project / "deploy/monitoring/alerts.yaml").read_text("utf-8"))
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_metric_names_skips_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{job="x", code=~"5.."}[5m])))'
        " / on (pod) group_left (model_version) max(b_info offset 1h) > bool 0"
        ' unless count(c_total{q="rate(d) e_total"}) and absent(up)'
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_info", "c_total", "up"}


@pytest.fixture(params=list(CASES), scope="module")
def baked(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    cookiecutter_config: Path,
) -> tuple[Path, dict[str, Any]]:
    """(project, its recorded answers), baked once per case for the fast tests below."""
    output = tmp_path_factory.mktemp("deploy")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in QUIET_ENV.items():
            patch.setenv(name, value)
        project = Path(
            cookiecutter(
                str(ROOT),
                no_input=True,
                extra_context=CASES[request.param],
                output_dir=str(output),
                config_file=str(cookiecutter_config),
            )
        )
    return project, json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))


def test_manifests_are_valid_kubernetes(baked: tuple[Path, dict[str, Any]]) -> None:
    project, _ = baked
    kustomization = yaml.safe_load((project / "deploy/kubernetes/kustomization.yaml").read_text())
    assert kustomization["resources"] == MANIFESTS
    assert {path.name for path in (project / "deploy/kubernetes").iterdir()} == {
        *MANIFESTS,
        "kustomization.yaml",
    }
    found = resources(project)
    assert set(found) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for resource in found.values():
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(resource, version, strict=True)


def test_a_wrong_manifest_is_refused_by_the_schemas(baked: tuple[Path, dict[str, Any]]) -> None:
    """The validation above can fail: a typo and a wrong type are both reported."""
    project, _ = baked
    deployment = resources(project)["Deployment"]
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "3000"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_deployment_runs_the_released_image_as_the_service_expects(
    baked: tuple[Path, dict[str, Any]],
) -> None:
    from bentoml._internal.container.generate import BENTO_UID_GID

    project, answers = baked
    found = resources(project)
    pod = found["Deployment"]["spec"]["template"]
    service = container(project)

    # The name `ci image` gives the release workflow's push: ghcr.io/<owner>/<model name>.
    ci = (project / "src" / answers["package_name"] / "ci.py").read_text(encoding="utf-8")
    assert 'REGISTRY = "ghcr.io"' in ci
    assert 'CHAMPION_TAG = "champion"' in ci
    assert 'return f"{REGISTRY}/{owner}/{settings.model_name}".lower()' in ci
    model_name = yaml.safe_load((project / "params.yaml").read_text())["mlflow"]["model_name"]
    image = f"ghcr.io/{answers['github_owner']}/{model_name}".lower()
    assert service["image"] == f"{image}:champion"
    assert service["imagePullPolicy"] == "Always"  # `champion` moves with every release

    # BentoML's port, and the probes it answers (bypassing the concurrency limit).
    defaults = files("bentoml._internal.configuration.v2") / "default_configuration.yaml"
    port = yaml.safe_load(defaults.read_text(encoding="utf-8"))["services"]["http"]["port"]
    assert service["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert service["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert service["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)

    # Not root: the user BentoML's Dockerfile creates; nothing more than it needs.
    assert pod["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": BENTO_UID_GID,
        "runAsGroup": BENTO_UID_GID,
        "fsGroup": BENTO_UID_GID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert service["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["spec"]["automountServiceAccountToken"] is False

    # Read-only image: every folder the service writes to is a volume.
    mounts = {mount["mountPath"]: mount["name"] for mount in service["volumeMounts"]}
    assert sorted(mounts.values()) == sorted(v["name"] for v in pod["spec"]["volumes"])
    env = {item["name"]: item["value"] for item in service["env"]}
    assert {env["BENTOML_HOME"], env["INFERENCE_LOG_DIR"], "/tmp"} <= set(mounts)

    # SIGTERM: out of the endpoints during preStop, then the longest request, then exit.
    source = (project / "src" / answers["package_name"] / "service.py").read_text("utf-8")
    timeout = int(re.search(r'traffic=\{"timeout": (\d+)', source).group(1))  # type: ignore[union-attr]
    pre_stop = service["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["spec"]["terminationGracePeriodSeconds"] >= pre_stop + timeout + 10

    # The other resources point at these pods.
    labels = pod["metadata"]["labels"]
    assert found["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert found["Service"]["spec"]["selector"].items() <= labels.items()
    assert found["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        found["Deployment"]["metadata"]["name"],
    )
    assert "replicas" not in found["Deployment"]["spec"]  # the autoscaler owns it
    assert (
        found["PodDisruptionBudget"]["spec"]["minAvailable"]
        < (found["HorizontalPodAutoscaler"]["spec"]["minReplicas"])
    )
    monitor = yaml.safe_load((project / "deploy/monitoring/servicemonitor.yaml").read_text())
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        found["Service"]["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == found["Service"]["spec"]["ports"][0]["name"]


def promtool_check(rules: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's `prometheus` (`make system-tools` installs it)"
    return subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )


def test_alert_rules_pass_promtool(baked: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    project, answers = baked
    rules = project / "deploy/monitoring/alerts.yaml"
    result = promtool_check(rules)
    assert result.returncode == 0, result.stdout + result.stderr
    for group in yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"]
            assert f'job="{answers["project_slug"]}"' in rule["expr"], rule["alert"]

    # promtool does refuse a broken expression.
    broken = tmp_path / "broken.yaml"
    broken.write_text(rules.read_text(encoding="utf-8").replace("[5m]", "[5m", 1), "utf-8")
    assert promtool_check(broken).returncode != 0


def test_dashboard_panels_query_prometheus(
    baked: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    project, answers = baked
    dashboard = json.loads((project / "deploy/monitoring/dashboard.json").read_text("utf-8"))
    assert dashboard["title"] == answers["project_name"]
    variables = {item["name"]: item for item in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["query"] == answers["project_slug"]
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    titles = {panel["title"] for panel in panels}
    assert {"Model version", "Latency", "Error rate", "Throughput by status"} <= titles
    prediction = "Predicted classes" if answers["task"] == "classification" else "Predicted values"
    assert prediction in titles
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["targets"], panel["title"]
        assert all(target["expr"] for target in panel["targets"])

    # Every expression parses: promtool checks them as recording rules, variables filled in.
    exprs = [
        expr.replace("$__rate_interval", "5m").replace("$job", answers["project_slug"])
        for expr in dashboard_exprs(project)
    ]
    recording = [
        {"record": f"dashboard:panel_{index}", "expr": expr} for index, expr in enumerate(exprs)
    ]
    rules = tmp_path / "dashboard-rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}))
    result = promtool_check(rules)
    assert result.returncode == 0, result.stdout + result.stderr


def snapshot(folders: list[Path]) -> dict[str, tuple[int, int]]:
    """Every file and folder below `folders`: (size, modification time)."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for folder in folders
        for path in [folder, *folder.rglob("*")]
    }


def image_environment(bento: Path, venv: Path, env: dict[str, str]) -> str:
    """A virtual environment holding exactly what the bento's image installs; its `bentoml`."""
    spec = yaml.safe_load((bento / "bento.yaml").read_text(encoding="utf-8"))
    python = spec["image"]["python_version"]
    run(["uv", "venv", "--quiet", "--python", python, str(venv)], bento, env)
    requirements = bento / "env" / "python" / "requirements.txt"
    install = ["uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
    run([*install, "--requirement", str(requirements)], bento, env)
    for absent in ("mlflow", "dvc", "evidently"):
        found = run(
            [str(venv / "bin" / "python"), "-c", f"import {absent}"], bento, env, check=False
        )
        assert found.returncode != 0, f"the image's requirements install {absent}"
    return str(venv / "bin" / "bentoml")


def request(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"content-type": "application/json"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


@pytest.mark.slow
def test_the_service_run_as_the_deployment_runs_it_exposes_every_metric_the_queries_read(
    bake: Bake, bake_env: dict[str, str], tmp_path: Path
) -> None:
    """The bento as the image holds it, served from exactly the packages the image installs,
    with the Deployment's environment, writing only to its volumes; requests good and bad; then
    /metrics against the dashboard's and alerts' PromQL."""
    project = bake(dvc_remote_url=str(tmp_path / "dvc-remote"))
    answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    make(project, bake_env, "setup", "repro", "promote", "bento")

    # The image the release workflow names is the one the Deployment runs.
    owner_env = {
        **bake_env,
        "GITHUB_REPOSITORY_OWNER": answers["github_owner"],
        "GITHUB_SHA": "0" * 40,
    }
    named = dict(line.split("=", 1) for line in make(project, owner_env, "image-name").split())
    assert container(project)["image"] in named["tags"].split(",")

    # The bento as the image holds it (models included).
    archive = tmp_path / "service.bento"
    bentoml = str(project / ".venv" / "bin" / "bentoml")
    store = {**bake_env, "BENTOML_HOME": str(project / ".bentoml")}  # as the Makefile sets it
    run([bentoml, "export", f"{answers['project_slug']}:latest", str(archive)], project, store)
    bento = tmp_path / "bento"
    with tarfile.open(archive) as bundle:
        bundle.extractall(bento, filter="data")
    # What the image installs, and nothing else: a virtual environment made from the bento's
    # own requirements file, on the bento's Python. The project's .venv, which has MLflow, DVC
    # and Evidently, would hide a service that cannot start in its image.
    served_by = image_environment(bento, tmp_path / "image-venv", bake_env)
    # The image's filesystem is read-only: the bento and the home folder must stay as they are
    # (compared afterwards, since file modes do not stop root, which CI runs as).
    home = tmp_path / "home"
    home.mkdir()
    image = [bento, home]
    before = snapshot(image)

    # The Deployment's environment, with its volumes as fresh folders.
    service = container(project)
    volumes = {
        mount["mountPath"]: tmp_path / "volumes" / mount["name"]
        for mount in service["volumeMounts"]
    }
    for folder in volumes.values():
        folder.mkdir(parents=True)

    def on_volume(path: str) -> str:
        (mount,) = [mount for mount in volumes if path == mount or path.startswith(mount + "/")]
        return str(volumes[mount]) + path[len(mount) :]

    # Python leaves out its bytecode cache on a read-only filesystem; here it has to be told.
    env = {
        **bake_env,
        "HOME": str(home),
        "TMPDIR": str(volumes["/tmp"]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for item in service["env"]:
        env[item["name"]] = (
            on_volume(item["value"]) if item["value"].startswith("/") else item["value"]
        )
    port = free_port()
    output = tmp_path / "service.log"
    with output.open("wb") as log_file:
        process = subprocess.Popen(
            [served_by, "serve", str(bento), "--host", "127.0.0.1", "--port", str(port)],
            cwd=volumes["/tmp"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = service["readinessProbe"]["httpGet"]["path"]
        wait_for_http(url + ready, process, seconds=120, log=output)
        assert request(url + service["livenessProbe"]["httpGet"]["path"])[0] == 200

        schema = yaml.safe_load(
            (bento / "src" / answers["package_name"] / "schema.yaml").read_text()
        )
        raw = (
            next((project / "data" / "raw").glob("*.csv")).read_text(encoding="utf-8").splitlines()
        )
        header = raw[0].split(",")
        rows = [
            {
                name: float(value)
                for name, value in zip(header, line.split(","), strict=True)
                if name != schema["target"]["name"]
            }
            for line in raw[1:6]
        ]
        for count in (1, 3, 5):
            status, body = request(url + "/predict", json.dumps({"rows": rows[:count]}).encode())
            assert status == 200, body
        for bad in (b'{"rows": []}', b"not json", json.dumps({"rows": [{"x": 1}]}).encode()):
            assert request(url + "/predict", bad)[0] == 400
        log = Path(env["INFERENCE_LOG_DIR"]) / "inference-1.jsonl"
        assert len(log.read_text(encoding="utf-8").splitlines()) == 9

        status, scrape = request(url + "/metrics")
        assert status == 200
    finally:
        started = time.monotonic()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        stopped = time.monotonic() - started

    assert snapshot(image) == before, "the service wrote outside the Deployment's volumes"
    # SIGTERM drains and exits well within the grace period left after preStop.
    grace = resources(project)["Deployment"]["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    assert stopped < grace - service["lifecycle"]["preStop"]["sleep"]["seconds"]

    assert_serves_every_queried_metric(project, scrape)


def assert_serves_every_queried_metric(project: Path, scrape: bytes) -> None:
    """Every series the dashboard and the alerts read is in a /metrics answer, but the ones
    Prometheus itself makes."""
    from prometheus_client.parser import text_string_to_metric_families

    exposed = {
        sample.name
        for family in text_string_to_metric_families(scrape.decode())
        for sample in family.samples
    }
    wanted = set().union(*map(metric_names, dashboard_exprs(project) + alert_exprs(project)))
    assert wanted - exposed == PROMETHEUS_SERIES
    assert {"model_predictions_total", "bentoml_service_request_duration_seconds_bucket"} <= wanted


def test_alerts_fire_on_what_they_describe_and_not_otherwise(
    baked: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """`promtool test rules` on made-up series: each alert's threshold, from both sides."""
    project, answers = baked
    rules = project / "deploy/monitoring/alerts.yaml"
    by_name = {
        rule["alert"]: rule
        for group in yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    }
    job = answers["project_slug"]

    def requests(code: str, per_minute: int) -> dict[str, str]:
        labels = f'job="{job}", endpoint="/predict", http_response_code="{code}"'
        return {
            "series": f"bentoml_service_request_total{{{labels}}}",
            "values": f"0+{per_minute}x60",
        }

    def fires(name: str, at: str, firing: bool, **series: str) -> dict[str, Any]:
        """The alert at `at`, with the labels of the series it is about (if not aggregated)."""
        rule = by_name[name]
        labels = {**series, **rule["labels"]}
        expected = [{"exp_labels": labels, "exp_annotations": rule["annotations"]}]
        return {"eval_time": at, "alertname": name, "exp_alerts": expected if firing else []}

    def version(pod: str, number: str) -> dict[str, str]:
        labels = f'job="{job}", pod="{pod}", model_version="{number}"'
        return {"series": f"model_version_info{{{labels}}}", "values": "1x60"}

    scenarios = [
        # 10% server errors: fires once it has lasted 5 minutes; 1% never does.
        (
            [requests("200", 90), requests("500", 10)],
            [
                fires("ModelServiceHighErrorRate", "4m", False),
                fires("ModelServiceHighErrorRate", "15m", True),
            ],
        ),
        (
            [requests("200", 99), requests("500", 1)],
            [fires("ModelServiceHighErrorRate", "15m", False)],
        ),
        (
            [requests("200", 70), requests("400", 30)],
            [
                fires("ModelServiceManyRejectedRequests", "40m", True),
                fires("ModelServiceHighErrorRate", "40m", False),
            ],
        ),
        # A pod that stops answering.
        (
            [{"series": f'up{{job="{job}", pod="a"}}', "values": "1 1 0x30"}],
            [
                fires("ModelServiceDown", "3m", False),
                fires("ModelServiceDown", "10m", True, job=job, pod="a"),
            ],
        ),
        # Two versions for longer than a rollout takes.
        (
            [version("a", "3"), version("b", "4")],
            [fires("ModelVersionsMixed", "20m", False), fires("ModelVersionsMixed", "45m", True)],
        ),
        ([version("a", "3"), version("b", "3")], [fires("ModelVersionsMixed", "45m", False)]),
    ]
    tests = [
        {"interval": "1m", "input_series": series, "alert_rule_test": checks}
        for series, checks in scenarios
    ]
    unit = tmp_path / "alerts-test.yaml"
    unit.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests})
    )
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's `prometheus` (`make system-tools` installs it)"
    result = subprocess.run(
        [promtool, "test", "rules", str(unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
