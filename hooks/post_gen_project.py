"""Finish the generated project: record the answers, git init.

Cookiecutter renders this file with Jinja and runs it inside the new project directory.
Standard library only: whoever runs cookiecutter may have nothing else installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# The answers arrive as JSON data, never spliced into code: quotes, backslashes and newlines in
# them stay intact. JSON escapes every quote, so the text cannot close this raw string.
ANSWERS_JSON = r"""{{ cookiecutter | jsonify }}"""

ANSWERS_FILE = ".cookiecutter.json"

# Template locations that mean the same on every machine: cookiecutter's built-in abbreviations,
# URLs it clones or downloads, and scp-style git addresses. Anything else (a directory, a local
# zip, file://) is a path on the author's machine and is not recorded.
REMOTE_TEMPLATE = re.compile(
    r"(gh|gl|bb):.+"
    r"|((git|hg)\+)?(https?|ssh|git)://.+"
    r"|[\w.-]+@[\w.-]+:.+",
    re.IGNORECASE,
)


def without_credentials(url: str) -> str:
    """Drop a user or token from an http(s) URL so it is never committed."""
    parts = urlsplit(url)
    protocol = parts.scheme.lower().rpartition("+")[2]  # git+https -> https
    if protocol not in ("http", "https") or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def template_commit(repo_dir: object) -> tuple[str | None, str | None]:
    """The commit of the template that was rendered, and a note when it is not exact.

    Cookiecutter passes the folder it rendered (its clone at `--checkout`, or a local
    template) but no commit; the folder must be the top of a git work tree, or the commit
    would be that of some enclosing repository.
    """
    git = shutil.which("git")
    if git is None or not isinstance(repo_dir, str):
        return None, None
    folder = Path(repo_dir)
    relative = not folder.is_absolute()
    if relative:
        # Relative to where cookiecutter was started (the shell's PWD); hooks run elsewhere.
        folder = Path(os.environ.get("PWD", "/nonexistent")) / folder
    if not (folder / "cookiecutter.json").is_file():
        note = "The template's commit is not recorded: give cookiecutter its absolute path."
        return None, note if relative else None
    is_top, top = _git_succeeds(git, folder, "rev-parse", "--show-toplevel")
    if not is_top or Path(top).resolve() != folder.resolve():
        return None, None
    found, commit = _git_succeeds(git, folder, "rev-parse", "--verify", "HEAD^{commit}")
    if not found:
        return None, None
    _, changes = _git_succeeds(git, folder, "status", "--porcelain")
    if changes:
        return commit, (
            f"The template has uncommitted changes: {ANSWERS_FILE} records commit "
            f"{commit[:12]}, which does not hold them."
        )
    return commit, None


def answers_to_record(answers: dict[str, object], commit: str | None = None) -> dict[str, object]:
    """Public answers, the template location when it is not a local path, and its commit."""
    recorded = {key: value for key, value in answers.items() if not key.startswith("_")}
    template = answers.get("_template")
    if isinstance(template, str) and REMOTE_TEMPLATE.fullmatch(template):
        recorded["_template"] = without_credentials(template)
    if commit is not None:
        recorded["_commit"] = commit
    return recorded


def record_answers(answers: dict[str, object], project: Path, commit: str | None = None) -> None:
    """Write the answers so the project can later be re-generated from a newer template."""
    recorded = answers_to_record(answers, commit)
    text = json.dumps(recorded, sort_keys=True, indent=2, ensure_ascii=False)
    (project / ANSWERS_FILE).write_text(text + "\n", encoding="utf-8", newline="\n")


def _git_succeeds(git: str, project: Path, *args: str) -> tuple[bool, str]:
    result = subprocess.run([git, *args], cwd=project, capture_output=True, text=True, check=False)
    return result.returncode == 0, result.stdout.strip()


def belongs_to_enclosing_repository(git: str, project: Path) -> bool:
    """True when an enclosing git work tree would track the project (a monorepo).

    A project inside a folder that repository ignores (such as `build/`) gets its own: DVC
    refuses to write pointer files that git ignores.
    """
    inside, answer = _git_succeeds(git, project, "rev-parse", "--is-inside-work-tree")
    if not inside or answer != "true":
        return False
    ignored, _ = _git_succeeds(git, project, "check-ignore", "--quiet", ".")
    return not ignored


def init_git(project: Path) -> str | None:
    """Start a git repository on branch main; return a note when that was not done."""
    git = shutil.which("git")
    if git is None:
        return "git is not on PATH: run `git init -b main` in the project yourself."
    if belongs_to_enclosing_repository(git, project):
        return None
    result = subprocess.run(
        [git, "init", "--quiet", "-b", "main"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        # Generation has succeeded; a missing repository is not worth deleting the project for.
        reason = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        return f"git init failed ({reason}): run `git init -b main` in the project yourself."
    return None


def next_steps(slug: str) -> str:
    return "\n".join(
        [
            "",
            f"Created {slug}. Next steps:",
            f"  cd {slug}",
            "  make setup    # install the environment",
            "  make repro    # run the DVC pipeline",
            "  make help     # list every target",
        ]
    )


def main() -> int:
    answers = json.loads(ANSWERS_JSON)
    project = Path.cwd()
    commit, commit_note = template_commit(answers.get("_repo_dir"))
    record_answers(answers, project, commit)
    for note in (commit_note, init_git(project)):
        if note:
            print(note)
    print(next_steps(answers["project_slug"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
