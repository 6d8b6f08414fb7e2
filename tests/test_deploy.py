"""deploy/: Kubernetes manifests, Prometheus alerts and a Grafana dashboard for the service.

Fast tier: the manifests against Kubernetes' own schemas (offline, kubernetes-validate), the
image name against what the release workflow pushes, the probes, port and security context
against the service, the volumes' size limits against what they hold, the NetworkPolicy and
the Ingress against the Service, the ServiceMonitor's relabeling against the service's routes
(in a real Prometheus), the rules with promtool and the dashboard's structure. Slow tier: the
service run the way the Deployment runs it, and every metric the PromQL reads in its /metrics.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .conftest import QUIET_ENV, Bake, free_port, make, render, run, wait_for_http

# The oldest Kubernetes the manifests are written for (preStop `sleep` is on by default since
# 1.30), and the newest whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
MANIFESTS = ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml", "networkpolicy.yaml"]
# Shipped beside them, not applied until its host is set.
OPTIONAL = ["ingress.yaml"]
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


def ingress(project: Path) -> dict[str, Any]:
    (document,) = load_yaml_documents(project / "deploy" / "kubernetes" / "ingress.yaml")
    return document


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
    project = bake_case(
        CASES[request.param], tmp_path_factory.mktemp("deploy"), cookiecutter_config
    )
    return project, json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))


def bake_case(answers: dict[str, str], output: Path, cookiecutter_config: Path) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in QUIET_ENV.items():
            patch.setenv(name, value)
        return render(answers, output, cookiecutter_config)


def test_manifests_are_valid_kubernetes(baked: tuple[Path, dict[str, Any]]) -> None:
    project, _ = baked
    kustomization = yaml.safe_load((project / "deploy/kubernetes/kustomization.yaml").read_text())
    assert kustomization["resources"] == MANIFESTS
    assert {path.name for path in (project / "deploy/kubernetes").iterdir()} == {
        *MANIFESTS,
        *OPTIONAL,
        "kustomization.yaml",
    }
    found = resources(project)
    assert set(found) == {
        *("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"),
        "NetworkPolicy",
    }
    for resource in [*found.values(), ingress(project)]:
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
    ci = (project / "src" / answers["package_name"] / "ops" / "ci.py").read_text(encoding="utf-8")
    assert 'REGISTRY = "ghcr.io"' in ci
    assert 'CHAMPION_TAG = "champion"' in ci
    assert 'return f"{REGISTRY}/{owner}/{settings.model_name}".lower()' in ci
    model_name = yaml.safe_load((project / "params.yaml").read_text())["mlflow"]["model_name"]
    image = f"ghcr.io/{answers['github_owner']}/{model_name}".lower()
    # By digest: the Deployment names only the image, the kustomization's `images:` entry of that
    # name gets the digest from the line the release prints, and a node's copy is then right.
    assert service["image"] == image
    assert service["imagePullPolicy"] == "IfNotPresent"
    kustomization = yaml.safe_load((project / "deploy/kubernetes/kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": image}]
    # The release prints the lines that verify and deploy the digest it pushed (`make
    # deploy-notes`), into its job summary and the GitHub release's notes.
    release = (project / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    (step,) = [
        step
        for step in yaml.safe_load(release)["jobs"]["release"]["steps"]
        if step.get("run", "").startswith("make deploy-notes")
    ]
    assert step["run"] == 'make deploy-notes | tee -a reports/gate.md >> "$GITHUB_STEP_SUMMARY"'
    assert step["env"] == {
        "IMAGE": "${{ steps.plan.outputs.image }}",
        "DIGEST": "${{ steps.push.outputs.digest }}",
    }
    digest = "sha256:" + "0123456789abcdef" * 4
    env = {**os.environ, "IMAGE": image, "DIGEST": digest, "GITHUB_REPOSITORY": "o/r"}
    notes = run(["make", "--no-print-directory", "deploy-notes"], project, env).stdout
    assert f'gh attestation verify "oci://{image}@{digest}" --repo "o/r"\n' in notes
    assert f'cd deploy/kubernetes && kustomize edit set image "{image}@{digest}"\n' in notes

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
    assert {env["BENTOML_HOME"], env["INFERENCE_LOG_DIR"], env["FEEDBACK_LOG_DIR"], "/tmp"} <= set(
        mounts
    )

    # SIGTERM: out of the endpoints during preStop, then the longest request, then exit.
    # The service's timeout as it reads it (SERVICE_TIMEOUT_SECONDS), with the Deployment's env.
    timeout = int(env.get("SERVICE_TIMEOUT_SECONDS", service_facts(project)["timeout"]))
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


@cache
def service_facts(project: Path) -> dict[str, Any]:
    """What the baked service itself says: the paths of its routes (BentoML's app, as `bentoml
    serve` builds it), its worker count, traffic timeout and body limit, and its inference log's
    rotation."""
    script = """
import json, sys
from starlette.routing import Route
from _bentoml_impl.server.app import ServiceAppFactory
from {package}.serving import inference_log
from {package}.serving.service import MAX_BODY_BYTES, service
service.inject_config()
app = ServiceAppFactory(service, is_main=True)()
json.dump({{
    "routes": sorted(route.path for route in app.router.routes if isinstance(route, Route)),
    "prefixes": sorted(route.path for route in app.router.routes if not isinstance(route, Route)),
    "workers": service.config.get("workers", 1),
    "timeout": service.config["traffic"]["timeout"],
    "max_body_bytes": MAX_BODY_BYTES,
    "log_max_bytes": inference_log.MAX_BYTES,
    "log_backups": inference_log.BACKUPS,
}}, sys.stdout)
"""
    answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, **QUIET_ENV, "PYTHONPATH": "src", "BENTOML_HOME": home}
        command = [sys.executable, "-c", script.format(package=answers["package_name"])]
        result = run(command, project, env)
    facts: dict[str, Any] = json.loads(result.stdout)
    return facts


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ("1Gi", "768Mi", "500m", "1") as a number."""
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    text = str(value)
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


def test_every_volume_is_capped_at_what_it_holds(baked: tuple[Path, dict[str, Any]]) -> None:
    """An emptyDir without sizeLimit fills the node's disk; the inference log's and the feedback
    log's must each hold every worker's file and its rotated copies."""
    project, _ = baked
    pod = resources(project)["Deployment"]["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for name, volume in volumes.items():
        assert "emptyDir" in volume, name
        assert quantity(volume["emptyDir"]["sizeLimit"]) > 0, name

    facts = service_facts(project)
    service = container(project)
    env = {item["name"]: item["value"] for item in service["env"]}
    max_bytes = int(env.get("INFERENCE_LOG_MAX_BYTES", facts["log_max_bytes"]))
    backups = int(env.get("INFERENCE_LOG_BACKUPS", facts["log_backups"]))
    # BentoML starts `workers` processes (one unless service.py asks for more), each its own file.
    assert isinstance(facts["workers"], int), facts["workers"]
    # A file rotates before the write that would pass max_bytes: one batch may still overshoot it.
    largest_write = facts["max_body_bytes"]
    rotation = facts["workers"] * (backups + 1) * (max_bytes + largest_write)
    # The feedback log rotates with the inference log's settings (serving/feedback_log.py).
    for folder in (env["INFERENCE_LOG_DIR"], env["FEEDBACK_LOG_DIR"]):
        (log_volume,) = [
            mount["name"] for mount in service["volumeMounts"] if mount["mountPath"] == folder
        ]
        assert quantity(volumes[log_volume]["emptyDir"]["sizeLimit"]) >= rotation, folder


def test_only_the_ingress_controller_and_prometheus_reach_the_pods(
    baked: tuple[Path, dict[str, Any]],
) -> None:
    project, _ = baked
    found = resources(project)
    policy = found["NetworkPolicy"]["spec"]
    pod = found["Deployment"]["spec"]["template"]
    assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]  # incoming only; nothing else is allowed in
    (port,) = container(project)["ports"]
    sources = []
    for rule in policy["ingress"]:
        assert rule["ports"] == [{"port": port["name"], "protocol": "TCP"}]
        (source,) = rule["from"]
        # Both selectors in one entry: those pods in that namespace, not either of them.
        assert set(source) == {"namespaceSelector", "podSelector"}
        sources.append(source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
    assert sources == ["ingress-nginx", "monitoring"]


def nginx_size(value: str) -> int:
    """An nginx size ("4m", "512k", "1024") in bytes."""
    factors = {"k": 2**10, "m": 2**20, "g": 2**30}
    unit = value[-1].lower()
    return int(value[:-1]) * factors[unit] if unit in factors else int(value)


def test_the_ingress_publishes_only_predict_within_the_service_limits(
    baked: tuple[Path, dict[str, Any]],
) -> None:
    project, _ = baked
    example = ingress(project)
    found = resources(project)
    facts = service_facts(project)
    assert "/predict" in facts["routes"]
    (rule,) = example["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/predict", "Exact")
    backend = path["backend"]["service"]
    assert backend["name"] == found["Service"]["metadata"]["name"]
    assert backend["port"] == {"name": found["Service"]["spec"]["ports"][0]["name"]}
    assert example["spec"]["ingressClassName"] == "nginx"

    notes = example["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    env = {item["name"]: item["value"] for item in container(project)["env"]}
    limit = int(env.get("SERVICE_MAX_BODY_BYTES", facts["max_body_bytes"]))
    # nginx refuses what the service would refuse anyway, and lets every body it takes through.
    assert limit <= nginx_size(notes[prefix + "proxy-body-size"]) < limit + 2**20
    # nginx holds a slow body, not the service: it passes a request on once it has all of it.
    assert notes[prefix + "proxy-request-buffering"] == "on"
    # The service answers (504 at worst) before nginx gives up on it.
    assert int(notes[prefix + "proxy-read-timeout"]) > facts["timeout"]


def relabel_configs(project: Path) -> list[dict[str, Any]]:
    """The ServiceMonitor's metricRelabelings as the Prometheus Operator writes them into
    Prometheus' scrape configuration (camelCase keys become snake_case)."""
    monitor = yaml.safe_load((project / "deploy/monitoring/servicemonitor.yaml").read_text())
    (endpoint,) = monitor["spec"]["endpoints"]
    return [
        {
            re.sub(r"[A-Z]", lambda match: "_" + match.group().lower(), key): value
            for key, value in rule.items()
        }
        for rule in endpoint["metricRelabelings"]
    ]


@contextmanager
def serving(body: bytes) -> Iterator[str]:
    """`body` at http://127.0.0.1:<port>/metrics, as a Prometheus exposition: host:port."""

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def stored_by_prometheus(
    scrapes: dict[str, tuple[Path, bytes]], tmp_path: Path
) -> dict[str, list[dict[str, str]]]:
    """The label sets a real Prometheus stores from each scrape with its project's
    ServiceMonitor relabeling, by job: Debian's `prometheus` scrapes every target once a second
    until it has stored something of each. One server for them all, since Prometheus hands its
    first targets to the scrapers only after five seconds."""
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's `prometheus` package (`make system-tools` installs it)"
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with ExitStack() as stack:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": job,
                    "static_configs": [{"targets": [stack.enter_context(serving(scrape))]}],
                    "metric_relabel_configs": relabel_configs(project),
                }
                for job, (project, scrape) in scrapes.items()
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        log = tmp_path / "prometheus.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_http(url + "/-/ready", server, seconds=60, log=log)
            stored: dict[str, list[dict[str, str]]] = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for job in scrapes.keys() - stored.keys():
                    query = urllib.parse.urlencode({"match[]": f'{{job="{job}"}}'})
                    with urllib.request.urlopen(f"{url}/api/v1/series?{query}", timeout=5) as got:
                        series: list[dict[str, str]] = json.load(got)["data"]
                    # `up` and the scrape's own series come first; the target's after a full
                    # scrape.
                    if any(not label["__name__"].startswith(("up", "scrape_")) for label in series):
                        stored[job] = series
                if stored.keys() == scrapes.keys():
                    return stored
                time.sleep(0.2)
            pytest.fail(f"Prometheus stored nothing of a target\n{log.read_text()[-4000:]}")
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_prometheus_keeps_only_the_service_routes(
    tmp_path: Path, cookiecutter_config: Path
) -> None:
    """A scan of made-up paths adds no series to Prometheus: the ServiceMonitor keeps the
    `endpoint` values that are the service's own routes, and every series without that label.
    Both cases in one Prometheus."""
    scrapes, routes = {}, {}
    for case, answers in CASES.items():
        project = bake_case(answers, tmp_path / case, cookiecutter_config)
        facts = service_facts(project)
        (rule,) = relabel_configs(project)
        assert (rule["source_labels"], rule["action"]) == (["endpoint"], "keep")
        kept = set(re.fullmatch(r"\((.*)\)\?", rule["regex"]).group(1).split("|"))  # type: ignore[union-attr]
        assert kept == set(facts["routes"])  # exactly the routes: /predict, the probes, the API
        routes[case] = set(facts["routes"])

        made_up = ["/wp-login.php", "/predict/x", "/static_content/../etc", "/PREDICT", ""]
        lines = ["# TYPE bentoml_service_request_total counter"]
        for path in [*facts["routes"], *made_up[:-1]]:
            lines.append(f'bentoml_service_request_total{{endpoint="{path}"}} 1')
        lines += [
            "# TYPE model_rows_scored_total counter",
            'model_rows_scored_total{model_version="1"} 5',
        ]
        scrapes[case] = (project, ("\n".join(lines) + "\n").encode())
    for case, stored in stored_by_prometheus(scrapes, tmp_path / "prometheus").items():
        endpoints = {labels["endpoint"] for labels in stored if "endpoint" in labels}
        assert endpoints == routes[case], case
        assert any(labels["__name__"] == "model_rows_scored_total" for labels in stored), case


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


def assert_every_requirement_is_hashed(requirements: Path) -> None:
    """Every package the image installs carries its sha256 from uv.lock. BentoML appends its own
    `bentoml==<version>` line without one; uv merges it with the hashed pin of the same version
    and checks that pin's hashes (a wrong one fails the install)."""
    from packaging.requirements import Requirement

    entries: dict[str, list[tuple[str, bool]]] = {}
    for line in requirements.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        spec, _, hashes = line.partition(" --hash=")
        parsed = Requirement(spec.strip())
        entries.setdefault(parsed.name.lower(), []).append((str(parsed.specifier), bool(hashes)))
    unhashed = {
        name: pins
        for name, pins in entries.items()
        if not all(hashed or (version, True) in pins for version, hashed in pins)
    }
    assert not unhashed, f"{requirements}: installed without a hash check: {unhashed}"
    assert len(entries) > 20, entries  # the whole closure of the serve group, not a few names


def image_environment(bento: Path, venv: Path, env: dict[str, str]) -> str:
    """A virtual environment holding exactly what the bento's image installs; its `bentoml`."""
    spec = yaml.safe_load((bento / "bento.yaml").read_text(encoding="utf-8"))
    python = spec["image"]["python_version"]
    run(["uv", "venv", "--quiet", "--python", python, str(venv)], bento, env)
    requirements = bento / "env" / "python" / "requirements.txt"
    assert_every_requirement_is_hashed(requirements)
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
    assert container(project)["image"] == named["image"]  # kustomize adds the digest

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
            (bento / "src" / answers["package_name"] / "core" / "schema.yaml").read_text()
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
        ids: list[str] = []
        for count in (1, 3, 5):
            status, body = request(url + "/predict", json.dumps({"rows": rows[:count]}).encode())
            assert status == 200, body
            ids += [item["prediction_id"] for item in json.loads(body)]
        for bad in (b'{"rows": []}', b"not json", json.dumps({"rows": [{"x": 1}]}).encode()):
            assert request(url + "/predict", bad)[0] == 400
        log = Path(env["INFERENCE_LOG_DIR"]) / "inference-1.jsonl"
        lines = log.read_text(encoding="utf-8").splitlines()
        # Each row's line carries the id its answer did, the ground truth's join key.
        assert [json.loads(line)["prediction_id"] for line in lines] == ids
        assert len(set(ids)) == 9
        # Their truth, sent back, lands in the feedback log's own volume.
        target = schema["target"]
        truth = target["values"][0] if "values" in target else target["min"]
        labels = [{"prediction_id": key, "label": truth} for key in ids[:3]]
        status, body = request(url + "/feedback", json.dumps({"labels": labels}).encode())
        assert (status, json.loads(body)) == (200, {"accepted": 3})
        feedback = Path(env["FEEDBACK_LOG_DIR"]) / "feedback-1.jsonl"
        kept = feedback.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["prediction_id"] for line in kept] == ids[:3]
        # What a scanner asks for: BentoML's metrics get a series for it.
        assert request(url + "/wp-login.php")[0] == 404

        status, scrape = request(url + "/metrics")
        assert status == 200
    finally:
        started = time.monotonic()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        stopped = time.monotonic() - started

    assert snapshot(image) == before, "the service wrote outside the Deployment's volumes"
    # Each volume holds what it is sized for (after start-up, requests and shutdown).
    limits = {
        volume["name"]: quantity(volume["emptyDir"]["sizeLimit"])
        for volume in resources(project)["Deployment"]["spec"]["template"]["spec"]["volumes"]
    }
    for mount, folder in volumes.items():
        used = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        name = folder.name
        print(f"volume {name} ({mount}): {used / 2**20:.1f} MiB of {limits[name] / 2**20:.0f}")
        assert used < limits[name] / 4, f"{name}: {used} bytes already"
    # SIGTERM drains and exits well within the grace period left after preStop.
    grace = resources(project)["Deployment"]["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    assert stopped < grace - service["lifecycle"]["preStop"]["sleep"]["seconds"]

    assert_serves_every_queried_metric(project, scrape)
    # The made-up path is in the pod's metrics, and not in what Prometheus keeps of them.
    assert b'endpoint="/wp-login.php"' in scrape
    stored = stored_by_prometheus({"service": (project, scrape)}, tmp_path / "prometheus")[
        "service"
    ]
    endpoints = {labels["endpoint"] for labels in stored if "endpoint" in labels}
    assert "/predict" in endpoints
    assert endpoints <= set(service_facts(project)["routes"])


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
