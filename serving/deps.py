"""Dependencies as `Annotated` aliases: settings, the served state, API-key auth, CS page sessions."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from pydantic import SecretStr

from serving.config import Settings
from serving.state import ScoreStore, ServingModel, ServingState

SESSION_COOKIE = "churnguard_session"

BEARER_SCHEME = "HTTPBearer"  # documented in the OpenAPI schema by the app factory


# Each dependency reads the request directly: FastAPI resolves every sub-dependency per
# request, and on the one-account lookup that resolution cost more than the lookup itself.
async def get_state(request: Request) -> ServingState:
    return request.app.state.serving  # type: ignore[no-any-return]


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


StateDep = Annotated[ServingState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def _matches(given: str, expected: object) -> bool:
    secret = getattr(expected, "get_secret_value", None)
    if secret is None:
        return False
    return hmac.compare_digest(given.encode(), secret().encode())


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def bearer_key(authorization: str) -> str | None:
    """The key of an `Authorization: Bearer <key>` header value; None when there is none."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def _key(request: Request) -> str:
    key = bearer_key(request.headers.get("authorization", ""))
    if key is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return key


def reader_role(key: str, settings: Settings) -> str | None:
    """'reader' for the read key, 'admin' for the admin key (it may read too), else None."""
    if _matches(key, settings.api_key):
        return "reader"
    if _matches(key, settings.admin_key):
        return "admin"
    return None


async def require_reader(request: Request) -> str:
    """The read key (or the admin key) is required for customer data."""
    settings: Settings = request.app.state.settings
    if settings.api_key is None and settings.admin_key is None:
        raise _unauthorized("the service has no API key configured (set CHURNGUARD_API_KEY)")
    role = reader_role(_key(request), settings)
    if role is None:
        raise _unauthorized("invalid API key")
    return role


async def require_admin(request: Request) -> str:
    """Only the admin key may trigger admin actions; the read key gets 403."""
    settings: Settings = request.app.state.settings
    if settings.admin_key is None:
        raise _unauthorized("the service has no admin key configured (set CHURNGUARD_ADMIN_KEY)")
    key = _key(request)
    if _matches(key, settings.admin_key):
        return "admin"
    if _matches(key, settings.api_key):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this key may read but not perform admin actions")
    raise _unauthorized("invalid API key")


Reader = Annotated[str, Depends(require_reader)]
Admin = Annotated[str, Depends(require_admin)]


# --- CS page sessions -------------------------------------------------------------------
# The cookie is `v1.<role>.<issued>.<expires>.<nonce>.<mac>`: the MAC (HMAC-SHA256) is keyed
# by the server secret mixed with the API key the user signed in with, so a token is
# rejected once it expires, once that key changes (rotation revokes every session made
# with it), or when any part of it is altered. It holds no key and nothing secret.
_SESSION_VERSION = "v1"
_CLOCK_SKEW_S = 60  # a token "issued" later than this after now is forged or from a bad clock


@lru_cache(maxsize=1)
def _process_secret() -> bytes:
    """The signing secret when CHURNGUARD_SESSION_SECRET is unset: random, for this process only."""
    return secrets.token_bytes(32)


def _server_secret(settings: Settings) -> bytes:
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode()
    return _process_secret()


def _role_key(settings: Settings, role: str) -> SecretStr | None:
    return {"reader": settings.api_key, "admin": settings.admin_key}.get(role)


def _mac(settings: Settings, role: str, payload: str) -> str | None:
    key = _role_key(settings, role)
    if key is None:
        return None
    signing_key = hmac.new(_server_secret(settings), b"churnguard-page|" + key.get_secret_value().encode(),
                           hashlib.sha256).digest()  # fmt: skip
    return hmac.new(signing_key, payload.encode(), hashlib.sha256).hexdigest()


def issue_session(settings: Settings, role: str, now: float | None = None) -> str:
    """A signed session token for a user who just signed in with the `role`'s key."""
    issued = int(time.time() if now is None else now)
    expires = issued + int(settings.session_hours * 3600)
    payload = f"{_SESSION_VERSION}.{role}.{issued}.{expires}.{secrets.token_hex(8)}"
    mac = _mac(settings, role, payload)
    if mac is None:
        raise ValueError(f"no key configured for role {role!r}")
    return f"{payload}.{mac}"


@dataclass(frozen=True)
class PageSession:
    """A verified CS page session."""

    role: str
    issued: int
    expires: int
    token_id: str  # the nonce: what logout revokes


def verify_session(settings: Settings, token: str | None, now: float | None = None) -> PageSession | None:
    """The session a cookie holds, or None when it is missing, malformed, altered, expired,
    made with a key that has since changed, or longer-lived than the current setting allows."""
    if not token or len(token) > 200:
        return None
    parts = token.split(".")
    if len(parts) != 6 or parts[0] != _SESSION_VERSION:
        return None
    _, role, issued_s, expires_s, nonce, mac = parts
    expected = _mac(settings, role, ".".join(parts[:5]))
    if expected is None or not hmac.compare_digest(mac.encode(), expected.encode()):
        return None
    try:
        issued, expires = int(issued_s), int(expires_s)
    except ValueError:
        return None
    t = time.time() if now is None else now
    if not (issued - _CLOCK_SKEW_S <= t < expires) or expires - issued > settings.session_hours * 3600:
        return None
    return PageSession(role=role, issued=issued, expires=expires, token_id=nonce)


def _revoked(request: Request) -> dict[str, int]:
    """Token ids signed out in this process, with their expiry (kept until then)."""
    revoked: dict[str, int] | None = getattr(request.app.state, "revoked_sessions", None)
    if revoked is None:
        revoked = request.app.state.revoked_sessions = {}
    return revoked


def revoke_session(request: Request, session: PageSession) -> None:
    """Refuse this token from now on (in this process), e.g. a copy taken before logout."""
    revoked = _revoked(request)
    now = time.time()
    for token_id in [t for t, exp in revoked.items() if exp <= now]:
        del revoked[token_id]
    revoked[session.token_id] = session.expires


def page_session(request: Request, settings: Settings) -> PageSession | None:
    """The request's valid, not signed-out CS page session, if any."""
    session = verify_session(settings, request.cookies.get(SESSION_COOKIE))
    if session is None or session.token_id in _revoked(request):
        return None
    return session


def has_page_session(request: Request, settings: Settings) -> bool:
    return page_session(request, settings) is not None


def _not_ready(what: str, state: ServingState) -> HTTPException:
    _, reason = state.readiness()
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{what} not loaded: {reason}")


async def get_scores(request: Request) -> ScoreStore:
    state: ServingState = request.app.state.serving
    scores = state.current.scores
    if scores is None:
        raise _not_ready("scores", state)
    return scores


async def get_model(request: Request) -> ServingModel:
    state: ServingState = request.app.state.serving
    model = state.current.model
    if model is None:
        raise _not_ready("model", state)
    return model


ScoresDep = Annotated[ScoreStore, Depends(get_scores)]
ModelDep = Annotated[ServingModel, Depends(get_model)]


async def read_scores(request: Request) -> ScoreStore:
    """Read-key check and the served scores in one dependency (the hot lookup path)."""
    await require_reader(request)
    return await get_scores(request)


ReaderScores = Annotated[ScoreStore, Depends(read_scores)]
