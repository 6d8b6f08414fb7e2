"""ASGI middleware for the service: a request-body limit, and the model version on every answer."""

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# Requests larger than this are refused before any of their body is parsed.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# How much of an oversized streamed body is read (and dropped) before giving up on the client.
DRAIN_LIMIT_FACTOR = 4


class BodySizeLimit:
    """Answer 413 to a body over `max_bytes`, before the application parses any of it.

    A declared Content-Length is checked at once; a streamed body is read up to the limit and
    handed on whole, so the application never sees a partial one.
    """

    def __init__(self, app: App, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
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
        body = json.dumps({"error": f"request body larger than {self.max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class ModelVersionHeader:
    """Add `X-Model-Version: <registry version>` to every HTTP answer."""

    def __init__(self, app: App, version: Callable[[], str]) -> None:
        self.app = app
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-model-version", self.version().encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_version)
