"""Reject answers that would produce a broken project, before any file is written.

Cookiecutter renders this file with Jinja and runs it. On the first bad answer it prints one
line, ``ERROR: <field>: <rule>``, to stderr and exits 1; cookiecutter then removes the project
directory it had created. Standard library only: whoever runs cookiecutter may have nothing else.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import unicodedata
from collections.abc import Callable
from urllib.parse import urlsplit

# The answers arrive as JSON data, never spliced into code: quotes, backslashes and newlines in
# them stay intact. JSON escapes every quote, so the text cannot close this raw string.
ANSWERS_JSON = r"""{{ cookiecutter | jsonify }}"""

# Top-level modules the generated project or its tools import; a package with one of these names
# would shadow the real one.
DEPENDENCY_MODULES = frozenset(
    {
        "bentoml",
        "dvc",
        "evidently",
        "mlflow",
        "numpy",
        "onnx",
        "onnxruntime",
        "pandas",
        "pydantic",
        "pytest",
        "scipy",
        "skl2onnx",
        "sklearn",
        "skops",
        "yaml",
    }
)

PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
TASKS = ("classification", "regression")
DVC_REMOTES = ("local", "s3", "gcs", "azure")
LICENSES = ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary")
MLFLOW_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "databricks")

PROJECT_SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
PACKAGE_NAME = re.compile(r"[a-z_][a-z0-9_]*")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
GITHUB_OWNER = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")
URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]")
AZURE_CONTAINER = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def has_control_character(value: str) -> bool:
    """Tell whether the text holds a line break, NUL or another control character."""
    has_line_break = "".join(value.splitlines()) != value
    return has_line_break or any(unicodedata.category(char) == "Cc" for char in value)


def check_project_name(name: str) -> str | None:
    if not name.strip():
        return "must not be empty or blank"
    if has_control_character(name):
        return f"must be one line without control characters, got {name!r}"
    return None


def check_project_slug(slug: str) -> str | None:
    # 63: the slug names the Kubernetes objects and labels, which allow no more (RFC 1123).
    if not PROJECT_SLUG.fullmatch(slug) or len(slug) > 63:
        return (
            f"{slug!r} is not a valid repository name; use at most 63 lowercase letters, digits "
            "and single dashes, starting with a letter (e.g. tumour-classifier)"
        )
    return None


def check_package_name(name: str) -> str | None:
    if name.startswith("_"):
        return f"{name!r} starts with an underscore, which marks a private module"
    if not PACKAGE_NAME.fullmatch(name):
        return (
            f"{name!r} is not a valid package name; use lowercase letters, digits and "
            "underscores, starting with a letter (e.g. tumour_classifier)"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"{name!r} is a Python keyword; choose another name"
    if name in sys.stdlib_module_names:
        return f"{name!r} would shadow the standard-library module {name}; choose another name"
    if name in DEPENDENCY_MODULES:
        return f"{name!r} would shadow the dependency {name}; choose another name"
    return None


def check_author_name(name: str) -> str | None:
    if has_control_character(name):
        return f"must be one line without control characters, got {name!r}"
    return None


def check_author_email(email: str) -> str | None:
    if not EMAIL.fullmatch(email):
        return f"{email!r} is not an e-mail address; expected name@domain.tld"
    return None


def check_github_owner(owner: str) -> str | None:
    if not GITHUB_OWNER.fullmatch(owner) or len(owner) > 39:
        return (
            f"{owner!r} is not a GitHub user or organisation name; use 1-39 letters, digits "
            "and single hyphens, not starting or ending with a hyphen"
        )
    return None


def check_choice(allowed: tuple[str, ...]) -> Callable[[str], str | None]:
    listed = ", ".join(allowed)

    def check(value: str) -> str | None:
        if value not in allowed:
            return f"{value!r} is not one of: {listed}"
        return None

    return check


def bucket_of(url: str, scheme: str) -> str | None:
    """The ``<bucket>`` of ``<scheme>://<bucket>[/path]``, or None for another scheme."""
    prefix = f"{scheme}://"
    if not url.startswith(prefix):
        return None
    return url[len(prefix) :].partition("/")[0]


def is_s3_bucket(name: str) -> bool:
    return 3 <= len(name) <= 63 and bool(S3_BUCKET.fullmatch(name)) and ".." not in name


def is_gcs_bucket(name: str) -> bool:
    # Google allows up to 222 characters when the name is dotted, 63 per dot-separated part.
    longest = 222 if "." in name else 63
    return (
        3 <= len(name) <= longest
        and bool(GCS_BUCKET.fullmatch(name))
        and all(len(part) <= 63 for part in name.split("."))
    )


def is_azure_container(name: str) -> bool:
    return 3 <= len(name) <= 63 and bool(AZURE_CONTAINER.fullmatch(name))


ALPHANUMERIC_ENDS = "starting and ending with a letter or digit"

# dvc_remote -> (URL scheme, what the first URL part names, its check, its rule, example URL)
BUCKET_REMOTES = {
    "s3": (
        "s3",
        "bucket",
        is_s3_bucket,
        f"3-63 lowercase letters, digits, dots and hyphens, {ALPHANUMERIC_ENDS}",
        "s3://my-bucket/dvc",
    ),
    "gcs": (
        "gs",
        "bucket",
        is_gcs_bucket,
        f"3-63 lowercase letters, digits, dots, hyphens and underscores, {ALPHANUMERIC_ENDS}",
        "gs://my-bucket/dvc",
    ),
    "azure": (
        "azure",
        "container",
        is_azure_container,
        f"3-63 lowercase letters, digits and single hyphens, {ALPHANUMERIC_ENDS}",
        "azure://my-container/dvc",
    ),
}


def check_dvc_remote_url(url: str, remote: str) -> str | None:
    if has_control_character(url):
        return f"must be one line without control characters, got {url!r}"
    if remote == "local":
        if not url.strip() or "://" in url:
            return (
                "dvc_remote is local, so expected a directory path without a scheme://, "
                f"got {url!r} (e.g. ~/dvc-remotes/my-project)"
            )
        return None
    scheme, kind, is_valid, rule, example = BUCKET_REMOTES[remote]
    bucket = bucket_of(url, scheme)
    if bucket is None or not is_valid(bucket):
        return (
            f"dvc_remote is {remote}, so expected {scheme}://<{kind}>[/path] with a {kind} of "
            f"{rule}, got {url!r} (e.g. {example})"
        )
    return None


def host_of(uri: str) -> str | None:
    try:
        return urlsplit(uri).hostname
    except ValueError:  # a malformed IPv6 literal such as http://[::1
        return None


def check_mlflow_tracking_uri(uri: str) -> str | None:
    if not uri.strip():
        return "must not be empty (e.g. sqlite:///mlflow.db)"
    if any(char.isspace() for char in uri) or has_control_character(uri):
        return f"must be a URI without spaces, got {uri!r} (e.g. sqlite:///mlflow.db)"
    if uri == "databricks":
        return None
    match = URL_SCHEME.match(uri)
    # A one-letter "scheme" is a Windows drive: a plain path, like a missing scheme.
    scheme = match.group(1).lower() if match and len(match.group(1)) > 1 else None
    if scheme is None or scheme == "file":
        return (
            f"{uri!r} is a file store, which MLflow 3 deprecates; "
            "use sqlite:///mlflow.db or an http(s):// tracking server"
        )
    # SQLAlchemy URIs may name a driver: postgresql+psycopg2://, mysql+pymysql://.
    dialect = scheme.partition("+")[0] if scheme.startswith(("postgresql+", "mysql+")) else scheme
    if dialect not in MLFLOW_SCHEMES:
        listed = ", ".join(MLFLOW_SCHEMES)
        return f"{uri!r} has an unsupported scheme; use one of: {listed} (e.g. sqlite:///mlflow.db)"
    after_scheme = uri[len(scheme) + 1 :]
    if dialect == "sqlite":
        if not re.fullmatch(r"///.+", after_scheme):
            return (
                f"{uri!r} names no database file; use sqlite:///<path> (e.g. sqlite:///mlflow.db)"
            )
        return None
    if not after_scheme.startswith("//"):
        return f"{uri!r} is not a URI; expected {scheme}://..."
    # postgresql:///db is fine (a local socket); a tracking server needs a host.
    if dialect in ("http", "https") and not host_of(uri):
        return f"{uri!r} names no host; expected {dialect}://<host>[:port][/path]"
    return None


def check_description(description: str) -> str | None:
    if "\0" in description:
        return "must not contain a NUL character"
    return None


def first_problem(answers: dict[str, object]) -> str | None:
    """Return ``"<field>: <what is wrong>"`` for the first unusable answer, or None."""
    remote = answers["dvc_remote"]
    checks = {
        "project_name": check_project_name,
        "project_slug": check_project_slug,
        "package_name": check_package_name,
        "description": check_description,
        "author_name": check_author_name,
        "author_email": check_author_email,
        "github_owner": check_github_owner,
        "python_version": check_choice(PYTHON_VERSIONS),
        "task": check_choice(TASKS),
        "dvc_remote": check_choice(DVC_REMOTES),
        "dvc_remote_url": lambda url: check_dvc_remote_url(url, remote),
        "mlflow_tracking_uri": check_mlflow_tracking_uri,
        "license": check_choice(LICENSES),
    }
    for field, check in checks.items():
        value = answers[field]
        problem = check(value) if isinstance(value, str) else f"must be text, got {value!r}"
        if problem:
            return f"{field}: {problem}"
    return None


def main() -> int:
    problem = first_problem(json.loads(ANSWERS_JSON))
    if problem:
        print(f"ERROR: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
