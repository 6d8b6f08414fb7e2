"""Rewrite the lists of names Python already takes in hooks/pre_gen_project.py.

`make taken-names` runs this. The hook runs before any project exists, with the standard library
alone, so it cannot ask a Python or an environment: it carries two lists, written here from real
ones.

- STANDARD_LIBRARY: the top-level modules of each Python that cookiecutter.json offers
  (`python_version`): `sys.stdlib_module_names` and what the interpreter's library folders hold,
  which includes modules that list leaves out, such as `test`.
- ENVIRONMENT: every top-level name of the default project's environment (its fresh uv.lock, every
  dependency group) on each of those Pythons, with the distributions that install it. Packages of
  the lock that no environment here installs (today pywin32 and waitress, for Windows) are
  unpacked for the platform they are for.

Names the hook's syntax rule already refuses (capitals, a leading underscore) are left out.
Every Python of `python_version` must be installed; uv downloads none.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "hooks" / "pre_gen_project.py"
# Only these can pass the hook's syntax rule; listing the others would only lengthen the hook.
CANDIDATE = re.compile(r"[a-z][a-z0-9_]*")
MODULE_FILE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\.[^.]+)*\.(py|pyc|so|pyd)")
# Platforms a package of the lock may be for, tried in this order (uv's --python-platform names).
OTHER_PLATFORMS = ("x86_64-pc-windows-msvc", "aarch64-apple-darwin", "aarch64-unknown-linux-gnu")
# Distributions named for one name at most; past that, the first ones and `+<how many more>`.
MOST_NAMED = 3
QUIET_ENV = {"UV_PYTHON_DOWNLOADS": "never", "DO_NOT_TRACK": "1"}


def canonical(distribution: str) -> str:
    """A distribution's name as uv.lock writes it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def names_in(folder: str) -> set[str]:
    """Top-level names importable from one folder of sys.path: modules, packages, namespaces."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return set()
    found = set()
    for entry in entries:
        if os.path.isdir(os.path.join(folder, entry)):
            if entry.isidentifier():
                found.add(entry)
        elif match := MODULE_FILE.fullmatch(entry):
            found.add(match.group(1))
    return found


def owners(
    folders: list[str], distributions: Iterable[importlib.metadata.Distribution]
) -> dict[str, set[str]]:
    """name -> the distributions whose files put it at the top of one of `folders`."""
    roots = [os.path.normpath(folder) for folder in folders]
    found: dict[str, set[str]] = {}
    for distribution in distributions:
        for file in distribution.files or []:
            path = os.path.normpath(str(distribution.locate_file(file)))
            for root in roots:
                if path.startswith(root + os.sep):
                    top = path[len(root) + 1 :].split(os.sep)[0]
                    name = MODULE_FILE.fullmatch(top)
                    found.setdefault(name.group(1) if name else top, set()).add(
                        canonical(distribution.metadata["Name"])
                    )
    return found


def environment_names(
    folders: list[str], distributions: list[importlib.metadata.Distribution]
) -> dict[str, list[str]]:
    """name -> sorted distributions, for every top-level name `folders` hold."""
    by_name = owners(folders, distributions)
    names = set().union(*(names_in(folder) for folder in folders))
    return {name: sorted(by_name.get(name, ())) for name in names}


def describe(project_src: str) -> dict[str, object]:
    """What this interpreter's standard library and environment hold, the project left out.

    Run with the environment's own Python and -I: sys.path is then the standard library's
    folders, then site-packages, then what .pth files add (among them the project's src).
    """
    import site

    site_packages = set(site.getsitepackages())
    first = next(index for index, folder in enumerate(sys.path) if folder in site_packages)
    library = {*sys.stdlib_module_names, *sys.builtin_module_names}
    for folder in sys.path[:first]:
        library |= names_in(folder)
    folders = [folder for folder in sys.path[first:] if folder != project_src]
    distributions = list(importlib.metadata.distributions())
    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "standard_library": sorted(library),
        "environment": environment_names(folders, distributions),
        "distributions": sorted({canonical(d.metadata["Name"]) for d in distributions}),
    }


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


def python_dirs() -> list[str]:
    """Folders holding python3.X interpreters that a pyenv shim would hide from uv."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    return sorted(str(path.parent) for path in pyenv.glob("3.1[1-9]*/bin/python3"))


def bake(folder: Path, env: dict[str, str]) -> Path:
    """The default project, baked into `folder`/out with a private cookiecutter configuration."""
    config = folder / "cookiecutter.yaml"
    config.write_text(
        f"cookiecutters_dir: {json.dumps(str(folder / 'templates'))}\n"
        f"replay_dir: {json.dumps(str(folder / 'replay'))}\n",
        encoding="utf-8",
    )
    output = folder / "out"
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "--config-file", str(config)]
    run([*command, "--output-dir", str(output), str(ROOT)], folder, env)
    (project,) = output.iterdir()
    return project


def pth_folders(site_packages: Path) -> list[str]:
    """The folders that .pth files in `site_packages` add to sys.path, written for any platform.

    Windows .pth files use backslashes and any case (pywin32's: `win32\\lib`, `Pythonwin`).
    """
    folders = []
    for pth in sorted(site_packages.glob("*.pth")):
        for line in pth.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith(("#", "import ", "import\t")):
                continue
            folder = site_packages
            for part in line.strip().replace("\\", "/").split("/"):
                matches = [
                    entry for entry in folder.iterdir() if entry.name.lower() == part.lower()
                ]
                folder = matches[0] if matches else folder / part
            folders.append(str(folder))
    return folders


def unpacked_names(
    project: Path, package: str, version: str, python: str, env: dict[str, str]
) -> dict[str, list[str]]:
    """The top-level names of a package no environment here installs, unpacked for its platform."""
    prefix = project / "other-platforms" / package
    for platform in OTHER_PLATFORMS:
        command = [
            *("uv", "pip", "install", "--quiet", "--no-deps", "--prefix", str(prefix)),
            *("--python-platform", platform, "--python-version", python),
            f"{package}=={version}",
        ]
        if subprocess.run(command, cwd=project, env=env, capture_output=True).returncode == 0:
            break
    else:
        raise SystemExit(f"{package}=={version} installs on none of {', '.join(OTHER_PLATFORMS)}")
    site_packages = next(prefix.glob("lib/python*/site-packages"))
    folders = [str(site_packages), *pth_folders(site_packages)]
    distributions = list(importlib.metadata.distributions(path=[str(site_packages)]))
    return environment_names(folders, distributions)


def collect() -> tuple[dict[str, set[str]], dict[str, set[str]], list[str]]:
    """(standard-library name -> versions, environment name -> distributions, versions)."""
    config = json.loads((ROOT / "cookiecutter.json").read_text(encoding="utf-8"))
    versions: list[str] = config["python_version"]
    env = {**os.environ, **QUIET_ENV}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join([env["PATH"], *python_dirs()])
    library: dict[str, set[str]] = {}
    environment: dict[str, set[str]] = {}
    installed: set[str] = set()
    with tempfile.TemporaryDirectory() as folder:
        project = bake(Path(folder), env)
        run(["uv", "lock", "--quiet"], project, env)
        for version in versions:
            venv = project / f".venv-{version}"
            sync = ["uv", "sync", "--quiet", "--locked", "--all-groups", "--python", version]
            run(sync, project, {**env, "UV_PROJECT_ENVIRONMENT": str(venv)})
            python = str(venv / "bin" / "python")
            command = [python, "-I", __file__, "--describe", str(project / "src")]
            found = json.loads(run(command, Path(folder), env))
            if found["python"] != version:
                raise SystemExit(f"asked uv for Python {version}, got {found['python']}")
            for name in found["standard_library"]:
                library.setdefault(name, set()).add(version)
            for name, distributions in found["environment"].items():
                environment.setdefault(name, set()).update(distributions)
            installed.update(found["distributions"])
        lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
        for package in lock["package"]:
            if package["name"] in installed or "editable" in package.get("source", {}):
                continue
            found = unpacked_names(project, package["name"], package["version"], versions[0], env)
            for name, distributions in found.items():
                environment.setdefault(name, set()).update(distributions)
    return library, environment, versions


def wrapped(tokens: Iterable[str]) -> str:
    return (
        textwrap.fill(" ".join(tokens), width=99, break_long_words=False, break_on_hyphens=False)
        + "\n"
    )


def rewrite(hook: str, name: str, tokens: Iterable[str]) -> str:
    """The hook's text with the string of `name = names_table(\"\"\"...\"\"\")` replaced."""
    pattern = re.compile(rf'^({name} = names_table\(\s*""")\n.*?(""")', re.MULTILINE | re.DOTALL)
    if not pattern.search(hook):
        raise SystemExit(f'{HOOK} has no {name} = names_table("""...""")')
    return pattern.sub(lambda match: f"{match[1]}\n{wrapped(tokens)}{match[2]}", hook, count=1)


def main() -> int:
    library, environment, versions = collect()
    every = set(versions)
    library_tokens = [
        name if library[name] == every else f"{name}={','.join(sorted(library[name]))}"
        for name in sorted(library)
        if CANDIDATE.fullmatch(name)
    ]
    environment_tokens = []
    for name in sorted(environment):
        if not CANDIDATE.fullmatch(name) or name in library:
            continue
        distributions = sorted(environment[name])
        if not distributions:
            print(f"note: no distribution records {name!r}; the hook names {name}", file=sys.stderr)
        if distributions in ([], [canonical(name)]):
            environment_tokens.append(name)
            continue
        if len(distributions) > MOST_NAMED:  # opentelemetry: 8, more than a line holds
            more = len(distributions) - MOST_NAMED + 1
            distributions = [*distributions[: MOST_NAMED - 1], f"+{more}"]
        environment_tokens.append(f"{name}={','.join(distributions)}")
    text = HOOK.read_text(encoding="utf-8")
    text = rewrite(text, "STANDARD_LIBRARY", library_tokens)
    text = rewrite(text, "ENVIRONMENT", environment_tokens)
    HOOK.write_text(text, encoding="utf-8")
    print(
        f"{HOOK.relative_to(ROOT)}: {len(library_tokens)} standard-library names, "
        f"{len(environment_tokens)} names of the project's environment"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--describe"]:  # run by each environment's Python, from collect()
        print(json.dumps(describe(sys.argv[2])))
        sys.exit(0)
    sys.exit(main())
