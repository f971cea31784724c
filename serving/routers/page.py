"""The CS page: server-rendered at-risk list, account detail with a risk trend, CSV download.

Auth: a login form posts the read key once; the response sets an HttpOnly, SameSite=Strict
cookie holding a signed, expiring session token (never the key; see `serving.deps`).
No key ever appears in a URL. SameSite=Strict keeps the cookie off every cross-site
request, so a form on another site cannot act with it (CSRF); the login form itself
needs the key, so a forged login POST gains nothing.
"""

from __future__ import annotations

import hmac
import math
from pathlib import Path as FsPath
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from churnguard.errors import InputError
from churnguard.scores import AtRiskQuery
from serving.config import Settings
from serving.deps import (
    SESSION_COOKIE,
    SettingsDep,
    StateDep,
    has_page_session,
    issue_session,
    page_session,
    revoke_session,
)
from serving.routers.at_risk import csv_response, select
from serving.schemas import HistoryPoint
from serving.state import ScoreStore, ServingState

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(FsPath(__file__).resolve().parents[1] / "templates"))
PAGE_SIZE = 100


def _blank_is_none(value: str | None) -> str | None:
    return None if value is None or not value.strip() else value.strip()


async def page_filters(
    segment: str | None = None,
    tier: str | None = None,
    renewal_within_days: str | None = None,
    min_risk: str | None = None,
    sort: str | None = None,
    order: str | None = None,
) -> AtRiskQuery:
    """The list's filters from an HTML form, where an untouched field arrives as ''."""
    try:
        days = _blank_is_none(renewal_within_days)
        risk = _blank_is_none(min_risk)
        min_risk_value = None if risk is None else float(risk)
        if min_risk_value is not None and not math.isfinite(min_risk_value):
            raise ValueError("min_risk must be finite")
        return AtRiskQuery(
            segment=_blank_is_none(segment),
            tier=_blank_is_none(tier),
            renewal_within_days=None if days is None else int(days),
            min_risk=min_risk_value,
            sort=_blank_is_none(sort) or "expected_arr_lost",
            descending=(_blank_is_none(order) or "desc") != "asc",
        )
    except (ValueError, InputError) as exc:
        raise HTTPException(422, f"bad filter: {exc}") from None


PageFilters = Annotated[AtRiskQuery, Depends(page_filters)]


def _login_redirect() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


def _page_scores(request: Request, settings: Settings, state: ServingState) -> ScoreStore | Response:
    """The loaded scores, or the response to send instead (login page, or 503 not ready)."""
    if not has_page_session(request, settings):
        return _login_redirect()
    scores = state.current.scores
    if scores is None:
        _, reason = state.readiness()
        return templates.TemplateResponse(request, "not_ready.html", {"reason": reason}, status_code=503)
    return scores


def trend_svg(points: list[HistoryPoint], width: int = 360, height: int = 110) -> dict[str, Any]:
    """Coordinates for a small inline-SVG risk chart: risk 0-100 % up, scoring runs across."""
    left, right, top, bottom = 34, 8, 8, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(points)
    dots = []
    for i, p in enumerate(points):
        x = left + (i * plot_w / (n - 1) if n > 1 else plot_w / 2)
        y = top + (1 - p.risk) * plot_h
        dots.append({"x": round(x, 1), "y": round(y, 1), "label": f"{p.snapshot_date}: {p.risk:.0%}"})
    path = ("M" + " L".join(f"{d['x']},{d['y']}" for d in dots)) if dots else ""
    return {
        "width": width,
        "height": height,
        "path": path,
        "dots": dots,
        "grid": [{"y": round(top + (1 - v) * plot_h, 1), "label": f"{v:.0%}"} for v in (0.0, 0.5, 1.0)],
        "left": left,
        "right": width - right,
        "first": str(points[0].snapshot_date) if points else "",
        "last": str(points[-1].snapshot_date) if n > 1 else "",
        "axis_y": height - 6,
    }


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, settings: SettingsDep) -> Response:
    raw = await request.body()
    key = (parse_qs(raw.decode("utf-8", "replace")).get("key") or [""])[0]
    roles = {"reader": settings.api_key, "admin": settings.admin_key}
    # Compare against every configured key (no early exit), so timing does not tell which matched.
    matched = [
        role for role, k in roles.items()
        if k is not None and hmac.compare_digest(key.encode(), k.get_secret_value().encode())
    ]  # fmt: skip
    if not matched:
        return templates.TemplateResponse(
            request, "login.html", {"error": "That key is not valid."}, status_code=401
        )
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE, issue_session(settings, matched[0]), httponly=True, samesite="strict",
        secure=settings.cookie_secure, max_age=int(settings.session_hours * 3600), path="/",
    )  # fmt: skip
    return response


@router.post("/logout")
async def logout(request: Request, settings: SettingsDep) -> Response:
    """Sign out: the token is refused from now on (in this process) and the cookie cleared."""
    session = page_session(request, settings)
    if session is not None:
        revoke_session(request, session)
    response = _login_redirect()
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=settings.cookie_secure
    )
    return response


@router.get("/", response_class=HTMLResponse)
async def at_risk_page(
    request: Request,
    settings: SettingsDep,
    state: StateDep,
    filters: PageFilters,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    scores = _page_scores(request, settings, state)
    if isinstance(scores, Response):
        return scores
    idx = select(scores, filters)
    params = {k: v for k, v in request.query_params.items() if k != "offset" and v != ""}
    q = filters
    return templates.TemplateResponse(
        request,
        "list.html",
        {
            "scores": scores,
            "items": [scores.items[i] for i in idx[offset : offset + PAGE_SIZE]],
            "total": len(idx),
            "offset": offset,
            "page_size": PAGE_SIZE,
            "q": q,
            "csv_url": "/export.csv?" + urlencode(params),
            "next_url": "/?" + urlencode({**params, "offset": offset + PAGE_SIZE}),
            "prev_url": "/?" + urlencode({**params, "offset": max(offset - PAGE_SIZE, 0)}),
        },
    )


@router.get("/export.csv")
async def export_csv(
    request: Request, settings: SettingsDep, state: StateDep, filters: PageFilters
) -> Response:
    if not has_page_session(request, settings):
        return _login_redirect()
    scores = state.current.scores
    if scores is None:
        return Response("scores not loaded", status_code=503)
    return csv_response(scores, select(scores, filters))


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
async def account_page(
    request: Request,
    settings: SettingsDep,
    state: StateDep,
    account_id: Annotated[str, Path(min_length=1, max_length=200)],
) -> Response:
    scores = _page_scores(request, settings, state)
    if isinstance(scores, Response):
        return scores
    account = scores.accounts.get(account_id)
    if account is None:
        return templates.TemplateResponse(
            request, "not_found.html", {"account_id": account_id}, status_code=404
        )
    return templates.TemplateResponse(
        request, "account.html", {"a": account, "scores": scores, "trend": trend_svg(account.history)}
    )
