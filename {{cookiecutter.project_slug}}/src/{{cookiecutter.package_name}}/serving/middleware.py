"""ASGI middleware for the service: what BentoML leaves to us about requests and answers.

A request body must be JSON and within a size limit; a 400 answer reads as the service's OpenAPI
document says it does; every answer names the model version; the API page loads nothing from
elsewhere.
"""

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# How much of an oversized streamed body is read (and dropped) before giving up on the client.
DRAIN_LIMIT_FACTOR = 4
# The validation errors a 400 lists; the rest are counted.
MAX_ERRORS = 20
# Methods whose requests carry a body.
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
# For BentoML's API page: its own scripts, styles and images, nothing from another site.
OWN_FILES_ONLY = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; frame-src 'none'; form-action 'self'"
)


def header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's value (`name` in lower case, as ASGI gives it), or None."""
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


async def refuse(send: Send, status: int, error: str) -> None:
    """Answer `{"error": ...}` with `status` and close the connection."""
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class JsonBody:
    """Answer 415 to a request body declared as anything but JSON, before BentoML parses it.

    BentoML 1.4 picks its parser from the Content-Type: a `multipart/form-data` declaration made
    it fail with a 500, and a form body (curl's default) came back as "rows: Field required".
    A body without a Content-Type, which BentoML reads as JSON, is refused too: a web page can
    make a browser send one to any address without asking the service first (no CORS
    preflight), so rows from any site a user of the network visits would be scored and logged.
    A request without a body goes on, to be answered as BentoML does (400, or 405).
    """

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WITH_BODY and has_body(scope):
            declared = header(scope, b"content-type")
            if declared is None or not is_json(declared):
                shown = "a body without one" if declared is None else declared.decode("latin-1")
                await refuse(send, 415, f"send JSON (Content-Type: application/json), not {shown}")
                return
        await self.app(scope, receive, send)


def has_body(scope: Scope) -> bool:
    """A body is announced: a Content-Length other than 0, or a chunked transfer."""
    length = header(scope, b"content-length")
    return (length is not None and length.strip() != b"0") or (
        header(scope, b"transfer-encoding") is not None
    )


def is_json(content_type: bytes) -> bool:
    """application/json or a +json type, whatever its case and parameters."""
    media_type = content_type.partition(b";")[0].strip().lower()
    return media_type == b"application/json" or media_type.endswith(b"+json")


class BodySizeLimit:
    """Answer 413 to a body over `max_bytes`, before the application parses any of it.

    A declared Content-Length is checked at once; a streamed body is read up to the limit and
    handed on whole, so the application never sees a partial one.
    """

    def __init__(self, app: App, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._discard_rest(receive, message)
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _discard_rest(self, receive: Receive, message: Message) -> None:
        """Read what is left of a streamed body, unparsed, so the 413 reaches the client
        (a closed socket with unread data would reset the connection and lose it)."""
        left = DRAIN_LIMIT_FACTOR * self.max_bytes
        while message.get("more_body", False) and left > 0:
            message = await receive()
            if message["type"] != "http.request":
                return
            left -= len(message.get("body", b""))

    async def _refuse(self, send: Send) -> None:
        await refuse(send, 413, f"request body larger than {self.max_bytes} bytes")


class ValidationErrors:
    """Give BentoML's 400 answers the shape of the service's OpenAPI document.

    BentoML 1.4 documents a 400 as `{"error": <text>, "detail": <text>}` but answers pydantic's
    list of errors as `detail`, which a client generated from the document cannot read. The
    answer keeps the list as `errors` and makes `detail` text, a `where: why` per error joined
    by "; ": `rows.0.mean_radius: Input should be less than or equal to 100`. Other answers
    pass as they are.
    """

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_readable(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] == 400:
                start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                body = readable(b"".join(chunks))
                headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_readable)


def readable(body: bytes) -> bytes:
    """A 400 body with a pydantic error list as `detail` turned into text, the list as `errors`."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    if not isinstance(answer, dict) or not isinstance(answer.get("detail"), list):
        return body
    errors = answer["detail"]
    shown = errors[:MAX_ERRORS]
    lines = [where_and_why(error) for error in shown]
    if len(errors) > len(shown):
        lines.append(f"and {len(errors) - len(shown)} more errors")
    return json.dumps({**answer, "detail": "; ".join(lines), "errors": shown}).encode()


def where_and_why(error: Any) -> str:
    """`rows.0.mean_radius: Input should be ...` for one pydantic error."""
    if not isinstance(error, dict):
        return str(error)
    where = ".".join(str(part) for part in error.get("loc", ()))
    why = str(error.get("msg", ""))
    return f"{where}: {why}" if where else why


class Unavailable:
    """Answer 503 with `error` to every request for `path`: an endpoint that is switched off
    says so, rather than take what it would drop."""

    def __init__(self, app: App, path: str, error: str) -> None:
        self.app = app
        self.path = path
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            await refuse(send, 503, self.error)
            return
        await self.app(scope, receive, send)


class ModelVersionHeader:
    """Add `X-Model-Version: <registry version>` to every HTTP answer."""

    def __init__(self, app: App, version: Callable[[], str]) -> None:
        self.app = app
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        version = self.version().encode()
        await self.app(scope, receive, with_header(send, b"x-model-version", version))


class OwnFilesOnly:
    """Serve BentoML's API page (Swagger UI at /) with a Content-Security-Policy of its own files.

    The page BentoML 1.4 ships also loads Google Tag Manager into the visitor's browser, and
    badge images from other sites; under this policy the browser refuses them, and the page
    works from the service's own files.
    """

    def __init__(self, app: App, path: str = "/") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            send = with_header(send, b"content-security-policy", OWN_FILES_ONLY)
        await self.app(scope, receive, send)


def with_header(send: Send, name: bytes, value: bytes) -> Send:
    """`send`, adding the header `name: value` to the answer."""

    async def send_with_header(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (name, value)]
        await send(message)

    return send_with_header


class RefusedRequestsInOneLine(logging.Filter):
    """BentoML logs each refused request with its traceback, which prints every validation error
    and the values that failed it: one line with their count instead, and no request data.

    Other refusals (a 4xx BentoML raises) are one line with the error's kind: their message may
    quote the request too. Failures of the service itself (5xx) keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        status = getattr(error, "error_code", None)  # BentoML's exceptions carry their status
        if isinstance(error, ValidationError):
            record.msg = f"{record.msg}: refused, %d validation errors"
            record.args = (*(record.args or ()), error.error_count())
        elif isinstance(status, int) and 400 <= status < 500:
            record.msg = f"{record.msg}: refused, %s (%d)"
            record.args = (*(record.args or ()), type(error).__name__, int(status))
        else:
            return True
        record.exc_info = None
        record.exc_text = None
        return True
