"""ASGI middleware: a bound on request body size (checked before the body is parsed), and
the one-account lookup's fast lane."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.config import Settings
from serving.deps import bearer_key, reader_role
from serving.routers.accounts import ACCOUNT_ID_MAX, ACCOUNT_PATH
from serving.state import ServingState


class _TooLarge(HTTPException):
    """Raised while the body streams in; FastAPI turns it into a 413 like any HTTPException."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


async def _reply_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes", "errors": None}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 when Content-Length, or the bytes actually received, exceed `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await _reply_413(send, self.max_bytes)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reply_413(send, self.max_bytes)


ACCOUNT_PREFIX = ACCOUNT_PATH.removesuffix("{account_id}")
_JSON_HEADERS = [(b"content-type", b"application/json")]


class AccountLookupMiddleware:
    """`GET /v1/accounts/{account_id}` answered from the precomputed bytes, before FastAPI's
    routing and dependency resolution (which cost more than the lookup itself).

    `serving.routers.accounts` defines the endpoint (schema, validation, every error); this
    lane serves only its success case: a GET of one path segment of 1 to `ACCOUNT_ID_MAX` characters, a
    valid read or admin key, an account in the served scores. It sends the same status,
    headers and bytes as the route and labels the request with the route for the metrics
    (it sits inside `MetricsMiddleware`). Anything else (no or bad key, unknown id, scores
    not loaded, a mount under a root path, odd paths) goes on to FastAPI unchanged.
    """

    def __init__(self, app: ASGIApp, state: ServingState, settings: Settings, route: Any) -> None:
        self.app = app
        self.state = state
        self.settings = settings
        self.route = route

    def _body(self, scope: Scope) -> bytes | None:
        path: str = scope["path"]
        account = path[len(ACCOUNT_PREFIX) :]
        if scope.get("root_path") or not 1 <= len(account) <= ACCOUNT_ID_MAX or "/" in account:
            return None
        scores = self.state.current.scores
        if scores is None:
            return None
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        key = None if auth is None else bearer_key(auth.decode("latin-1"))
        if key is None or reader_role(key, self.settings) is None:
            return None
        body: bytes | None = scores.account_json.get(account)
        return body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith(ACCOUNT_PREFIX):
            body = self._body(scope)
            if body is not None:
                scope["route"] = self.route
                headers = [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
