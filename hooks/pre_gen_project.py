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

# `python -m <package>` runs from the project root in the project's environment, so Python looks
# for the name in the root, then the standard library, then site-packages, and only then in src/
# (an editable install's .pth file). A package named after anything it finds first never runs.
# Taken names that STANDARD_LIBRARY and ENVIRONMENT (at the end of this file) cannot show.
RESERVED = {
    "tests": "is the project's tests folder, a package that `python -m tests` finds in the project "
    "root before the project's package",
    "sitecustomize": "is a module Python imports at every start-up: the project's package would "
    "run in every Python process of its environment",
    "usercustomize": "is a module Python imports at every start-up: the project's package would "
    "run in every Python process of its environment",
    "pip": "is the installer that every `python -m venv` environment holds, where Python finds it "
    "before the project's package",
}

PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
TASKS = ("classification", "regression")
DVC_REMOTES = ("local", "s3", "gcs", "azure")
LICENSES = ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary")
MLFLOW_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "databricks")

# Jinja's delimiters, opening and closing, written with escapes because cookiecutter renders this
# file. Cookiecutter has rendered the answers before this hook runs; a delimiter left in one now
# (typed at the prompt, which cookiecutter does not render, or kept by a raw block) would be
# rendered again, as code, by `make update-template`, which passes the recorded answers back.
JINJA_DELIMITERS = ("\x7b\x7b", "\x7d\x7d", "\x7b%", "%\x7d", "\x7b#", "#\x7d")

PROJECT_SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
PACKAGE_NAME = re.compile(r"[a-z_][a-z0-9_]*")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
GITHUB_OWNER = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")
TEAM_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
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
    taken = why_taken(name)
    if taken:
        return f"{name!r} {taken}; choose another name"
    return None


def why_taken(name: str) -> str | None:
    """Why the name is taken, as the rest of a sentence that starts with it; None if it is free."""
    if name in RESERVED:
        return RESERVED[name]
    if name in STANDARD_LIBRARY or name in sys.stdlib_module_names:
        versions = STANDARD_LIBRARY.get(name)
        of = f" of Python {versions.replace(',', ', ')}" if versions else ""
        return f"is a standard-library module{of}, which Python finds before the project's package"
    if name in ENVIRONMENT:
        *first, last = (ENVIRONMENT[name] or name.replace("_", "-")).split(",")
        last = f"{last[1:]} more" if last.startswith("+") else last
        installers = f"{', '.join(first)} and {last}" if first else last
        return (
            f"is taken by {installers} in the project's environment, and `import {name}` can "
            "find only one of the two"
        )
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


def jinja_problem(value: str) -> str | None:
    found = next((delimiter for delimiter in JINJA_DELIMITERS if delimiter in value), None)
    if found:
        return (
            f"must not hold {found!r}, a Jinja delimiter: cookiecutter would run what it "
            "encloses as code when `make update-template` renders the recorded answers"
        )
    return None


def check_code_owners(owners: str) -> str | None:
    names = owners.split()
    if not names:
        return "must name a GitHub user (@name) or team (@org/team)"
    wrong = [name for name in names if not is_code_owner(name)]
    if wrong:
        return (
            f"{wrong[0]!r} is not a GitHub user (@name) or team (@org/team); separate several "
            "with spaces"
        )
    return None


def is_code_owner(name: str) -> bool:
    user, slash, team = name.removeprefix("@").partition("/")
    return (
        name.startswith("@")
        and check_github_owner(user) is None
        and (not slash or bool(TEAM_SLUG.fullmatch(team)))
    )


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
        "code_owners": check_code_owners,
        "python_version": check_choice(PYTHON_VERSIONS),
        "task": check_choice(TASKS),
        "dvc_remote": check_choice(DVC_REMOTES),
        "dvc_remote_url": lambda url: check_dvc_remote_url(url, remote),
        "mlflow_tracking_uri": check_mlflow_tracking_uri,
        "license": check_choice(LICENSES),
    }
    for field, value in answers.items():
        problem = jinja_problem(value) if isinstance(value, str) else None
        if problem and not field.startswith("_"):
            return f"{field}: {problem}"
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


def names_table(text: str) -> dict[str, str]:
    """``name`` and ``name=detail`` words as {name: detail}, the detail empty where not given."""
    return dict(word.partition("=")[::2] for word in text.split())


# The top-level modules of the standard library of every Python in PYTHON_VERSIONS (more than
# sys.stdlib_module_names, which leaves out e.g. `test`), as `name`, or `name=versions` where only
# those have it. Written by `make taken-names` (scripts/taken_names.py); do not edit by hand.
STANDARD_LIBRARY = names_table(
    """
abc aifc=3.11,3.12 antigravity argparse array ast asynchat=3.11 asyncio asyncore=3.11 atexit
audioop=3.11,3.12 base64 bdb binascii bisect builtins bz2 calendar cgi=3.11,3.12 cgitb=3.11,3.12
chunk=3.11,3.12 cmath cmd code codecs codeop collections colorsys compileall concurrent
configparser contextlib contextvars copy copyreg crypt=3.11,3.12 csv ctypes curses dataclasses
datetime dbm decimal difflib dis distutils=3.11 doctest email encodings ensurepip enum errno
faulthandler fcntl filecmp fileinput fnmatch fractions ftplib functools gc genericpath getopt
getpass gettext glob graphlib grp gzip hashlib heapq hmac html http idlelib imaplib
imghdr=3.11,3.12 imp=3.11 importlib inspect io ipaddress itertools json keyword lib2to3=3.11,3.12
linecache locale logging lzma mailbox mailcap=3.11,3.12 marshal math mimetypes mmap modulefinder
msilib=3.11,3.12 msvcrt multiprocessing netrc nis=3.11,3.12 nntplib=3.11,3.12 nt ntpath nturl2path
numbers opcode operator optparse os ossaudiodev=3.11,3.12 pathlib pdb pickle pickletools
pipes=3.11,3.12 pkgutil platform plistlib poplib posix posixpath pprint profile pstats pty pwd
py_compile pyclbr pydoc pydoc_data pyexpat queue quopri random re readline reprlib resource
rlcompleter runpy sched secrets select selectors shelve shlex shutil signal site smtpd=3.11 smtplib
sndhdr=3.11,3.12 socket socketserver spwd=3.11,3.12 sqlite3 sre_compile sre_constants sre_parse ssl
stat statistics string stringprep struct subprocess sunau=3.11,3.12 symtable sys sysconfig syslog
tabnanny tarfile telnetlib=3.11,3.12 tempfile termios test textwrap this threading time timeit
tkinter token tokenize tomllib trace traceback tracemalloc tty turtle turtledemo types typing
unicodedata unittest urllib uu=3.11,3.12 uuid venv warnings wave weakref webbrowser winreg winsound
wsgiref xdrlib=3.11,3.12 xml xmlrpc xxlimited xxlimited_35 xxsubtype zipapp zipfile zipimport zlib
zoneinfo
"""
)

# Every top-level name installed in the generated project's environment (all dependency groups,
# every platform, every Python in PYTHON_VERSIONS), as `name=distributions` (`+N`: N more), or
# `name` alone when its distribution has the same name. Written by `make taken-names`
# (scripts/taken_names.py) from a freshly locked default project; do not edit by hand.
ENVIRONMENT = names_table(
    """
a2wsgi adodbapi=pywin32 afxres=pywin32 aiohappyeyeballs aiohttp aiohttp_asgi_connector
aiohttp_retry aiosignal aiosqlite alembic amqp annotated_doc annotated_types
antlr4=antlr4-python3-runtime anyio appdirs asgiref ast_serialize asyncssh attr=attrs attrs
aws_xray_sdk bentoml bentoml_cli=bentoml billiard blinker boto3 botocore cachetools cattr=cattrs
cattrs celery certifi cffi cfgv cfnlint=cfn-lint charset_normalizer circus=kantoku click
click_didyoumean click_option_group click_plugins click_repl cloudpickle colorama commctrl=pywin32
configobj contourpy cryptography cycler databricks=databricks-sdk dateutil=python-dateutil
dde=pywin32 defusedxml deprecation dictdiffer diskcache distlib distro docker dotenv=python-dotenv
dpath dulwich dvc dvc_data dvc_http dvc_objects dvc_render dvc_studio_client dvc_task dynaconf
entrypoints evidently example=nvidia-ml-py execnet faker fastapi filelock flask flask_cors
flask_wtf flatbuffers flatten_dict flufl=flufl-lock formulaic frozenlist fsspec funcy git=gitpython
gitdb google=google-auth,protobuf grandalf graphene graphql=graphql-core graphql_relay grimp gto
gunicorn h11 harfile httpcore httptools httpx httpx_ws huey hydra=hydra-core hypothesis
hypothesis_graphql identify idna importlib_metadata importlinter=import-linter include=pywin32
iniconfig interface_meta isapi=pywin32 isympy=sympy iterative_telemetry itsdangerous jinja2
jmespath joblib joserfc jsonpatch jsonpatch_cli=jsonpatch jsonpath_ng jsonpointer jsonschema
jsonschema_path jsonschema_rs jsonschema_specifications jupyterlab_plotly=plotly kiwisolver kombu
lazy_importer lazy_object_proxy lib=pywin32 librt libs=pywin32 litestar litestar_htmx mako
markdown_it=markdown-it-py markupsafe matplotlib mdurl ml_dtypes
mlflow=mlflow,mlflow-skinny,mlflow-tracing mmapfile=pywin32 mmsystem=pywin32 moto
mpl_toolkits=matplotlib mpmath msgspec multidict multipart=multipart,python-multipart mypy
mypy_extensions mypyc=mypy narwhals netbios=pywin32 networkx nltk nodeenv ntsecuritycon=pywin32
numpy odbc=pywin32 omegaconf onnx onnxruntime openapi_schema_validator openapi_spec_validator
opentelemetry=opentelemetry-api,opentelemetry-instrumentation,+6 orjson packaging
packaging_legacy_version=pip-requirements-parser pandas pathable pathspec patsy perfmon=pywin32
pip_requirements_parser platformdirs plotly pluggy polyfactory pre_commit prettytable
prometheus_client prompt_toolkit propcache psutil psycopg psycopg_binary public=atpublic py=pytest
py4j py_partiql_parser pyarrow pyasn1 pyasn1_modules pycparser pydantic pydantic_core
pydantic_settings pydevd_plugins=omegaconf pydot pygit2 pygments pygtrie pylab=matplotlib
pynvml=nvidia-ml-py pyparsing pyrate_limiter pyspark pytest python_discovery python_multipart
pythoncom=pywin32 pythonjsonlogger=python-json-logger pythonwin=pywin32 pytz pywin=pywin32
pywin32_bootstrap=pywin32 pywin32_system32=pywin32 pywin32_testutil=pywin32 pywintypes=pywin32
rasutil=pywin32 referencing regcheck=pywin32 regex regutil=pywin32 requests responses
rfc3339_validator rich rich_click rich_toolkit rpds=rpds-py ruamel=ruamel-yaml ruff s3transfer
schema schemathesis scipy scmrepo scripts=pywin32 semver servicemanager=pywin32 setuptools
shellingham shortuuid shtab simple_di six skl2onnx sklearn=scikit-learn skops smmap sniffio
sortedcontainers sqlalchemy sqlparse sqltrie sspi=pywin32 sspicon=pywin32 starlette statsmodels
sympy tabulate tenacity threadpoolctl timer=pywin32 tomli_w tomlkit tornado tqdm typer
typing_extensions typing_inspect typing_inspection tzdata tzlocal ujson urllib3 uuid6 uvicorn
uvloop validate=configobj vendor_licenses=dynaconf vine virtualenv voluptuous waitress watchdog
watchfiles wcwidth websockets werkzeug win2kras=pywin32 win32=pywin32 win32api=pywin32
win32clipboard=pywin32 win32com=pywin32 win32comext=pywin32 win32con=pywin32 win32console=pywin32
win32cred=pywin32 win32crypt=pywin32 win32cryptcon=pywin32 win32event=pywin32 win32evtlog=pywin32
win32evtlogutil=pywin32 win32file=pywin32 win32gui=pywin32 win32gui_struct=pywin32
win32help=pywin32 win32inet=pywin32 win32inetcon=pywin32 win32job=pywin32 win32lz=pywin32
win32net=pywin32 win32netcon=pywin32 win32pdh=pywin32 win32pdhquery=pywin32 win32pdhutil=pywin32
win32pipe=pywin32 win32print=pywin32 win32process=pywin32 win32profile=pywin32 win32ras=pywin32
win32rcparser=pywin32 win32security=pywin32 win32service=pywin32 win32serviceutil=pywin32
win32timezone=pywin32 win32trace=pywin32 win32traceutil=pywin32 win32transaction=pywin32
win32ts=pywin32 win32ui=pywin32 win32uiole=pywin32 win32verstamp=pywin32 win32wnet=pywin32
winerror=pywin32 winioctlcon=pywin32 winnt=pywin32 winperf=pywin32 winxpgui=pywin32
winxptheme=pywin32 wrapt wsproto wtforms xdist=pytest-xdist xmltodict yaml=pyyaml yarl
zc=zc-lockfile zipp zmq=pyzmq
"""
)


if __name__ == "__main__":
    sys.exit(main())
