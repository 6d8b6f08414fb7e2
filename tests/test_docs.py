"""The docs site builds offline with no warning, and the options page is what the code says."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from mkdocs.exceptions import PluginError

from .conftest import ROOT, run

GENERATOR = ROOT / "docs" / "hooks" / "options.py"


def load_hook(path: Path) -> ModuleType:
    """A docs hook as a fresh module, so a test may change its tables."""
    spec = importlib.util.spec_from_file_location(f"docs_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def options() -> ModuleType:
    return load_hook(GENERATOR)


def test_the_options_page_is_up_to_date(options: ModuleType) -> None:
    committed = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    assert committed == options.render(), "docs/options.md is stale: run `make docs`"


def test_the_options_page_lists_every_question_prompt_and_rule(options: ModuleType) -> None:
    page = options.render()
    config = options.json.loads((ROOT / "cookiecutter.json").read_text(encoding="utf-8"))
    for name, default in config.items():
        if name.startswith("_"):
            continue
        assert f"## `{name}`" in page
        prompt = config["__prompts__"][name]
        assert (prompt["__prompt__"] if isinstance(prompt, dict) else prompt) in page
        for choice in default if isinstance(default, list) else []:
            assert f"    - `{choice}`" in page
    # The hook's own messages, and its tables, are on the page.
    assert "`ERROR: package_name: 'mlflow' is taken by mlflow" in page
    hook = options.load_hook()
    assert f"({len(hook.ENVIRONMENT)} names, from a freshly locked project)" in page
    assert "`make taken-names` rewrites them" in page
    assert "`__dataset`: computed as" in page


def test_an_undescribed_question_stops_the_rendering(
    options: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(options.CHANGES, "license")
    with pytest.raises(ValueError, match=r"CHANGES must describe .* missing \['license'\]"):
        options.render()


def test_an_example_the_hook_accepts_cannot_be_shown_as_refused(
    options: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(options.REFUSED, "author_email", [{"author_email": "ada@example.com"}])
    with pytest.raises(ValueError, match="the hook no longer refuses"):
        options.render()


def test_the_mkdocs_hook_fails_the_build_on_a_stale_page(
    options: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stale = tmp_path / "options.md"
    stale.write_text("# Options\n\nhand-edited\n", encoding="utf-8")
    monkeypatch.setattr(options, "PAGE", stale)
    with pytest.raises(PluginError, match="out of date"):
        options.on_pre_build({})


def test_the_site_builds_strictly_offline(bake_env: dict[str, str], tmp_path: Path) -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    # Material's social and privacy plugins download fonts and assets while building.
    assert not re.search(r"^\s*- (material/)?(social|privacy)\b", config, re.MULTILINE)
    mkdocs = shutil.which("mkdocs")
    assert mkdocs, "mkdocs-material is in the template's test dependencies"
    site = tmp_path / "site"
    # strict: true in mkdocs.yml turns every warning (a broken link or anchor, a page left out
    # of the nav) into a failure.
    env = {**bake_env, "NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner
    result = run([mkdocs, "build", "--strict", "--site-dir", str(site)], ROOT, env)
    assert not re.search(r"^WARNING\b", result.stderr, re.MULTILINE), result.stderr
    for page in ["index", "quickstart", "options", "architecture", "troubleshooting"]:
        assert (site / page / "index.html").is_file() or (site / f"{page}.html").is_file()
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "fonts.googleapis.com" not in html  # theme.font: false
    assert not (site / "hooks").exists()
    # Diagrams render from the site's own Mermaid: Material loads the CDN's only without it.
    architecture = (site / "architecture" / "index.html").read_text(encoding="utf-8")
    assert '<pre class="mermaid">' in architecture
    assert '<script src="../javascripts/mermaid.min.js"></script>' in architecture
    served = (site / "javascripts" / "mermaid.min.js").read_bytes()
    assert hashlib.sha256(served).hexdigest() == make_variable("MERMAID_SHA256")


def make_variable(name: str) -> str:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    found = re.search(rf"^{name} := (\S+)$", makefile, re.MULTILINE)
    assert found, f"{name} is not set in the Makefile"
    return found[1]


def test_the_site_does_not_build_without_its_mermaid(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = load_hook(ROOT / "docs" / "hooks" / "mermaid.py")
    monkeypatch.setattr(hook, "SOURCE", ROOT / "build" / "nowhere" / "mermaid.min.js")
    with pytest.raises(PluginError, match=r"is missing: `make docs`"):
        hook.on_config({"extra_javascript": []})
