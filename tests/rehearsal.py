"""Run a generated workflow's job on this machine, the way a GitHub runner would.

`act` needs a Docker daemon, which this machine lacks, so this is our own, small runner. For one
job it evaluates the `${{ }}` expressions the workflows use, sets GITHUB_OUTPUT, GITHUB_ENV,
GITHUB_STEP_SUMMARY, GITHUB_WORKSPACE and the event context as the runner does, runs each
`run:` step with `bash -eo pipefail` in the baked project, honours `if:` conditions, step
outcomes and job outputs, runs the repository's own composite actions (`uses: $/<path>` or
`./<path>`) step by step, and replaces each other `uses:` step with a documented local
equivalent:

- a composite action of the repository (`<path>/action.yml` in the checkout, which is the
  running commit): its steps in order, with its own `inputs` (the declared defaults, then the
  step's `with:`; an undeclared one fails the step) and `steps` contexts and no `vars`,
  `secrets` or `needs` (GitHub refuses those in an action); `run:` steps need `shell: bash`;
  its `success()` and `failure()` look at its own steps; its `outputs` become the step's;
- actions/checkout: the baked repository is the checkout;
- actions/setup-python, astral-sh/setup-uv: the machine's Python (its version is the
  `python-version` output) and uv (and uv's own cache);
- actions/cache: a folder of saved caches shared by the rehearsals of one test: restored by key
  or restore-key prefix at the step, saved when the job ends if the key was missed (as hard
  links: files are replaced, never written in place, by uv, Python and DVC);
- actions/upload-artifact / download-artifact: a copy into / out of `artifacts/<name>/`;
- marocchino/sticky-pull-request-comment: the comment's body written to `comment.md`;
- actions/github-script (the monitoring alert, the retraining pull request): the script itself,
  run by Node (`tests/github_script.js`) against a repository's issues, pull requests, git
  objects and refs kept in `github.json`;
- docker/login-action, anchore/sbom-action, actions/attest-*: nothing to log in to or attest
  here; recorded as skipped;
- aws-actions/configure-aws-credentials (the DVC remote's OIDC login): exports the credentials
  the rehearsal was given (`cloud_login`), as the action exports the role's session; without
  them the step fails.

`docker` and `gh` talk to a daemon and to GitHub: the rehearsal puts stand-ins first on PATH
that record their arguments in `calls.log` and answer like the real ones. With
REHEARSAL_REGISTRY=<host:port> in the environment, `docker` is real instead: `push` is podman's
push of the image `make container` built (with buildah, BACKEND=buildah) to that registry, and
`buildx imagetools create` is skopeo's copy of a manifest under another tag there; `ghcr.io` in
an image's name stands for that registry.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import timings

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
# The repository's own actions: GitHub's self-repository syntax (the running commit) and a path
# in the workspace (the checkout); both are the checked-out commit here.
OWN_ACTION = ("$/", "./")
GITHUB_SCRIPT = Path(__file__).with_name("github_script.js")
STATUS_CHECK = re.compile(r"\b(success|failure|always|cancelled)\(\)")
SKIPPED_ACTIONS = (
    "docker/login-action",
    "anchore/sbom-action",
    "actions/attest-build-provenance",
    "actions/attest-sbom",
)
LOCAL_ACTIONS = ("actions/checkout", "actions/setup-python", "astral-sh/setup-uv")
STAND_INS = {
    # docker: a recent server for BentoML's version check, a digest for `push` like the
    # registry's answer; every call is recorded.
    "docker": """#!/usr/bin/env bash
set -euo pipefail
echo "docker $*" >> "$REHEARSAL_CALLS"
if [ "$1" = version ]; then echo '"27.0.0"'; exit; fi
if [ -z "${REHEARSAL_REGISTRY:-}" ]; then
  if [ "$1" = push ]; then echo "latest: digest: sha256:$(printf %064d 0) size: 1"; fi
  exit
fi
# A real registry: ghcr.io/<owner>/<name>:<tag> is $REHEARSAL_REGISTRY/<owner>/<name>:<tag>.
there() { echo "docker://$REHEARSAL_REGISTRY/${1#ghcr.io/}"; }
case "$1 ${2:-}" in
  "push --quiet")
    podman push --quiet --tls-verify=false "$3" "$(there "$3")" ;;
  "push "*)
    digest=$(mktemp)
    podman push --quiet --tls-verify=false --digestfile="$digest" "$2" "$(there "$2")"
    echo "${2##*:}: digest: $(cat "$digest") size: 0"
    rm -f "$digest" ;;
  "buildx imagetools")
    # imagetools create --tag <target> <source>: the source's manifest under another tag.
    [ "$3 $4" = "create --tag" ] || { echo "docker: unexpected $*" >&2; exit 2; }
    skopeo copy --quiet --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
      "$(there "$6")" "$(there "$5")" ;;
  *) echo "docker: no stand-in for $*" >&2; exit 2 ;;
esac
""",
    # gh: no release exists yet, so `release view` fails and `release create` is used.
    "gh": """#!/usr/bin/env bash
echo "gh $*" >> "$REHEARSAL_CALLS"
if [ "$1 $2" = "release view" ]; then exit 1; fi
""",
}


@dataclass
class Step:
    name: str
    outcome: str  # success, failure or skipped
    seconds: float
    output: str = ""
    steps: list[Step] = field(default_factory=list)  # a composite action's own steps


@dataclass
class Job:
    """What GitHub would show for one job: its steps, outputs, summary and side effects."""

    steps: list[Step] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""

    @property
    def result(self) -> str:
        return "failure" if any(step.outcome == "failure" for step in self.steps) else "success"

    def seconds(self, *, excluding: tuple[str, ...] = ()) -> float:
        return sum(step.seconds for step in self.steps if step.name not in excluding)


class Null:
    """GitHub's null: what a missing property reads as. Its properties are null too, it is
    false, it equals '' (GitHub compares them as the number 0) and it prints as ''."""

    def __getattr__(self, name: str) -> Null:
        return self

    def __getitem__(self, name: str) -> Null:
        return self

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Null) or other in ("", None, 0, False)

    def __hash__(self) -> int:
        return 0

    def __str__(self) -> str:
        return ""


NULL = Null()


class Context(dict[str, Any]):
    """Attribute access over nested dicts; missing keys read as null, as in GitHub expressions."""

    def __getattr__(self, name: str) -> Any:
        value = self.get(name, NULL)
        return Context(value) if isinstance(value, dict) else value

    def __missing__(self, name: str) -> Null:
        return NULL


class UnknownContext(Exception):
    """An expression names a context that is not available where it is evaluated."""


def from_json(text: str) -> Any:
    value = json.loads(text)
    return Context(value) if isinstance(value, dict) else value


def evaluate(expression: str, contexts: dict[str, Any], failed: bool) -> Any:
    """The subset of GitHub's expression language the generated workflows use."""
    python = " ".join(expression.split())
    python = python.replace("&&", " and ").replace("||", " or ")
    python = re.sub(r"!(?!=)", " not ", python)
    python = python.replace("'", '"')
    # A property with a hyphen (`outputs.python-version`) is an index in Python.
    python = re.sub(r"(?<=[\w\]])\.([A-Za-z_]\w*(?:-\w+)+)", r'["\1"]', python)
    functions = {
        "cancelled": lambda: False,
        "always": lambda: True,
        "success": lambda: not failed,
        "failure": lambda: failed,
        "hashFiles": lambda *patterns: hash_files(contexts["github"]["workspace"], patterns),
        "toJSON": lambda value: json.dumps(value, indent=2),
        "fromJSON": from_json,
    }
    scope = {name: Context(value) for name, value in contexts.items()}
    try:
        return eval(python, {"__builtins__": {}}, {**scope, **functions})
    except NameError as error:
        message = f"Unrecognized named-value: {error.name!r} in {expression!r}"
        raise UnknownContext(message) from None


def hash_files(workspace: str, patterns: tuple[str, ...]) -> str:
    """GitHub's hashFiles: one SHA-256 over the matching files, '' when none match."""
    paths = sorted({path for pattern in patterns for path in Path(workspace).glob(pattern)})
    if not paths:
        return ""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def substitute(text: str, contexts: dict[str, Any], failed: bool) -> str:
    return EXPRESSION.sub(lambda match: str(evaluate(match[1], contexts, failed)), text)


def read_pairs(path: Path) -> dict[str, str]:
    """The `name=value` lines a step appended to GITHUB_OUTPUT or GITHUB_ENV."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


class Rehearsal:
    """One workflow file's jobs, run in `project` with the given event and repository settings."""

    def __init__(
        self,
        project: Path,
        workflow: str,
        scratch: Path,
        env: dict[str, str],
        caches: Path,
        *,
        cloud_login: dict[str, str] | None = None,
    ) -> None:
        self.project = project
        self.cloud_login = cloud_login
        self.caches = caches
        self.to_save: list[tuple[Path, Path]] = []
        self.numbers = itertools.count()  # names each step's GITHUB_OUTPUT and GITHUB_ENV files
        self.workflow = yaml.safe_load(
            (project / ".github" / "workflows" / workflow).read_text(encoding="utf-8")
        )
        self.scratch = scratch
        self.env = env
        self.artifacts = scratch / "artifacts"
        self.calls = scratch / "calls.log"
        bin_dir = scratch / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name, script in STAND_INS.items():
            (bin_dir / name).write_text(script, encoding="utf-8")
            (bin_dir / name).chmod(0o755)
        self.path = f"{bin_dir}{os.pathsep}{env['PATH']}"

    def run_job(
        self,
        name: str,
        *,
        event: dict[str, Any] | None = None,
        event_name: str = "pull_request",
        needs: dict[str, Job] | None = None,
        variables: dict[str, str] | None = None,
        secrets: dict[str, str] | None = None,
        inputs: dict[str, str] | None = None,
    ) -> Job:
        spec = self.workflow["jobs"][name]
        job = Job()
        files = self.scratch / f"job-{name}"
        files.mkdir(parents=True, exist_ok=True)
        summary = files / "summary.md"
        summary.touch()
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=self.project, capture_output=True, text=True
        ).stdout.strip()
        contexts: dict[str, Any] = {
            "github": {
                "event": event or {},
                "event_name": event_name,
                "sha": sha,
                "ref": "refs/heads/main",
                "repository": "data-team/project",
                "actor": "rehearsal",
                "workspace": str(self.project),
            },
            "vars": variables or {},
            "secrets": secrets or {},
            "inputs": inputs or {},
            "needs": {
                job_name: {"outputs": done.outputs, "result": done.result}
                for job_name, done in (needs or {}).items()
            },
            "runner": {"os": "Linux", "arch": "X64"},
            "steps": {},
        }
        env = {
            **self.env,
            "PATH": self.path,
            "GITHUB_WORKSPACE": str(self.project),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_SHA": sha,
            "GITHUB_REPOSITORY": "data-team/project",
            "GITHUB_REPOSITORY_OWNER": "data-team",
            "GITHUB_EVENT_NAME": event_name,
            "REHEARSAL_CALLS": str(self.calls),
        }
        for scope in (self.workflow.get("env", {}), spec.get("env", {})):
            env.update(
                {key: substitute(str(value), contexts, False) for key, value in scope.items()}
            )
        job.steps = self._run_steps(spec["steps"], contexts, env, files)
        if job.result == "success":
            for source, saved in self.to_save:
                if source.exists() and not saved.exists():
                    shutil.copytree(source, saved, symlinks=True, copy_function=os.link)
        self.to_save.clear()
        job.outputs = {
            key: substitute(str(value), contexts, False)
            for key, value in spec.get("outputs", {}).items()
        }
        job.summary = summary.read_text(encoding="utf-8")
        return job

    def _run_steps(
        self,
        steps: list[dict[str, Any]],
        contexts: dict[str, Any],
        env: dict[str, str],
        files: Path,
        *,
        in_action: bool = False,
        caller_env: dict[str, str] | None = None,
    ) -> list[Step]:
        """Run `steps` in order, as a job's or a composite action's (whose steps also see the
        `env:` of the step that uses it); `env` takes what each step appends to GITHUB_ENV,
        `contexts["steps"]` each step's outcome and outputs."""
        done: list[Step] = []
        for step in steps:
            failed = any(finished.outcome == "failure" for finished in done)
            condition = EXPRESSION.sub(lambda match: match[1], str(step.get("if", "")))
            # As GitHub does: a condition without a status check runs only while all is well.
            if not STATUS_CHECK.search(condition):
                condition = f"success() && ({condition})" if condition else "success()"
            label = step.get("run") or step["uses"].split("@")[0]
            if not evaluate(condition, contexts, failed):
                done.append(Step(label, "skipped", 0.0))
                self._record(contexts, step, "skipped", {})
                continue
            number = next(self.numbers)
            output_file = files / f"output-{number}"
            env_file = files / f"env-{number}"
            output_file.touch()
            env_file.touch()
            own_env = {
                **(caller_env or {}),
                **{
                    key: substitute(str(value), contexts, failed)
                    for key, value in step.get("env", {}).items()
                },
            }
            step_env = {
                **env,
                "GITHUB_OUTPUT": str(output_file),
                "GITHUB_ENV": str(env_file),
                **own_env,
            }
            began = time.perf_counter()
            inner: list[Step] = []
            outputs: dict[str, str] | None = None
            if "run" in step and in_action and step.get("shell") != "bash":
                outcome, text = "failure", "an action's run: step needs `shell: bash` here"
            elif "run" in step:
                outcome, text = self._run(substitute(step["run"], contexts, failed), step_env)
            else:
                action = step["uses"].split("@")[0]
                with_ = {
                    key: substitute(str(value), contexts, failed)
                    for key, value in step.get("with", {}).items()
                }
                if action.startswith(OWN_ACTION):
                    outcome, text, outputs, inner = self._composite(
                        action, with_, contexts, env, files, own_env
                    )
                else:
                    outcome, text = self._uses(action, with_, output_file, env_file)
            done.append(Step(label, outcome, time.perf_counter() - began, text, inner))
            if outputs is None:
                outputs = read_pairs(output_file)
            env.update(read_pairs(env_file))
            self._record(contexts, step, outcome, outputs)
        return done

    def _composite(
        self,
        action: str,
        with_: dict[str, str],
        contexts: dict[str, Any],
        env: dict[str, str],
        files: Path,
        caller_env: dict[str, str],
    ) -> tuple[str, str, dict[str, str], list[Step]]:
        """One of the repository's composite actions, read from the checkout: its outcome,
        log, outputs and steps."""
        path = self.project / action.removeprefix("$/").removeprefix("./") / "action.yml"
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        if spec["runs"]["using"] != "composite":
            return "failure", f"{action}: not a composite action", {}, []
        declared = spec.get("inputs", {})
        unexpected = sorted(set(with_) - set(declared))
        if unexpected:
            return "failure", f"{action}: no input named {', '.join(unexpected)}", {}, []
        inputs = {
            name: with_.get(name, str(declared[name].get("default", ""))) for name in declared
        }
        # What an action may read: no `vars`, `secrets` or `needs`, its own `steps`.
        own = {
            "github": contexts["github"],
            "runner": contexts["runner"],
            "inputs": inputs,
            "steps": {},
        }
        try:
            steps = self._run_steps(
                spec["runs"]["steps"], own, env, files, in_action=True, caller_env=caller_env
            )
            outputs = {
                name: substitute(str(output["value"]), own, False)
                for name, output in spec.get("outputs", {}).items()
            }
        except UnknownContext as error:
            return "failure", f"{action}: {error}", {}, []
        outcome = "failure" if any(step.outcome == "failure" for step in steps) else "success"
        log = "\n".join(f"{step.name}: {step.outcome}\n{step.output}" for step in steps)
        return outcome, log, outputs, steps

    @staticmethod
    def _record(
        contexts: dict[str, Any], step: dict[str, Any], outcome: str, outputs: dict[str, str]
    ) -> None:
        if "id" in step:
            contexts["steps"][step["id"]] = {"outcome": outcome, "outputs": outputs}

    def _run(self, script: str, env: dict[str, str]) -> tuple[str, str]:
        with timings.command(f"job step: {timings.label(script)}"):
            result = subprocess.run(
                ["bash", "-eo", "pipefail", "-c", script],
                cwd=self.project,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
        outcome = "success" if result.returncode == 0 else "failure"
        return outcome, result.stdout + result.stderr

    def _uses(
        self, action: str, inputs: dict[str, str], output: Path, exported: Path
    ) -> tuple[str, str]:
        if action == "actions/setup-python":
            found = subprocess.run(
                [
                    "uv",
                    "run",
                    "--no-project",
                    "python",
                    "-c",
                    "import platform; print(platform.python_version())",
                ],
                cwd=self.project,
                env=self.env,
                capture_output=True,
                text=True,
                check=True,
            )
            output.write_text(f"python-version={found.stdout.strip()}\n", encoding="utf-8")
        if action in LOCAL_ACTIONS:
            return "success", f"{action}: the local equivalent (see tests/rehearsal.py)"
        if action == "aws-actions/configure-aws-credentials":
            if self.cloud_login is None:
                return "failure", f"{action}: the rehearsal was given no credentials to export"
            pairs = {**self.cloud_login, "AWS_REGION": inputs["aws-region"]}
            exported.write_text("".join(f"{k}={v}\n" for k, v in pairs.items()), "utf-8")
            return "success", f"{action}: the stack's credentials for {inputs['role-to-assume']}"
        if action in SKIPPED_ACTIONS:
            return "success", f"{action}: skipped, nothing to log in to or attest here"
        if action == "actions/cache":
            path = self.project / inputs["path"]
            exact = self.caches / inputs["key"]
            prefixes = inputs.get("restore-keys", "").split()
            newest_first = sorted(self.caches.glob("*"), key=lambda saved: -saved.stat().st_mtime)
            matching = [saved for saved in newest_first if saved.name.startswith(tuple(prefixes))]
            candidates = [exact, *matching] if prefixes else [exact]
            hit = next((saved for saved in candidates if saved.exists()), None)
            if hit is not None:
                shutil.copytree(hit, path, symlinks=True, copy_function=os.link, dirs_exist_ok=True)
            self.to_save.append((path, exact))
            return "success", f"cache {'restored from ' + hit.name if hit else 'missed'}"
        if action == "actions/upload-artifact":
            # As on GitHub, paths are stored relative to their least common ancestor.
            paths = [self.project / line for line in inputs["path"].split()]
            missing = [path for path in paths if not path.exists()]
            if missing and inputs.get("if-no-files-found") == "error":
                return "failure", f"upload-artifact: {missing[0]} not found"
            found = [path for path in paths if path.exists()]
            root = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in found]))
            target = self.artifacts / inputs["name"]
            for source in found:
                if source.is_dir():
                    shutil.copytree(source, target / source.relative_to(root), dirs_exist_ok=True)
                else:
                    (target / source.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target / source.relative_to(root))
            return "success", f"uploaded {inputs['name']}"
        if action == "actions/download-artifact":
            destination = self.project / inputs.get("path", "")
            shutil.copytree(self.artifacts / inputs["name"], destination, dirs_exist_ok=True)
            return "success", f"downloaded {inputs['name']}"
        if action == "marocchino/sticky-pull-request-comment":
            body = (self.project / inputs["path"]).read_text(encoding="utf-8")
            (self.scratch / "comment.md").write_text(body, encoding="utf-8")
            number = inputs.get("number") or "the event's"
            return "success", f"comment {inputs['header']!r} written on pull request {number}"
        if action == "actions/github-script":
            script = self.scratch / "github-script.js"
            script.write_text(inputs["script"], encoding="utf-8")
            sha = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=self.project, capture_output=True, text=True
            ).stdout.strip()
            state = self.scratch / "github.json"
            repository = ["data-team/project", "1", sha, "refs/heads/main"]
            ran = subprocess.run(
                ["node", str(GITHUB_SCRIPT), str(script), str(state), *repository],
                cwd=self.project,
                env={**self.env, "GITHUB_OUTPUT": str(output)},
                capture_output=True,
                text=True,
                check=False,
            )
            return ("success" if ran.returncode == 0 else "failure"), ran.stdout + ran.stderr
        return "failure", f"{action}: no local equivalent in tests/rehearsal.py"


def branch_from_state(
    project: Path, env: dict[str, str], state: dict[str, Any], branch: str, folder: Path
) -> str:
    """Make `branch` of `project` what GitHub's API built (`state`, github.json): its commit's
    files written onto its parent in a clone of `project`, committed and pushed back as
    `branch`, so that a rehearsal can check it out. Returns the new commit."""
    built = state["commits"][state["refs"][f"refs/heads/{branch}"]]
    (parent,) = built["parents"]

    def git(*args: str, cwd: Path = folder) -> str:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    git("clone", "-q", str(project), str(folder), cwd=folder.parent)
    git("config", "user.email", "github@example.com")
    git("config", "user.name", "GitHub")
    git("checkout", "-q", "-b", branch, parent)
    for entry in state["trees"][built["tree"]["sha"]]["tree"]:
        (folder / entry["path"]).write_text(state["blobs"][entry["sha"]]["content"], "utf-8")
    git("add", "-A")
    git("commit", "-q", "-m", built["message"])
    git("push", "-q", "--force", "origin", branch)
    return git("rev-parse", "HEAD")
