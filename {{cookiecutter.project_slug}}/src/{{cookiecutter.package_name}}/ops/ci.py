"""`ci`: what the GitHub workflows need beyond the pipeline's own commands.

- `ci remotes [--read-only]`: use DVC_REMOTE_URL as the DVC remote when it is set, and say which
  MLflow and DVC remotes this run uses (in the job summary too), embedded defaults included. With
  `--read-only` (pull requests), fail unless the MLflow user can only read the model.
- `ci report --base REF`: the pull request's report: metrics and parameters against REF, the
  gate's verdict, where the plots are. Written to reports/pr-comment.md and the job summary.
- `ci drift`: reports/drift.md from reports/drift.json (job summary, issue body); prints
  `drift=true` or `drift=false` for GITHUB_OUTPUT.
- `ci image`: the champion's image on GHCR and its tags, as `key=value` lines for GITHUB_OUTPUT.
- `ci plan`: whether this release run publishes the challenger (`publish=true|false`), and its
  version, image and tags; the job summary says why when it publishes nothing.

Outside GitHub Actions they print the same; GITHUB_STEP_SUMMARY is only written when it is set.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ..core.config import (
    CHALLENGER,
    CHAMPION,
    GATE_REPORT,
    METRICS_FILE,
    MlflowParams,
    embedded_store,
    load_params,
    tracking_uri,
    without_credentials,
)
from ..core.drift_summary import DriftSummary
from ..core.errors import DataError, ProjectError
from ..core.files import write_text_atomic
from ..core.monitor_summary import MonitorSummary

PR_COMMENT = Path("reports/pr-comment.md")
DRIFT_MARKDOWN = Path("reports/drift.md")
MONITOR_MARKDOWN = Path("reports/monitor.md")
PLOTS = Path("dvc_plots")
REGISTRY = "ghcr.io"
CHAMPION_TAG = "champion"


def _run(*command: str) -> str:
    return _run_together(list(command))[0]


def _run_together(*commands: list[str]) -> list[str]:
    """Run the commands at the same time (each DVC command pays its own start-up); their outputs."""
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    outputs = []
    for command, process in zip(commands, processes, strict=True):
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            reason = (stderr.strip().splitlines() or ["no output"])[-1]
            raise ProjectError(f"`{' '.join(command)}` failed: {reason}")
        outputs.append(stdout.strip())
    return outputs


def summarise(markdown: str) -> None:
    """Add `markdown` to the job summary on GitHub Actions."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with Path(summary).open("a", encoding="utf-8") as file:
            file.write(markdown + "\n")


def remotes(read_only: bool = False) -> str:
    """Point DVC at DVC_REMOTE_URL when set; describe both remotes in markdown.

    With `read_only`, first check the MLflow user cannot change the registry (a pull request's
    code runs with it).
    """
    params = load_params().mlflow
    user = ""
    if read_only:
        from .mlflow_users import readable_only

        user = f", as {readable_only(params)}"
    url = os.environ.get("DVC_REMOTE_URL")
    if url:
        _run("dvc", "remote", "modify", "--local", "storage", "url", url)
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    uri = tracking_uri(params)
    default = "" if configured else " (params.yaml's default)"
    mlflow = f"`{without_credentials(uri)}`{default}{user}"
    # Every level of DVC's config, the later overriding the earlier: `dvc remote list` would wrap
    # a long URL at the terminal's width.
    listed = _run("dvc", "config", "--list").splitlines()
    settings = dict(line.split("=", 1) for line in listed if "=" in line)
    remote = settings.get("core.remote")
    remote_url = settings.get(f"remote.{remote}.url") if remote else None
    storage = f"`{without_credentials(remote_url)}`" if remote_url else "none"
    lines = [
        "### Remotes",
        "",
        f"- MLflow tracking: {mlflow}",
        f"- DVC storage: {storage}" + ("" if url else " (.dvc/config's default)"),
    ]
    if not configured or not url:
        lines += [
            "",
            "Set the repository variables `MLFLOW_TRACKING_URI` and `DVC_REMOTE_URL`, and the "
            "secrets `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` of the "
            "`mlflow-read` and `production` environments (`make mlflow-users` creates both "
            "users), to share models and data between runs; until then each run starts from "
            "an empty embedded registry.",
        ]
    return "\n".join(lines) + "\n"


def _has_rows(table: str) -> bool:
    """Whether a markdown table has a row under its header (`dvc params diff --md` prints the
    header alone when nothing changed)."""
    return len([line for line in table.splitlines() if line.startswith("|")]) > 2


def report(base: str) -> str:
    """Metrics and parameters against `base`, then the gate's report."""
    # Every model metric, changed or not; the drift summary's line is in the gate's report.
    metrics_diff = ["dvc", "metrics", "diff", base, "--all", "--md", "--precision", "4"]
    metrics, params, _ = _run_together(
        [*metrics_diff, "--targets", str(METRICS_FILE)],
        ["dvc", "params", "diff", base, "--md"],
        ["dvc", "plots", "diff", base, "--out", str(PLOTS)],
    )
    gate = GATE_REPORT.read_text(encoding="utf-8") if GATE_REPORT.exists() else ""
    return "\n".join(
        [
            "## Model report",
            "",
            f"Compared with `{base[:12]}`.",
            "",
            "### Metrics",
            "",
            metrics or "No metric changed.",
            "",
            "### Parameters",
            "",
            params if _has_rows(params) else "No parameter changed.",
            "",
            gate.replace("## Release gate", "### Release gate", 1) if gate else "No gate report.",
            "",
            f"Plots: the `reports` artifact of this run holds `{PLOTS}/index.html`.",
            "",
        ]
    )


def drift() -> tuple[bool, str]:
    """Whether the drift stage found drift, and its markdown account with where the report is."""
    summary = DriftSummary.read()
    artifact = "The HTML report is in the `monitor-report` artifact of this run."
    return summary.drift, f"{summary.markdown()}\n{artifact}\n"


def monitor() -> tuple[str, str]:
    """`alert=` (production quality fell below a floor) and `retrain=` (that, or drift, with
    enough labelled rows to learn from), and the markdown account of production quality."""
    summary = MonitorSummary.read()
    try:
        drifted = DriftSummary.read().drift
    except DataError:
        drifted = False
    labelled = summary.labelled >= summary.min_labelled
    retrain = labelled and (summary.alert or drifted)
    artifact = "The HTML report is in the `monitor-report` artifact of this run."
    outputs = f"alert={str(summary.alert).lower()}\nretrain={str(retrain).lower()}\n"
    return outputs, f"{summary.markdown()}\n{artifact}\n"


def registry_version(version: str) -> str:
    """A version number from the registry, checked before it names an image or a release."""
    if not version.isdigit() or not version.isascii():
        raise ProjectError(f"the registry gave {version!r} as a version number")
    return version


def image_name(settings: MlflowParams) -> str:
    owner = os.environ.get("GITHUB_REPOSITORY_OWNER", "local")
    return f"{REGISTRY}/{owner}/{settings.model_name}".lower()


def image_tags(name: str, version: str, *extra: str) -> str:
    """`<image>:v<version>`, `<image>:<commit>` and the `extra` tags, comma-separated."""
    sha = os.environ.get("GITHUB_SHA", "")[:12] or _run("git", "rev-parse", "--short=12", "HEAD")
    return ",".join(f"{name}:{tag}" for tag in (f"v{version}", sha.strip(), *extra))


def image() -> str:
    """`image=ghcr.io/<owner>/<name>`, `version=<champion>`, `tags=<image>:<tag>,...`."""
    from ..release.registry import client, version_by_alias

    settings = load_params().mlflow
    name = image_name(settings)
    version = version_by_alias(client(settings), settings.model_name, CHAMPION)
    if version is None:
        raise ProjectError(f"{settings.model_name}: no champion to ship; run `make promote`")
    tags = image_tags(name, registry_version(version), CHAMPION_TAG)
    return f"image={name}\nversion={version}\ntags={tags}\n"


def not_new(version: str, champion: str | None, tags: dict[str, str]) -> str | None:
    """Why registered `version` (with its `tags`) is no new release; None when it is one."""
    from ..release.registry import REPLACED, ROLLBACK_REASON, ROLLED_BACK

    if version == champion:
        return (
            f"version {version}, already the champion: the model is unchanged since it was "
            "released, so there is nothing new to publish"
        )
    if tags.get(ROLLED_BACK) == "true":
        reason = tags.get(ROLLBACK_REASON)
        return (
            f"version {version}, which was rolled back{f' ({reason})' if reason else ''}; it "
            "stays out until someone forces it back with "
            f'`make promote VERSION={version} REASON="..."`'
        )
    if REPLACED in tags:
        return (
            f"version {version}, which was released before and has since been replaced; it is "
            f'not published again (`make promote VERSION={version} REASON="..."` brings it back)'
        )
    return None


def plan() -> tuple[str, str]:
    """Whether this release run publishes the challenger: `key=value` lines, and the markdown
    that says what it publishes or why nothing. A version number is published only if the next
    run will remember it, and only for a model never released before."""
    settings = load_params().mlflow
    uri = tracking_uri(settings)
    if embedded_store(uri) is not None:
        return "publish=false\n", (
            "### Release: nothing published\n\n"
            f"This run's MLflow registry is `{uri}`, a file on the runner that is gone when the "
            "job ends: the version numbers it gives would be forgotten and reused by the next "
            "run, so no image tag or release is published under them. The pipeline ran and the "
            "model was registered in that file. To publish versioned images and releases, set "
            "the repository variable `MLFLOW_TRACKING_URI` to a shared MLflow server and the "
            "`production` environment's secrets `MLFLOW_TRACKING_USERNAME` and "
            "`MLFLOW_TRACKING_PASSWORD` (the README: Sharing).\n"
        )
    from ..release.registry import client, registry_errors, version_by_alias

    registry, model = client(settings), settings.model_name
    with registry_errors(settings):
        version = version_by_alias(registry, model, CHALLENGER)
        if version is None:
            raise ProjectError(f"{model}: no challenger to publish; run `make register` first")
        tags = dict(registry.get_model_version(model, version).tags)
        champion = version_by_alias(registry, model, CHAMPION)
    version = registry_version(version)
    why_not = not_new(version, champion, tags)
    if why_not is not None:
        return f"publish=false\nversion={version}\n", (
            f"### Release: nothing published\n\nThe model of this commit is {model} {why_not}.\n"
        )
    name = image_name(settings)
    return f"publish=true\nversion={version}\nimage={name}\ntags={image_tags(name, version)}\n", (
        f"### Release: {model} version {version}\n\nA new model version: if it passes the gate, "
        f"its image is published as `{name}:v{version}` and it becomes the champion.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ci", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    shared = commands.add_parser("remotes", help="use DVC_REMOTE_URL; say which remotes are used")
    shared.add_argument(
        "--read-only", action="store_true", help="fail unless the MLflow user can only read"
    )
    compare = commands.add_parser("report", help="write the pull request's report")
    compare.add_argument("--base", required=True, help="the git revision to compare with")
    commands.add_parser("drift", help="write reports/drift.md; print drift=true|false")
    commands.add_parser(
        "monitor", help="write reports/monitor.md; print alert= and retrain=true|false"
    )
    commands.add_parser("image", help="the champion's image and tags, for GITHUB_OUTPUT")
    commands.add_parser("plan", help="whether this release publishes the challenger, and how")
    args = parser.parse_args(argv)
    if args.command == "remotes":
        text = remotes(args.read_only)
        summarise(text)
    elif args.command == "report":
        text = report(args.base)
        write_text_atomic(PR_COMMENT, text)
        summarise(text)
    elif args.command == "drift":
        drifted, markdown = drift()
        write_text_atomic(DRIFT_MARKDOWN, markdown)
        summarise(markdown)
        text = f"drift={str(drifted).lower()}\n"
    elif args.command == "monitor":
        text, markdown = monitor()
        write_text_atomic(MONITOR_MARKDOWN, markdown)
        summarise(markdown)
    elif args.command == "plan":
        text, markdown = plan()
        summarise(markdown)
        print(markdown, end="", file=sys.stderr)
    else:
        text = image()
    print(text, end="")
    return 0
