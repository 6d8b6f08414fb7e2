"""Merge a newer version of the project template into this project, as one reviewable commit.

The project records its answers and the template commit it came from in `.cookiecutter.json`.
This script re-generates the project from that commit and from the newer one, with the same
answers, and cherry-picks the difference onto the current branch: git merges it three-way,
so your own edits stay, and lines that both you and the template changed become ordinary
merge conflicts. `make update-template` runs it with cookiecutter installed; see the README.

Cookiecutter runs code from both inputs: the template's hooks, and every answer, which it
renders as a Jinja template without a sandbox. So an answer holding a Jinja delimiter is
refused, and a template location read from `.cookiecutter.json` (which any commit can change)
is used only once a person has seen it and said yes.

Standard library only, apart from cookiecutter, which it runs in a child process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ANSWERS_FILE = ".cookiecutter.json"
# Cookiecutter's abbreviations for hosted repositories.
ABBREVIATIONS = {
    "gh": "https://github.com/{}.git",
    "gl": "https://gitlab.com/{}.git",
    "bb": "https://bitbucket.org/{}",
}
# Jinja's delimiters, opening and closing: in an answer, cookiecutter would run what they hold.
JINJA_DELIMITERS = ("{{", "}}", "{%", "%}", "{#", "#}")
# Runs in a child process so that the answers reach cookiecutter as JSON, types intact.
GENERATE = """
import json, sys
from cookiecutter.main import cookiecutter
request = json.load(sys.stdin)
for template, output_dir in request["bakes"]:
    cookiecutter(
        template,
        no_input=True,
        extra_context=request["answers"],
        output_dir=output_dir,
        config_file=request["config_file"],
    )
"""
CONFLICT_HELP = """\
CONFLICT: the template changed lines that this project changed too, in:
{files}
The update is half applied, as a cherry-pick in progress. In each file above, keep what you
want between the <<<<<<< and >>>>>>> markers, then
  git add <file>... && git cherry-pick --continue
or give up the update and get back to where you were:
  git cherry-pick --abort"""


class UpdateError(Exception):
    """A reason not to update; nothing in the project has changed."""


def git(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """Run git and return its output; raise UpdateError with git's message when it fails."""
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        message = " ".join((result.stderr or result.stdout).split())
        raise UpdateError(f"git {args[0]} failed: {message}")
    return result.stdout.strip()


def git_succeeds(*args: str, cwd: Path) -> bool:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    return result.returncode == 0


def check_project(project: Path) -> None:
    """Refuse to run anywhere but the top of a git work tree with everything committed."""
    if not git_succeeds("rev-parse", "--is-inside-work-tree", cwd=project):
        raise UpdateError("this folder is not in a git repository: run `git init` and commit first")
    top = Path(git("rev-parse", "--show-toplevel", cwd=project)).resolve()
    if top != project.resolve():
        raise UpdateError(
            f"run the update from the top of the git repository ({top}), where the project is"
        )
    if not git_succeeds("rev-parse", "--verify", "--quiet", "HEAD", cwd=project):
        raise UpdateError("the project has no commit yet: commit the generated project first")
    for operation in ("CHERRY_PICK_HEAD", "MERGE_HEAD"):
        if git_succeeds("rev-parse", "--verify", "--quiet", operation, cwd=project):
            command = "cherry-pick" if operation == "CHERRY_PICK_HEAD" else "merge"
            raise UpdateError(
                f"a {command} is in progress: finish it (git {command} --continue) "
                f"or give it up (git {command} --abort) first"
            )
    changes = git("status", "--porcelain", "--untracked-files=all", cwd=project)
    if changes:
        raise UpdateError(
            "the project has uncommitted changes (`git status` lists them): commit or stash "
            "them first, so that the update is a commit of its own that you can review or undo"
        )


def read_answers(project: Path) -> dict[str, object]:
    path = project / ANSWERS_FILE
    try:
        answers = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UpdateError(f"{ANSWERS_FILE} is missing: it holds the answers to reuse") from None
    except json.JSONDecodeError as error:
        raise UpdateError(f"{ANSWERS_FILE} is not valid JSON: {error}") from None
    if not isinstance(answers, dict):
        raise UpdateError(f"{ANSWERS_FILE} must hold a JSON object of answers")
    return answers


def jinja_delimiter(value: object) -> str | None:
    """The first Jinja delimiter in a text, or in the texts of a list or object; None if none."""
    if isinstance(value, str):
        return next((found for found in JINJA_DELIMITERS if found in value), None)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        return next(filter(None, map(jinja_delimiter, value)), None)
    return None


def check_answers(answers: dict[str, object]) -> None:
    """Refuse answers that cookiecutter would run as code when it renders them."""
    for key, value in answers.items():
        found = jinja_delimiter(key) or jinja_delimiter(value)
        if found:
            raise UpdateError(
                f"{ANSWERS_FILE}: the answer {key!r} holds {found!r}, which cookiecutter would "
                "run as a template: remove the Jinja delimiters from it, commit, and run the "
                "update again"
            )


def printable(text: str) -> str:
    """The text with control characters (terminal escapes among them) shown as `?`."""
    return "".join(char if char.isprintable() else "?" for char in text)


def describe(clone: Path, commit: str) -> str:
    subject = git("log", "-1", "--format=%s", commit, cwd=clone)
    return f"{commit[:12]} {printable(subject)}"


def confirm(location: str, yes: bool) -> None:
    """Go on with a template location read from the answers file only once a person agrees."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UpdateError(
            f"the template location above comes from {ANSWERS_FILE}, which any commit can "
            "change, and the update runs the template's code: check it, then run again with "
            "`make update-template YES=1`, or name the template (TEMPLATE=<location>)"
        )
    try:
        answer = input(f"Run the code of the template at {printable(location)}? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise UpdateError("not confirmed: nothing changed")


def clone_location(template: str) -> str:
    """What `git clone` understands for a template location cookiecutter understands."""
    prefix, _, rest = template.partition(":")
    if prefix in ABBREVIATIONS and rest and not rest.startswith("//"):
        return ABBREVIATIONS[prefix].format(rest)
    if template.startswith(("git+", "hg+")):
        if template.startswith("hg+"):
            raise UpdateError(f"{template}: only git templates can be updated from")
        return template.removeprefix("git+")
    local = Path(template).expanduser()
    return str(local.resolve()) if local.exists() else template


def resolve(clone: Path, revision: str, what: str) -> str:
    """The full commit id of a branch, tag or commit of the template."""
    for candidate in (revision, f"origin/{revision}"):
        commit = candidate + "^{commit}"  # only a commit, not a tag object or a tree
        if git_succeeds("rev-parse", "--verify", "--quiet", commit, cwd=clone):
            return git("rev-parse", "--verify", commit, cwd=clone)
    raise UpdateError(f"the template has no {what} {revision!r}")


def generate(clone: Path, commits: list[str], answers: dict[str, object], work: Path) -> list[Path]:
    """The projects cookiecutter makes from the template at each commit, with these answers."""
    bakes = []
    for commit in commits:
        checkout = work / f"template-{commit[:12]}"
        git("worktree", "add", "--quiet", "--detach", str(checkout), commit, cwd=clone)
        bakes.append((str(checkout), str(work / f"generated-{commit[:12]}")))
    config = work / "cookiecutter-config.yaml"  # keeps cookiecutter's replay files out of ~
    config.write_text(
        json.dumps({"cookiecutters_dir": str(work / "cc"), "replay_dir": str(work / "replay")}),
        encoding="utf-8",
    )
    request = {
        "bakes": bakes,
        "answers": {key: value for key, value in answers.items() if not key.startswith("_")},
        "config_file": str(config),
    }
    result = subprocess.run(
        [sys.executable, "-c", GENERATE],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise UpdateError(
            "cookiecutter could not generate the project from the template:\n"
            + (result.stderr or result.stdout)[-3000:]
        )
    projects = []
    for _, output in bakes:
        folders = [path for path in Path(output).iterdir() if path.is_dir()]
        if len(folders) != 1:
            raise UpdateError(f"cookiecutter made {len(folders)} projects, not one, in {output}")
        projects.append(folders[0])
    return projects


def write_answers(project: Path, answers: dict[str, object]) -> None:
    text = json.dumps(answers, sort_keys=True, indent=2, ensure_ascii=False)
    (project / ANSWERS_FILE).write_text(text + "\n", encoding="utf-8", newline="\n")


def commit_tree(project: Path, files: Path, message: str, parent: str | None, work: Path) -> str:
    """Store the files of a generated project as a commit in this repository, off any branch."""
    git_dir = git("rev-parse", "--absolute-git-dir", cwd=project)
    env = {**os.environ, "GIT_INDEX_FILE": str(work / f"index-{files.parent.name}")}
    git(f"--git-dir={git_dir}", f"--work-tree={files}", "add", "--all", cwd=files, env=env)
    tree = git(f"--git-dir={git_dir}", "write-tree", cwd=files, env=env)
    parents = ["-p", parent] if parent else []
    return git("commit-tree", tree, *parents, "-F", "-", cwd=project, stdin=message)


def update(
    project: Path,
    template: str | None,
    checkout: str | None,
    since: str | None,
    *,
    yes: bool = False,
) -> int:
    """Merge the template's changes from the recorded commit to `checkout` into the project.

    A template location that comes from the answers file rather than from `template` is
    used only when `yes` is true or a person confirms it at the terminal.
    """
    check_project(project)
    answers = read_answers(project)
    check_answers(answers)
    location = template or answers.get("_template")
    if not isinstance(location, str) or not location:
        raise UpdateError(
            f"{ANSWERS_FILE} records no template location (it was generated from a local path): "
            "pass it, e.g. `make update-template TEMPLATE=../mlops-template`"
        )
    if location.startswith("-"):
        raise UpdateError(f"{printable(location)!r} is not a template location")
    old_revision = since or answers.get("_commit")
    if not isinstance(old_revision, str) or not old_revision:
        raise UpdateError(
            f"{ANSWERS_FILE} records no template commit (_commit): pass the commit this project "
            "was generated from, e.g. `make update-template FROM=<commit>`"
        )
    if importlib.util.find_spec("cookiecutter") is None:
        raise UpdateError(
            "cookiecutter is not installed for this Python: run `make update-template`, "
            "which runs this script with it"
        )

    with tempfile.TemporaryDirectory(prefix="update-template-") as tmp:
        work = Path(tmp)
        clone = work / "template"
        # `--`: a location is never read as an option of git clone.
        command = ["git", "clone", "--quiet", "--no-checkout", "--", clone_location(location)]
        result = subprocess.run(
            [*command, str(clone)],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            reason = " ".join(result.stderr.split())
            raise UpdateError(f"cannot clone the template from {printable(location)}: {reason}")
        old = resolve(clone, old_revision, "commit")
        new = resolve(clone, checkout or "HEAD", "branch, tag or commit")
        if old == new:
            print(f"Already at template commit {new[:12]}: nothing to update.")
            return 0
        origin = "given" if template else f"recorded in {ANSWERS_FILE}"
        print(f"Template: {printable(location)} ({origin})")
        print(f"  from commit {describe(clone, old)}")
        print(f"  to commit   {describe(clone, new)}", flush=True)
        if not template:
            confirm(location, yes)

        before, after = generate(clone, [old, new], answers, work)
        # The answers file changes only where the template moved: the commit, new questions.
        (before / ANSWERS_FILE).write_bytes((project / ANSWERS_FILE).read_bytes())
        updated = {**read_answers(after), "_commit": new}
        updated.pop("_template", None)
        if "_template" in answers:
            updated["_template"] = answers["_template"]
        write_answers(after, updated)

        base = commit_tree(project, before, f"Template commit {old[:12]}\n", None, work)
        message = (
            f"Update the project to template commit {new[:12]}\n\n"
            f"The template's changes from commit {old} to {new},\n"
            "merged by scripts/update_template.py.\n"
        )
        change = commit_tree(project, after, message, base, work)
        picked = subprocess.run(
            ["git", "cherry-pick", change], cwd=project, capture_output=True, text=True, check=False
        )

    if picked.returncode == 0:
        print(
            f"Updated from template commit {old[:12]} to {new[:12]} in one commit.\n"
            "Review it with `git show`; undo it with `git reset --keep HEAD~1`."
        )
        return 0
    conflicted = git("diff", "--name-only", "--diff-filter=U", cwd=project).splitlines()
    if conflicted:
        files = "\n".join(f"  {name}" for name in conflicted)
        print(CONFLICT_HELP.format(files=files), file=sys.stderr)
        return 2
    if git_succeeds("rev-parse", "--verify", "--quiet", "CHERRY_PICK_HEAD", cwd=project):
        git("cherry-pick", "--abort", cwd=project)
    reason = " ".join((picked.stderr or picked.stdout).split())
    raise UpdateError(f"git could not apply the template's changes: {reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Merge a newer version of the project template into this project."
    )
    parser.add_argument(
        "--template",
        help=f"git URL, gh:owner/name or path of the template (default: {ANSWERS_FILE})",
    )
    parser.add_argument(
        "--checkout",
        help="template branch, tag or commit to update to (default: its default branch)",
    )
    parser.add_argument(
        "--from",
        dest="since",
        help=f"template commit this project was generated from (default: {ANSWERS_FILE})",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help=f"use the template location recorded in {ANSWERS_FILE} without asking",
    )
    args = parser.parse_args(argv)
    if shutil.which("git") is None:
        print("ERROR: git is not on PATH", file=sys.stderr)
        return 1
    try:
        return update(Path.cwd(), args.template, args.checkout, args.since, yes=args.yes)
    except UpdateError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
