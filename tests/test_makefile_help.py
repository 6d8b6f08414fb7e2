"""Fast tier: `make help` in a generated project lists every command once, under its section."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .conftest import Bake

SECTIONS = ["Everyday", "Release", "Serving", "MLflow", "CI", "Maintenance"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def help_sections(project: Path) -> dict[str, list[str]]:
    """Each section's title word and the targets listed under it, from `make help`."""
    result = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    sections: dict[str, list[str]] = {}
    for line in ANSI.sub("", result.stdout).splitlines():
        if line.startswith("  "):
            sections[list(sections)[-1]].append(line.split()[0])
        elif line:
            sections[line.split(":")[0]] = []
    return sections


def test_help_lists_every_target_once_by_section(bake: Bake) -> None:
    project = bake()
    makefile = (project / "Makefile").read_text(encoding="utf-8")
    phony = " ".join(re.search(r"^\.PHONY: (.*?)\n\n", makefile, re.M | re.S)[1].split("\\"))

    sections = help_sections(project)

    assert list(sections) == SECTIONS
    listed = [target for targets in sections.values() for target in targets]
    assert sorted(listed) == sorted(phony.split())
    placed = {name: section for section, names in sections.items() for name in names}
    assert placed["setup"] == "Everyday"
    assert placed["rollback"] == "Release"
    assert placed["serve"] == "Serving"
    assert placed["release-plan"] == "CI"
