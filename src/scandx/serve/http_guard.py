"""ASGI guards in front of every route: the request-body limit (413 before the body is
stored, whatever the client declared) and the response headers a hospital's security
review asks for (no sniffing, no framing, no caching of results, a strict content
security policy for the page)."""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        b"script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
]


class BodyTooLarge(Exception):
    """Raised inside ``receive`` when a request body passes the limit."""


def too_large_message(max_bytes: int) -> str:
    return (
        f"the request is larger than this service's upload limit of {max_bytes:,} bytes "
        f"({max_bytes / 2**20:.0f} MiB)"
    )


async def send_json(send: Any, status: int, body: dict[str, Any], headers=()) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class GuardMiddleware:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await send_json(send, 400, {"detail": "Content-Length is not a number"})
                return
            if too_big:
                await send_json(send, 413, {"detail": too_large_message(self.max_bytes)})
                return
        received = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                await send_json(send, 413, {"detail": too_large_message(self.max_bytes)})
