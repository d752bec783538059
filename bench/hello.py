"""A hello-world ASGI app: the most one uvicorn worker can answer, the hot path's ceiling."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

_START = {"type": "http.response.start", "status": 200,
          "headers": [(b"content-length", b"5"), (b"content-type", b"text/plain")]}
_BODY = {"type": "http.response.body", "body": b"hello"}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_BODY)
