"""Fast tier: update a project baked from an older template commit with scripts/update_template.py.

Each test builds its own template history: this working tree committed as the older commit,
then a newer commit that changes, adds and deletes generated files. Only bakes and git run.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from .conftest import QUIET_ENV, ROOT, run

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

SLUG = "{{cookiecutter.project_slug}}"
# The newer template commit: a line on top of params.yaml, a new file, a deleted file.
NEW_FIRST_LINE = "# Reviewed for the newer template commit.\n"
NEW_FILE = "CHANGELOG.md"
DELETED_FILE = ".github/pull_request_template.md"


@dataclass
class Case:
    template: Path
    project: Path
    old: str
    new: str


def git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return run(["git", *args], cwd, env).stdout.strip()


def copy_working_tree(destination: Path) -> None:
    """This template as it is on disk, uncommitted changes included, without ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def bake_from(template: Path, output: Path, config: Path) -> Path:
    return Path(
        cookiecutter(str(template), no_input=True, output_dir=str(output), config_file=str(config))
    )


def tracked_files(project: Path) -> dict[str, bytes]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=project, capture_output=True, check=True
    ).stdout.decode()
    return {name: (project / name).read_bytes() for name in filter(None, names.split("\0"))}


def generated_files(project: Path) -> dict[str, bytes]:
    return {
        path.relative_to(project).as_posix(): path.read_bytes()
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


def update(case: Case, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the project's update script with this Python, which has cookiecutter."""
    command = [sys.executable, "scripts/update_template.py", "--template", str(case.template)]
    return run([*command, *args], case.project, env, check=False)


@pytest.fixture(scope="module")
def env(bake_env: dict[str, str]) -> dict[str, str]:
    return {**bake_env, "GIT_EDITOR": "true"}


@pytest.fixture(scope="module")
def history(
    tmp_path_factory: pytest.TempPathFactory, cookiecutter_config: Path, env: dict[str, str]
) -> Case:
    """A project baked and committed at the older template commit; the template one commit on."""
    tmp_path = tmp_path_factory.mktemp("history")
    template = tmp_path / "template"
    copy_working_tree(template)
    git("init", "--quiet", "-b", "main", cwd=template, env=env)
    git("add", "--all", cwd=template, env=env)
    git("commit", "--quiet", "-m", "Older template", cwd=template, env=env)
    old = git("rev-parse", "HEAD", cwd=template, env=env)

    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in QUIET_ENV.items():
            monkeypatch.setenv(name, value)
        project = bake_from(template, tmp_path / "projects", cookiecutter_config)
    git("add", "--all", cwd=project, env=env)
    git("commit", "--quiet", "-m", "Generated project", cwd=project, env=env)

    params = template / SLUG / "params.yaml"
    params.write_text(NEW_FIRST_LINE + params.read_text(encoding="utf-8"), encoding="utf-8")
    (template / SLUG / NEW_FILE).write_text("# Changes\n", encoding="utf-8")
    (template / SLUG / DELETED_FILE).unlink()
    git("add", "--all", cwd=template, env=env)
    git("commit", "--quiet", "-m", "Newer template", cwd=template, env=env)
    new = git("rev-parse", "HEAD", cwd=template, env=env)
    return Case(template, project, old, new)


@pytest.fixture
def case(history: Case, tmp_path: Path) -> Case:
    """A copy of the committed project, its repository included, for one test to change."""
    project = tmp_path / history.project.name
    shutil.copytree(history.project, project, symlinks=True)
    return Case(history.template, project, history.old, history.new)


def commit_edit(case: Case, env: dict[str, str], name: str, text: str) -> None:
    path = case.project / name
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")
    git("commit", "--quiet", "--all", "-m", f"Edit {name}", cwd=case.project, env=env)


def test_project_records_the_template_commit(case: Case) -> None:
    answers = json.loads((case.project / ".cookiecutter.json").read_text(encoding="utf-8"))

    assert answers["_commit"] == case.old
    assert "_template" not in answers  # a local path is never recorded


def test_update_without_edits_equals_a_fresh_bake(
    case: Case,
    env: dict[str, str],
    tmp_path: Path,
    cookiecutter_config: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = update(case, env)
    for name, value in QUIET_ENV.items():
        monkeypatch.setenv(name, value)

    assert result.returncode == 0, result.stderr
    assert f"to {case.new[:12]} in one commit" in result.stdout
    assert git("status", "--porcelain", cwd=case.project, env=env) == ""
    subject = git("log", "-1", "--format=%s", cwd=case.project, env=env)
    assert subject == f"Update the project to template commit {case.new[:12]}"
    fresh = bake_from(case.template, tmp_path / "fresh", cookiecutter_config)
    assert tracked_files(case.project) == generated_files(fresh)
    answers = json.loads((case.project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert answers["_commit"] == case.new


def test_update_keeps_edits_the_template_does_not_touch(case: Case, env: dict[str, str]) -> None:
    commit_edit(case, env, "params.yaml", "# Our own note at the end.\n")
    commit_edit(case, env, "README.md", "\n## Our team\n\nAsk in #ml.\n")

    result = update(case, env)

    assert result.returncode == 0, result.stderr
    params = (case.project / "params.yaml").read_text(encoding="utf-8")
    assert params.startswith(NEW_FIRST_LINE)
    assert params.endswith("# Our own note at the end.\n")
    assert (case.project / "README.md").read_text(encoding="utf-8").endswith("Ask in #ml.\n")
    assert (case.project / NEW_FILE).is_file()
    assert not (case.project / DELETED_FILE).exists()
    assert git("status", "--porcelain", cwd=case.project, env=env) == ""


def test_conflicting_edit_is_reported_and_can_be_aborted_or_resolved(
    case: Case, env: dict[str, str]
) -> None:
    params = case.project / "params.yaml"
    params.write_text("# Our own heading.\n" + params.read_text(encoding="utf-8"), encoding="utf-8")
    git("commit", "--quiet", "--all", "-m", "Our heading", cwd=case.project, env=env)
    before = git("rev-parse", "HEAD", cwd=case.project, env=env)

    result = update(case, env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "CONFLICT" in result.stderr
    assert "  params.yaml\n" in result.stderr
    assert "git cherry-pick --continue" in result.stderr
    assert "git cherry-pick --abort" in result.stderr
    unmerged = git("diff", "--name-only", "--diff-filter=U", cwd=case.project, env=env)
    assert unmerged == "params.yaml"
    assert "<<<<<<<" in params.read_text(encoding="utf-8")
    assert (case.project / NEW_FILE).is_file()  # what merged cleanly is already applied
    again = update(case, env)
    assert again.returncode == 1
    assert "a cherry-pick is in progress" in again.stderr

    git("cherry-pick", "--abort", cwd=case.project, env=env)
    assert git("rev-parse", "HEAD", cwd=case.project, env=env) == before
    assert git("status", "--porcelain", cwd=case.project, env=env) == ""

    assert update(case, env).returncode == 2
    conflicted = params.read_text(encoding="utf-8")
    below_markers = conflicted[conflicted.index(">>>>>>>") :].split("\n", 1)[1]
    params.write_text(NEW_FIRST_LINE + "# Our own heading.\n" + below_markers, encoding="utf-8")
    git("add", "params.yaml", cwd=case.project, env=env)
    git("cherry-pick", "--continue", cwd=case.project, env=env)

    assert git("status", "--porcelain", cwd=case.project, env=env) == ""
    assert git("rev-parse", "HEAD~1", cwd=case.project, env=env) == before
    assert params.read_text(encoding="utf-8").startswith(NEW_FIRST_LINE + "# Our own heading.\n")
    answers = json.loads((case.project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert answers["_commit"] == case.new


@pytest.mark.parametrize("change", ["modified", "untracked"])
def test_update_refuses_uncommitted_changes(case: Case, env: dict[str, str], change: str) -> None:
    name = "README.md" if change == "modified" else "notes.txt"
    (case.project / name).write_text("work in progress\n", encoding="utf-8")
    head = git("rev-parse", "HEAD", cwd=case.project, env=env)

    result = update(case, env)

    assert result.returncode == 1
    assert "ERROR: the project has uncommitted changes" in result.stderr
    assert (case.project / name).read_text(encoding="utf-8") == "work in progress\n"
    assert git("rev-parse", "HEAD", cwd=case.project, env=env) == head


def test_update_names_the_missing_template_location(case: Case, env: dict[str, str]) -> None:
    result = run([sys.executable, "scripts/update_template.py"], case.project, env, check=False)

    assert result.returncode == 1
    assert "records no template location" in result.stderr
    assert "TEMPLATE=" in result.stderr


def test_update_to_the_recorded_commit_does_nothing(case: Case, env: dict[str, str]) -> None:
    result = update(case, env, "--checkout", case.old[:10])

    assert result.returncode == 0, result.stderr
    assert "nothing to update" in result.stdout
    assert git("log", "-1", "--format=%s", cwd=case.project, env=env) == "Generated project"


def test_update_from_an_unknown_commit_says_so(case: Case, env: dict[str, str]) -> None:
    result = update(case, env, "--from", "0123456789abcdef")

    assert result.returncode == 1
    assert "ERROR: the template has no commit '0123456789abcdef'" in result.stderr
    assert git("status", "--porcelain", cwd=case.project, env=env) == ""


def test_update_uses_and_keeps_the_recorded_template_location(
    case: Case, env: dict[str, str]
) -> None:
    answers_file = case.project / ".cookiecutter.json"
    location = f"git+{case.template.as_uri()}"
    answers = json.loads(answers_file.read_text(encoding="utf-8"))
    answers_file.write_text(json.dumps({**answers, "_template": location}), encoding="utf-8")
    git("commit", "--quiet", "--all", "-m", "Record the template", cwd=case.project, env=env)

    script = [sys.executable, "scripts/update_template.py", "--yes"]
    result = run(script, case.project, env, check=False)

    assert result.returncode == 0, result.stderr
    assert f"Template: {location} (recorded in .cookiecutter.json)" in result.stdout
    updated = json.loads(answers_file.read_text(encoding="utf-8"))
    assert updated == {**answers, "_template": location, "_commit": case.new}
    assert (case.project / NEW_FILE).is_file()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_make_update_template_installs_cookiecutter_and_updates(
    case: Case, env: dict[str, str]
) -> None:
    result = run(["make", "update-template", f"TEMPLATE={case.template}"], case.project, env)

    assert f"to {case.new[:12]} in one commit" in result.stdout
    assert (case.project / NEW_FILE).is_file()


def test_a_template_cookiecutter_clones_records_the_checked_out_commit(
    history: Case, tmp_path: Path, cookiecutter_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in QUIET_ENV.items():
        monkeypatch.setenv(name, value)
    location = f"git+{history.template.as_uri()}"  # cloned, as gh:owner/name would be

    project = cookiecutter(
        location,
        checkout=history.old,
        no_input=True,
        output_dir=str(tmp_path),
        config_file=str(cookiecutter_config),
    )

    answers = json.loads((Path(project) / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert answers["_commit"] == history.old


def test_update_refuses_to_run_below_the_top_of_the_repository(
    case: Case, env: dict[str, str]
) -> None:
    script = case.project / "scripts" / "update_template.py"
    command = [sys.executable, str(script), "--template", str(case.template)]

    result = run(command, case.project / "src", env, check=False)

    assert result.returncode == 1
    assert f"from the top of the git repository ({case.project.resolve()})" in result.stderr


def test_update_refuses_an_answers_file_that_is_not_json(case: Case, env: dict[str, str]) -> None:
    (case.project / ".cookiecutter.json").write_text("{not json\n", encoding="utf-8")
    git("commit", "--quiet", "--all", "-m", "Break the answers", cwd=case.project, env=env)

    result = update(case, env)

    assert result.returncode == 1
    assert "ERROR: .cookiecutter.json is not valid JSON" in result.stderr


# The security review's payload: cookiecutter renders every answer it is given as a template.
PAYLOAD = "{{ cycler.__init__.__globals__.os.system('touch PWNED') }}"


def test_update_refuses_jinja_in_a_recorded_answer_and_runs_none_of_it(
    case: Case, env: dict[str, str]
) -> None:
    answers_file = case.project / ".cookiecutter.json"
    answers = json.loads(answers_file.read_text(encoding="utf-8"))
    answers_file.write_text(json.dumps({**answers, "description": PAYLOAD}), encoding="utf-8")
    git("commit", "--quiet", "--all", "-m", "A hostile description", cwd=case.project, env=env)
    head = git("rev-parse", "HEAD", cwd=case.project, env=env)

    result = update(case, env)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "ERROR: .cookiecutter.json: the answer 'description' holds '{{', which cookiecutter "
        "would run as a template: remove the Jinja delimiters from it, commit, and run the "
        "update again"
    ]
    assert not (case.project / "PWNED").exists()
    assert not list(case.project.parent.rglob("PWNED"))
    assert git("rev-parse", "HEAD", cwd=case.project, env=env) == head
    assert git("status", "--porcelain", cwd=case.project, env=env) == ""


def record_location(case: Case, env: dict[str, str], location: str) -> str:
    """Commit `location` as the project's recorded template; return the commit."""
    answers_file = case.project / ".cookiecutter.json"
    answers = json.loads(answers_file.read_text(encoding="utf-8"))
    answers_file.write_text(json.dumps({**answers, "_template": location}), encoding="utf-8")
    git("commit", "--quiet", "--all", "-m", "Record the template", cwd=case.project, env=env)
    return git("rev-parse", "HEAD", cwd=case.project, env=env)


def test_a_recorded_template_location_needs_a_yes(case: Case, env: dict[str, str]) -> None:
    location = f"git+{case.template.as_uri()}"
    head = record_location(case, env, location)

    result = run([sys.executable, "scripts/update_template.py"], case.project, env, check=False)

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"Template: {location} (recorded in .cookiecutter.json)",
        f"  from commit {case.old[:12]} Older template",
        f"  to commit   {case.new[:12]} Newer template",
    ]
    assert result.stderr.splitlines() == [
        "ERROR: the template location above comes from .cookiecutter.json, which any commit can "
        "change, and the update runs the template's code: check it, then run again with "
        "`make update-template YES=1`, or name the template (TEMPLATE=<location>)"
    ]
    assert git("rev-parse", "HEAD", cwd=case.project, env=env) == head
    assert git("status", "--porcelain", cwd=case.project, env=env) == ""


def update_at_a_terminal(case: Case, env: dict[str, str], answer: str) -> tuple[int, str]:
    """Run the update with a terminal as its input, answer its question; status and output."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")
        result = subprocess.run(
            [sys.executable, "scripts/update_template.py"],
            cwd=case.project,
            env=env,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("answer", ["", "n", "no thanks"])
def test_anything_but_yes_at_the_terminal_changes_nothing(
    case: Case, env: dict[str, str], answer: str
) -> None:
    head = record_location(case, env, f"git+{case.template.as_uri()}")

    status, output = update_at_a_terminal(case, env, answer)

    assert status == 1
    assert f"Run the code of the template at git+{case.template.as_uri()}? [y/N]" in output
    assert "ERROR: not confirmed: nothing changed" in output
    assert git("rev-parse", "HEAD", cwd=case.project, env=env) == head
    assert git("status", "--porcelain", cwd=case.project, env=env) == ""


def test_yes_at_the_terminal_updates(case: Case, env: dict[str, str]) -> None:
    record_location(case, env, f"git+{case.template.as_uri()}")

    status, output = update_at_a_terminal(case, env, "y")

    assert status == 0, output
    assert f"to {case.new[:12]} in one commit" in output
    assert (case.project / NEW_FILE).is_file()


def test_a_recorded_location_that_git_would_read_as_an_option_is_refused(
    case: Case, env: dict[str, str]
) -> None:
    record_location(case, env, "--upload-pack=touch PWNED")
    command = [sys.executable, "scripts/update_template.py", "--yes"]

    result = run(command, case.project, env, check=False)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "ERROR: '--upload-pack=touch PWNED' is not a template location"
    ]
    assert not (case.project / "PWNED").exists()
