"""Serve Mermaid from the docs site itself, so its diagrams render with no network.

Material for MkDocs turns each ```mermaid block into a diagram in the reader's browser, loading
Mermaid from a CDN unless the page already has it. As a mkdocs hook (`hooks:` in mkdocs.yml)
this module adds the copy `make docs` fetched from npm (pinned and checked by its hash in the
Makefile) to every page's scripts and writes it into the site.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "build" / "tools" / "mermaid" / "mermaid.min.js"
SITE_PATH = "javascripts/mermaid.min.js"


def on_config(config: Any) -> Any:
    """Put Mermaid before Material's own script, or stop the build when it is missing."""
    if not SOURCE.is_file():
        raise PluginError(
            f"{SOURCE.relative_to(ROOT)} is missing: `make docs` (or `make "
            f"{SOURCE.relative_to(ROOT)}`) gets the pinned Mermaid from npm"
        )
    if SITE_PATH not in config["extra_javascript"]:
        config["extra_javascript"].append(SITE_PATH)
    return config


def on_post_build(config: Any) -> None:
    target = Path(config["site_dir"]) / SITE_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE, target)
