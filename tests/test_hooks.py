"""The hooks, rendered with the context cookiecutter would build and run as scripts."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config
from cookiecutter.utils import create_env_with_context

from .conftest import Bake, python_dirs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / "hooks"
COOKIECUTTER_JSON = ROOT / "cookiecutter.json"
CHOICES = {
    key: value
    for key, value in json.loads(COOKIECUTTER_JSON.read_text(encoding="utf-8")).items()
    if isinstance(value, list)
}
GIT = shutil.which("git")

# Valid answers that break naive templating: non-ASCII, quotes, a triple quote, backslashes
# (one at the very end), newlines and a tab.
HOSTILE = {
    "project_name": "Données ML 数据",
    "description": (
        'Say "hi" and \'bye\', """quoted""",\n\tC:\\path\\ and \\"escaped\\"\nends with \\'
    ),
    "author_name": 'Zoë "Ace" O\'Brien \\ 数据',
}


def make_context(
    answers: dict[str, Any] | None = None,
    *,
    override: dict[str, Any] | None = None,
    template: str | None = None,
    repo_dir: str | None = None,
) -> dict[str, Any]:
    """Build the context cookiecutter hands to hooks, as ``cookiecutter --no-input`` would.

    ``answers`` go through cookiecutter's own checks and defaults; ``override`` is set
    afterwards, the way a hand-edited replay file or another tool can bypass those checks.
    """
    context = generate_context(str(COOKIECUTTER_JSON), extra_context=answers or {})
    context["_cookiecutter"] = {
        key: value for key, value in context["cookiecutter"].items() if not key.startswith("_")
    }
    context["cookiecutter"] = dict(prompt_for_config(context, no_input=True))
    context["cookiecutter"].update(override or {})
    context["cookiecutter"].update(
        _template=str(ROOT) if template is None else template,
        _output_dir=str(ROOT.parent),
        _repo_dir=str(ROOT) if repo_dir is None else repo_dir,
        _checkout=None,
    )
    return context


def run_hook(
    name: str,
    context: dict[str, Any],
    cwd: Path,
    scripts: Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Render ``hooks/<name>.py`` as cookiecutter does, then run it with this Python in ``cwd``."""
    source = (HOOKS / f"{name}.py").read_text(encoding="utf-8")
    rendered = create_env_with_context(context).from_string(source).render(**context)
    scripts.mkdir(exist_ok=True)
    script = scripts / f"{name}.py"
    script.write_bytes(rendered.encode("utf-8"))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        capture_output=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
        check=False,
    )


def run_pre_gen(tmp_path: Path, context: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return run_hook("pre_gen_project", context, tmp_path, tmp_path / "scripts")


def bake_post_gen(
    tmp_path: Path, context: dict[str, Any], env: dict[str, str] | None = None
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Make a stand-in project directory holding every removable file, then run post-gen in it."""
    project = tmp_path / "out" / context["cookiecutter"]["project_slug"]
    project.mkdir(parents=True, exist_ok=True)
    (project / "LICENSE").write_text("license text\n", encoding="utf-8")
    (project / "README.md").write_text("# readme\n", encoding="utf-8")
    return project, run_hook("post_gen_project", context, project, tmp_path / "scripts", env)


def recorded(project: Path) -> dict[str, Any]:
    return json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))


VALID = [
    pytest.param({}, id="defaults"),
    pytest.param(HOSTILE, id="hostile-text"),
    *(pytest.param({"python_version": v}, id=f"python-{v}") for v in CHOICES["python_version"]),
    *(pytest.param({"task": task}, id=f"task-{task}") for task in CHOICES["task"]),
    *(pytest.param({"license": lic}, id=f"license-{lic}") for lic in CHOICES["license"]),
    *(pytest.param({"dvc_remote": r}, id=f"default-url-{r}") for r in CHOICES["dvc_remote"]),
    pytest.param({"project_slug": "a" * 63, "package_name": "a" * 63}, id="slug-63-chars"),
    pytest.param({"package_name": "model2_v3"}, id="package-with-digits"),
    # Folders of the project root without an __init__.py: Python passes them by for src/<name>.
    *(pytest.param({"package_name": n}, id=f"package-{n}") for n in ("data", "models", "src")),
    pytest.param({"github_owner": "A" + "-b" * 19}, id="owner-39-chars"),
    pytest.param({"code_owners": "@data-team/ml-reviewers @Ada-L"}, id="code-owners-team-user"),
    pytest.param({"description": "Weights {feature: w} per {x}; a set {1, 2}"}, id="braces"),
    pytest.param({"author_email": "zoë+ml@例え.jp"}, id="email-non-ascii"),
    pytest.param({"dvc_remote_url": "/mnt/dvc store/ml"}, id="local-path-with-space"),
    pytest.param({"dvc_remote_url": "C:\\dvc\\store"}, id="local-windows-path"),
    pytest.param({"dvc_remote": "s3", "dvc_remote_url": "s3://my.bucket-1"}, id="s3-no-path"),
    pytest.param(
        {"dvc_remote": "gcs", "dvc_remote_url": "gs://my_bucket/a/b"}, id="gcs-underscore"
    ),
    pytest.param({"dvc_remote": "azure", "dvc_remote_url": "azure://c0n-tainer/x"}, id="azure"),
    pytest.param({"mlflow_tracking_uri": "sqlite:////srv/mlflow/mlflow.db"}, id="sqlite-absolute"),
    pytest.param({"mlflow_tracking_uri": "http://localhost:5000"}, id="mlflow-http"),
    pytest.param({"mlflow_tracking_uri": "https://mlflow.example.com/"}, id="mlflow-https"),
    pytest.param(
        {"mlflow_tracking_uri": "postgresql+psycopg2://ml:pw@db:5432/mlflow"}, id="mlflow-postgres"
    ),
    pytest.param({"mlflow_tracking_uri": "mysql://ml@db/mlflow"}, id="mlflow-mysql"),
    pytest.param({"mlflow_tracking_uri": "postgresql:///mlflow"}, id="mlflow-postgres-socket"),
    pytest.param({"mlflow_tracking_uri": "databricks"}, id="mlflow-databricks"),
    pytest.param({"mlflow_tracking_uri": "databricks://profile"}, id="mlflow-databricks-profile"),
]


@pytest.mark.parametrize("answers", VALID)
def test_pre_gen_accepts_valid_answers(tmp_path: Path, answers: dict[str, Any]) -> None:
    result = run_pre_gen(tmp_path, make_context(answers))

    assert (result.returncode, result.stderr) == (0, "")


# Names Python already takes, and words the hook's message must give as the reason.
TAKEN = {
    "tests": ("the project's tests folder", "`python -m tests` finds in the project root"),
    "sitecustomize": ("imports at every start-up",),
    "usercustomize": ("imports at every start-up",),
    "pip": ("`python -m venv`",),
    "json": ("is a standard-library module, which Python finds before the project's package",),
    "logging": ("is a standard-library module,",),
    "test": ("is a standard-library module,",),  # not in sys.stdlib_module_names
    "imp": ("is a standard-library module of Python 3.11,",),  # removed in 3.12
    "distutils": ("is a standard-library module of Python 3.11,",),
    "telnetlib": ("is a standard-library module of Python 3.11, 3.12,",),  # removed in 3.13
    "setuptools": ("is taken by setuptools in the project's environment",),
    "google": ("is taken by", "protobuf", "`import google` can find only one of the two"),
    "attr": ("is taken by attrs in",),
    "yaml": ("is taken by pyyaml in",),
    "jinja2": ("is taken by jinja2 in",),
    "sqlalchemy": ("is taken by sqlalchemy in",),
    "tomli_w": ("is taken by tomli-w in",),
    "dateutil": ("is taken by python-dateutil in",),
    "sklearn": ("is taken by scikit-learn in",),
    "mlflow": ("is taken by mlflow, ", " and "),  # several distributions
    "opentelemetry": ("is taken by opentelemetry-api,", "more in"),
    "win32api": ("is taken by pywin32 in",),  # Windows only, like waitress
    "waitress": ("is taken by waitress in",),
    **dict.fromkeys(
        ["dvc", "bentoml", "evidently", "pandas", "numpy", "scipy", "pydantic", "skops", "pytest",
         "onnx", "onnxruntime", "skl2onnx", "pyarrow", "prometheus_client", "hypothesis", "ruff"],
        ("is taken by", "in the project's environment"),
    ),
}  # fmt: skip


def bad(field: str, value: Any, case: str, **others: Any) -> Any:
    """A case where answering ``value`` to ``field`` must fail, named ``<field>-<case>``."""
    answers = {**others, field: value}
    override = {}
    # cookiecutter itself refuses an unknown choice, so set it past its checks
    if field in CHOICES or not isinstance(value, str):
        override[field] = answers.pop(field)
    return pytest.param(answers, override, field, id=f"{field}-{case}")


BAD = [
    bad("project_name", "", "empty"),
    bad("project_name", "  \t ", "blank"),
    bad("project_name", "Two\nlines", "newline"),
    bad("project_name", "Line\u2028separator", "unicode-line-separator"),
    bad("project_name", "Nul\0byte", "nul"),
    bad("project_slug", "Tumour-classifier", "uppercase"),
    bad("project_slug", "1-tumour", "leading-digit"),
    bad("project_slug", "-tumour", "leading-dash"),
    bad("project_slug", "tumour-", "trailing-dash"),
    bad("project_slug", "tumour--classifier", "double-dash"),
    bad("project_slug", "tumour_classifier", "underscore"),
    bad("project_slug", "a" * 64, "64-chars"),
    bad("project_slug", "tumour\n", "trailing-newline"),
    bad("package_name", "_tumour", "leading-underscore"),
    bad("package_name", "Tumour", "uppercase"),
    bad("package_name", "1tumour", "leading-digit"),
    bad("package_name", "tumour-classifier", "dash"),
    bad("package_name", "données", "non-ascii"),
    bad("package_name", "tumour\n", "trailing-newline"),
    bad("package_name", "class", "keyword"),
    bad("package_name", "match", "soft-keyword"),
    *(bad("package_name", name, f"taken-{name}") for name in TAKEN),
    bad("description", "Nul\0byte", "nul"),
    bad("author_name", "Two\nlines", "newline"),
    bad("author_email", "you", "no-at"),
    bad("author_email", "you@example", "no-dot"),
    bad("author_email", "you@@example.com", "two-ats"),
    bad("author_email", "y ou@example.com", "space"),
    bad("author_email", "you@example.com\n", "trailing-newline"),
    bad("github_owner", "", "empty"),
    bad("github_owner", "-owner", "leading-hyphen"),
    bad("github_owner", "owner-", "trailing-hyphen"),
    bad("github_owner", "own--er", "double-hyphen"),
    bad("github_owner", "own_er", "underscore"),
    bad("github_owner", "a" * 40, "40-chars"),
    bad("code_owners", "", "empty"),
    bad("code_owners", "data-team", "no-at"),
    bad("code_owners", "@data-team/ml/x", "two-slashes"),
    bad("code_owners", "@data-team/", "empty-team"),
    bad("code_owners", "@-owner", "leading-hyphen"),
    bad("code_owners", "@ada,@bob", "comma"),
    bad("code_owners", "ada@example.com", "e-mail"),
    bad("python_version", "3.10", "too-old"),
    bad("python_version", "3.14", "unlisted"),
    bad("task", "clustering", "unknown"),
    bad("dvc_remote", "ftp", "unknown"),
    bad("license", "GPL-3.0", "unknown"),
    bad("dvc_remote_url", "", "local-empty"),
    bad("dvc_remote_url", "   ", "local-blank"),
    bad("dvc_remote_url", "s3://bucket/x", "local-with-scheme"),
    bad("dvc_remote_url", "/data\n/x", "local-newline"),
    bad("dvc_remote_url", "gs://bucket/x", "s3-wrong-scheme", dvc_remote="s3"),
    bad("dvc_remote_url", "s3:/bucket/x", "s3-one-slash", dvc_remote="s3"),
    bad("dvc_remote_url", "s3://My-Bucket/x", "s3-uppercase", dvc_remote="s3"),
    bad("dvc_remote_url", "s3://ab/x", "s3-short", dvc_remote="s3"),
    bad("dvc_remote_url", "s3://" + "a" * 64, "s3-long", dvc_remote="s3"),
    bad("dvc_remote_url", "s3://-bucket/x", "s3-leading-hyphen", dvc_remote="s3"),
    bad("dvc_remote_url", "s3://my..bucket/x", "s3-double-dot", dvc_remote="s3"),
    bad("dvc_remote_url", "s3://my_bucket/x", "s3-underscore", dvc_remote="s3"),
    bad("dvc_remote_url", "s3:///x", "s3-no-bucket", dvc_remote="s3"),
    bad("dvc_remote_url", "s3://bucket/x", "gcs-wrong-scheme", dvc_remote="gcs"),
    bad("dvc_remote_url", "gs://Bucket", "gcs-uppercase", dvc_remote="gcs"),
    bad("dvc_remote_url", "wasb://container/x", "azure-wrong-scheme", dvc_remote="azure"),
    bad("dvc_remote_url", "azure://my_container", "azure-underscore", dvc_remote="azure"),
    bad("dvc_remote_url", "azure://my--container", "azure-double-hyphen", dvc_remote="azure"),
    bad("dvc_remote_url", "azure://ab", "azure-short", dvc_remote="azure"),
    bad("mlflow_tracking_uri", "", "empty"),
    bad("mlflow_tracking_uri", "file:./mlruns", "file-scheme"),
    bad("mlflow_tracking_uri", "./mlruns", "plain-path"),
    bad("mlflow_tracking_uri", "C:\\mlruns", "windows-path"),
    bad("mlflow_tracking_uri", "ftp://host/mlflow", "unsupported-scheme"),
    bad("mlflow_tracking_uri", "sqlite://", "sqlite-in-memory"),
    bad("mlflow_tracking_uri", "sqlite:mlflow.db", "sqlite-no-slashes"),
    bad("mlflow_tracking_uri", "http://", "http-no-host"),
    bad("mlflow_tracking_uri", "http://[::1", "http-malformed-host"),
    bad("mlflow_tracking_uri", "postgresql:mlflow", "postgres-no-slashes"),
    bad("mlflow_tracking_uri", "SQLITE://", "sqlite-uppercase-no-file"),
    bad("mlflow_tracking_uri", "http://mlflow host:5000", "space"),
    bad("author_email", None, "not-text"),
]


@pytest.mark.parametrize(("answers", "override", "field"), BAD)
def test_pre_gen_rejects_bad_answer_with_one_line(
    tmp_path: Path, answers: dict[str, Any], override: dict[str, Any], field: str
) -> None:
    result = run_pre_gen(tmp_path, make_context(answers, override=override))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"ERROR: {field}: ")
    assert result.stderr.endswith("\n")
    assert result.stderr.count("\n") == 1


# Jinja's delimiters, as cookiecutter leaves them in an answer typed at its prompt (which it does
# not render) or kept by a raw block: set past its rendering.
DELIMITERS = ["{{", "}}", "{%", "%}", "{#", "#}"]
TEXT_FIELDS = ["project_name", "description", "author_name", "dvc_remote_url"]


@pytest.mark.parametrize("delimiter", DELIMITERS)
@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_pre_gen_refuses_a_jinja_delimiter_in_any_answer(
    tmp_path: Path, field: str, delimiter: str
) -> None:
    text = f"Before {delimiter} cycler.__init__ after"
    result = run_pre_gen(tmp_path, make_context(override={field: text}))

    assert result.returncode == 1
    assert result.stderr == (
        f"ERROR: {field}: must not hold {delimiter!r}, a Jinja delimiter: cookiecutter would run "
        "what it encloses as code when `make update-template` renders the recorded answers\n"
    )


def refused_bake(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], answers: dict[str, str]
) -> list[str]:
    """Bake with `answers` through cookiecutter itself: the hook refuses, nothing is written;
    the ERROR lines it printed."""
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    with pytest.raises(FailedHookException):
        cookiecutter(
            str(ROOT),
            no_input=True,
            extra_context=answers,
            output_dir=str(output_dir),
            config_file=str(cookiecutter_config_in(tmp_path)),
        )
    assert list(output_dir.iterdir()) == []
    return [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR")]


def test_a_jinja_payload_kept_by_a_raw_block_writes_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    payload = "{{ cycler.__init__.__globals__.os.system('touch PWNED') }}"
    answers = {"description": "{% raw %}" + payload + "{% endraw %}"}
    assert refused_bake(tmp_path, capfd, answers) == [
        "ERROR: description: must not hold '{{', a Jinja delimiter: cookiecutter would run what "
        "it encloses as code when `make update-template` renders the recorded answers"
    ]


@pytest.mark.parametrize(("name", "reasons"), TAKEN.items(), ids=list(TAKEN))
def test_pre_gen_says_why_a_package_name_is_taken(
    tmp_path: Path, name: str, reasons: tuple[str, ...]
) -> None:
    result = run_pre_gen(tmp_path, make_context({"package_name": name}))

    assert result.stderr.startswith(f"ERROR: package_name: {name!r} ")
    assert result.stderr.endswith("; choose another name\n")
    for reason in reasons:
        assert reason in result.stderr


def pre_gen_hook() -> ModuleType:
    """The pre-generation hook as a module, unrendered: its tables and checks, not its main()."""
    spec = importlib.util.spec_from_file_location("pre_gen_project", HOOKS / "pre_gen_project.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("table", ["STANDARD_LIBRARY", "ENVIRONMENT"])
def test_taken_name_lists_are_sorted_without_duplicates(table: str) -> None:
    source = (HOOKS / "pre_gen_project.py").read_text(encoding="utf-8")
    text = re.search(rf'^{table} = names_table\(\s*"""(.*?)"""', source, re.S | re.M)

    assert text is not None
    names = [word.partition("=")[0] for word in text.group(1).split()]
    assert len(names) > 100
    assert names == sorted(set(names))


def python_of(version: str) -> str | None:
    """An interpreter of this version: pyenv's own (its shims hide all but one), else PATH's."""
    return shutil.which(f"python{version}", path=os.pathsep.join(python_dirs())) or shutil.which(
        f"python{version}"
    )


# Every top-level module the interpreter's standard library holds (pkgutil also sees `test`,
# which sys.stdlib_module_names leaves out); -S: no site-packages.
LIST_STANDARD_LIBRARY = (
    "import pkgutil, sys; "
    "print(*sys.stdlib_module_names, *(m.name for m in pkgutil.iter_modules()))"
)


@pytest.mark.parametrize("version", CHOICES["python_version"])
def test_hook_knows_every_standard_library_module_of_each_python(version: str) -> None:
    python = python_of(version)
    if python is None:
        pytest.skip(f"Python {version} is not installed")
    listed = subprocess.run(
        [python, "-I", "-S", "-c", LIST_STANDARD_LIBRARY],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    hook = pre_gen_hook()

    candidates = {name for name in listed if hook.PACKAGE_NAME.fullmatch(name) and name[0] != "_"}
    assert "test" in candidates
    missing = sorted(candidates - hook.STANDARD_LIBRARY.keys())
    assert not missing, f"run `make taken-names`: the hook does not know {missing}"
    for name in candidates:
        versions = hook.STANDARD_LIBRARY[name]
        assert not versions or version in versions.split(","), name


def test_pre_gen_refuses_every_package_in_the_project_root(bake: Bake) -> None:
    project = bake()
    importable = {
        path.name.removesuffix(".py")
        for path in project.iterdir()
        if path.suffix == ".py" or (path / "__init__.py").is_file()
    }
    hook = pre_gen_hook()

    assert "tests" in importable
    for name in importable:
        assert hook.why_taken(name) is not None, name


def test_pre_gen_rejects_file_store_and_points_to_sqlite(tmp_path: Path) -> None:
    result = run_pre_gen(tmp_path, make_context({"mlflow_tracking_uri": "file:./mlruns"}))

    assert "deprecate" in result.stderr
    assert "sqlite:///mlflow.db" in result.stderr


@pytest.mark.parametrize(
    ("remote", "example"),
    [("s3", "s3://"), ("gcs", "gs://"), ("azure", "azure://")],
)
def test_pre_gen_names_the_expected_remote_scheme(
    tmp_path: Path, remote: str, example: str
) -> None:
    answers = {"dvc_remote": remote, "dvc_remote_url": "/srv/dvc"}

    result = run_pre_gen(tmp_path, make_context(answers))

    assert f"{example}<" in result.stderr
    assert f"e.g. {example}my-" in result.stderr


def test_pre_gen_reports_the_first_bad_answer_only(tmp_path: Path) -> None:
    answers = {"project_slug": "Bad Slug", "author_email": "nobody", "package_name": "json"}

    result = run_pre_gen(tmp_path, make_context(answers))

    assert result.stderr.startswith("ERROR: project_slug: ")
    assert result.stderr.count("\n") == 1


def test_post_gen_twice_changes_nothing_it_did_not_write(tmp_path: Path) -> None:
    context = make_context({"license": "Proprietary"})

    project, first = bake_post_gen(tmp_path, context)
    files_after_first = sorted(p.name for p in project.iterdir())
    second = run_hook("post_gen_project", context, project, tmp_path / "scripts")

    assert (first.returncode, second.returncode) == (0, 0)
    # Optional files are conditional file names now: the hook deletes nothing.
    assert (project / "LICENSE").read_text(encoding="utf-8") == "license text\n"
    assert (project / "README.md").exists()
    assert sorted(p.name for p in project.iterdir()) == files_after_first


def test_post_gen_records_hostile_answers_exactly(tmp_path: Path) -> None:
    # A folder that is no git repository: no template commit to record.
    context = make_context(HOSTILE, template="gh:acme/mlops-template", repo_dir=str(tmp_path))

    project, result = bake_post_gen(tmp_path, context)

    assert result.returncode == 0, result.stderr
    answers = recorded(project)
    public = {k: v for k, v in context["cookiecutter"].items() if not k.startswith("_")}
    assert answers == {**public, "_template": "gh:acme/mlops-template"}
    assert {k: answers[k] for k in HOSTILE} == HOSTILE
    assert list(answers) == sorted(answers)
    text = (project / ".cookiecutter.json").read_text(encoding="utf-8")
    assert "Données ML 数据" in text
    assert text.endswith("}\n")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(str(ROOT), None, id="absolute-path"),
        pytest.param(".", None, id="relative-path"),
        pytest.param("~/templates/mlops", None, id="home-path"),
        pytest.param("C:\\templates\\mlops", None, id="windows-path"),
        pytest.param("/tmp/mlops-template.zip", None, id="local-zip"),
        pytest.param("file:///srv/templates/mlops", None, id="file-url"),
        pytest.param("gh:acme/mlops-template", "gh:acme/mlops-template", id="github-abbrev"),
        pytest.param(
            "https://github.com/acme/mlops-template.git",
            "https://github.com/acme/mlops-template.git",
            id="https",
        ),
        pytest.param(
            "git@github.com:acme/mlops-template.git",
            "git@github.com:acme/mlops-template.git",
            id="scp-like-ssh",
        ),
        pytest.param(
            "https://x-token:s3cr3t@github.com/acme/mlops-template",
            "https://github.com/acme/mlops-template",
            id="https-credentials-dropped",
        ),
    ],
)
def test_post_gen_records_template_only_when_not_a_local_path(
    tmp_path: Path, template: str, expected: str | None
) -> None:
    project, result = bake_post_gen(tmp_path, make_context(template=template))

    assert result.returncode == 0, result.stderr
    assert recorded(project).get("_template") == expected
    private = {key for key in recorded(project) if key.startswith("_")}
    assert private <= {"_template", "_commit"}


def template_repository(folder: Path, *, dirty: bool = False) -> str:
    """A git repository holding a stand-in template; returns its commit."""
    folder.mkdir(parents=True)
    (folder / "cookiecutter.json").write_text("{}\n", encoding="utf-8")
    git = [str(GIT), "-c", "user.name=T", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "--quiet", str(folder)], check=True)
    subprocess.run([*git, "-C", str(folder), "add", "--all"], check=True)
    subprocess.run([*git, "-C", str(folder), "commit", "--quiet", "-m", "v1"], check=True)
    if dirty:
        (folder / "cookiecutter.json").write_text('{"x": "1"}\n', encoding="utf-8")
    return subprocess.run(
        [*git, "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_post_gen_records_the_commit_of_a_git_template(tmp_path: Path) -> None:
    commit = template_repository(tmp_path / "template")

    project, result = bake_post_gen(tmp_path, make_context(repo_dir=str(tmp_path / "template")))

    assert result.returncode == 0, result.stderr
    assert recorded(project)["_commit"] == commit
    assert "uncommitted" not in result.stdout


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_post_gen_records_a_relative_template_from_where_cookiecutter_started(
    tmp_path: Path,
) -> None:
    commit = template_repository(tmp_path / "template")

    project, result = bake_post_gen(
        tmp_path, make_context(repo_dir="template"), env={"PWD": str(tmp_path)}
    )

    assert result.returncode == 0, result.stderr
    assert recorded(project)["_commit"] == commit


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_post_gen_notes_uncommitted_template_changes(tmp_path: Path) -> None:
    commit = template_repository(tmp_path / "template", dirty=True)

    project, result = bake_post_gen(tmp_path, make_context(repo_dir=str(tmp_path / "template")))

    assert result.returncode == 0, result.stderr
    assert recorded(project)["_commit"] == commit
    assert f"records commit {commit[:12]}, which does not hold them" in result.stdout


@pytest.mark.skipif(GIT is None, reason="git is not installed")
@pytest.mark.parametrize("where", ["not-a-repository", "inside-another-repository", "missing"])
def test_post_gen_records_no_commit_it_cannot_vouch_for(tmp_path: Path, where: str) -> None:
    template = tmp_path / "template"
    if where == "inside-another-repository":
        template_repository(tmp_path / "repo")
        template = tmp_path / "repo" / "template"
    if where != "missing":
        template.mkdir(parents=True)
        (template / "cookiecutter.json").write_text("{}\n", encoding="utf-8")

    project, result = bake_post_gen(tmp_path, make_context(repo_dir=str(template)))

    assert result.returncode == 0, result.stderr
    assert "_commit" not in recorded(project)


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_post_gen_initialises_git_on_main_without_committing(tmp_path: Path) -> None:
    project, result = bake_post_gen(tmp_path, make_context())

    assert result.returncode == 0, result.stderr
    head = (project / ".git" / "HEAD").read_text(encoding="utf-8")
    assert head == "ref: refs/heads/main\n"
    commits = subprocess.run(
        [str(GIT), "rev-parse", "--verify", "--quiet", "HEAD"], cwd=project, check=False
    )
    assert commits.returncode != 0


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_post_gen_leaves_an_enclosing_repository_alone(tmp_path: Path) -> None:
    subprocess.run([str(GIT), "init", "--quiet", str(tmp_path / "out")], check=True)

    project, result = bake_post_gen(tmp_path, make_context())

    assert result.returncode == 0, result.stderr
    assert not (project / ".git").exists()


def test_post_gen_gives_a_project_in_an_ignored_folder_its_own_repository(
    tmp_path: Path,
) -> None:
    subprocess.run([str(GIT), "init", "--quiet", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("out/\n", encoding="utf-8")

    project, result = bake_post_gen(tmp_path, make_context())

    assert result.returncode == 0, result.stderr
    assert (project / ".git" / "HEAD").read_text(encoding="utf-8") == "ref: refs/heads/main\n"


def test_post_gen_without_git_notes_it_and_still_finishes(tmp_path: Path) -> None:
    no_git = tmp_path / "empty-bin"
    no_git.mkdir()

    project, result = bake_post_gen(tmp_path, make_context(), env={"PATH": str(no_git)})

    assert result.returncode == 0, result.stderr
    assert "git is not on PATH" in result.stdout
    assert not (project / ".git").exists()
    assert (project / ".cookiecutter.json").exists()


def test_post_gen_prints_next_steps(tmp_path: Path) -> None:
    context = make_context({"project_name": "Données ML 数据"})

    _, result = bake_post_gen(tmp_path, context)

    steps = [line.split("#")[0].strip() for line in result.stdout.splitlines()]
    assert [step for step in steps if step.startswith(("cd ", "make "))] == [
        "cd donnees-ml-shu-ju",
        "make setup",
        "make repro",
        "make help",
    ]


def cookiecutter_config_in(tmp_path: Path) -> Path:
    """A cookiecutter config that keeps its clones and replay files in `tmp_path`."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {json.dumps(str(tmp_path / 'cookiecutters'))}\n"
        f"replay_dir: {json.dumps(str(tmp_path / 'replay'))}\n",
        encoding="utf-8",
    )
    return config


# One bad answer per text field, through real cookiecutter (choices are refused by cookiecutter
# itself before the hook runs).
BAD_THROUGH_COOKIECUTTER = {
    "project_name": {"project_name": "Two\nlines"},
    "project_slug": {"project_slug": "1-tumour"},
    "package_name": {"package_name": "mlflow"},
    "description": {"description": "Nul\0byte"},
    "author_name": {"author_name": "Two\nlines"},
    "author_email": {"author_email": "you"},
    "github_owner": {"github_owner": "-owner"},
    "code_owners": {"code_owners": "data-team"},
    "dvc_remote_url": {"dvc_remote": "s3", "dvc_remote_url": "gs://bucket/x"},
    "mlflow_tracking_uri": {"mlflow_tracking_uri": "file:./mlruns"},
}


@pytest.mark.parametrize("field", BAD_THROUGH_COOKIECUTTER)
def test_cookiecutter_writes_nothing_when_pre_gen_fails(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], field: str
) -> None:
    errors = refused_bake(tmp_path, capfd, BAD_THROUGH_COOKIECUTTER[field])
    assert len(errors) == 1
    assert errors[0].startswith(f"ERROR: {field}: ")
