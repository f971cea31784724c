"""Dependencies as `Annotated` aliases: settings, the served state, and API-key auth."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

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


def _key(request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return key


async def require_reader(request: Request) -> str:
    """The read key (or the admin key) is required for customer data."""
    settings: Settings = request.app.state.settings
    if settings.api_key is None and settings.admin_key is None:
        raise _unauthorized("the service has no API key configured (set CHURNGUARD_API_KEY)")
    key = _key(request)
    if _matches(key, settings.api_key):
        return "reader"
    if _matches(key, settings.admin_key):
        return "admin"
    raise _unauthorized("invalid API key")


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


def session_token(settings: Settings) -> str | None:
    """The CS page's cookie value: an HMAC of the read key, so the cookie never holds the key."""
    key = settings.api_key or settings.admin_key
    if key is None:
        return None
    return hmac.new(key.get_secret_value().encode(), b"churnguard-page-session", hashlib.sha256).hexdigest()


def has_page_session(request: Request, settings: Settings) -> bool:
    token = session_token(settings)
    given = request.cookies.get(SESSION_COOKIE)
    return token is not None and given is not None and hmac.compare_digest(given.encode(), token.encode())


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
