"""The FastAPI app factory: routers, error handlers, metrics, and model/scores in `lifespan`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from churnguard.errors import InputError
from churnguard.params import load_section
from churnguard.scores import ScoreParams
from serving.config import Settings, get_settings
from serving.deps import BEARER_SCHEME
from serving.metrics import Metrics, MetricsMiddleware
from serving.middleware import AccountLookupMiddleware, BodyLimitMiddleware
from serving.routers import accounts, at_risk, health, model, page, score
from serving.schemas import FEATURE_UNION_TAGS, ErrorBody, FieldError
from serving.state import Explainer, ModelLoader, ServingState, explain_rows, load_bundle

log = logging.getLogger(__name__)

DESCRIPTION = """Churn risk for B2B SaaS accounts, with reasons a CS team can act on.

Every endpoint that returns customer data needs `Authorization: Bearer <CHURNGUARD_API_KEY>`;
`POST /v1/admin/reload` needs `CHURNGUARD_ADMIN_KEY`. Every risk carries the model version
and the scoring date."""


def _field(loc: tuple[object, ...] | list[object]) -> str:
    return ".".join(str(p) for p in loc)


def _fold_feature_union(raw: Any) -> list[FieldError]:
    """One error per field: a feature value fails both union branches (number, category)."""
    errors: list[FieldError] = []
    folded: dict[str, list[str]] = {}
    for e in raw:
        loc = tuple(e.get("loc", ()))
        msg = str(e.get("msg", "invalid"))
        if len(loc) > 1 and loc[-1] in FEATURE_UNION_TAGS and "features" in loc:
            field = _field(loc[:-1])
            if field not in folded:
                folded[field] = []
                errors.append(FieldError(field=field, message=""))
            folded[field].append(msg)
        else:
            errors.append(FieldError(field=_field(loc), message=msg))
    for err in errors:
        if err.field in folded and not err.message:
            detail = "; ".join(folded[err.field])
            err.message = f"expected a finite number, a category string or null ({detail})"
    return errors


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only the location and message: never echo the input (it may hold customer data).
    errors = _fold_feature_union(exc.errors())
    first = errors[0] if errors else FieldError(field="request", message="invalid")
    body = ErrorBody(detail=f"{first.field}: {first.message}", errors=errors[:50])
    return JSONResponse(body.model_dump(mode="json"), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body = ErrorBody(detail=str(exc.detail))
    return JSONResponse(body.model_dump(mode="json"), status_code=exc.status_code, headers=exc.headers)


async def _input_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=str(exc)).model_dump(mode="json"), status_code=422)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc
    )
    return JSONResponse(ErrorBody(detail="internal error").model_dump(mode="json"), status_code=500)


async def _poll(state: ServingState, seconds: float) -> None:
    """Pick up new scores or a newly promoted model without a restart."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await anyio.to_thread.run_sync(state.reload)
        except Exception:  # never let the poller die
            log.exception("reload poll failed")


def _load_tiers(settings: Settings) -> ScoreParams:
    path = Path(settings.params_path)
    if not path.exists():
        log.info("%s not found: default risk tiers", path)
        return ScoreParams()
    return load_section("score", ScoreParams, path)


def _document_bearer_auth(schema: dict[str, Any]) -> None:
    """Mark every operation that documents a 401 (it checks an API key) with the bearer scheme."""
    schema["components"].setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <CHURNGUARD_API_KEY>` (admin routes: CHURNGUARD_ADMIN_KEY)",
    }
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            if "401" in op.get("responses", {}):
                op["security"] = [{BEARER_SCHEME: []}]


def _openapi_with_error_bodies(app: FastAPI) -> Any:
    """The schema, with every 422 documented as the `ErrorBody` the handler really returns."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(
            ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}").pop("$defs", {})
        )
        components["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components["ErrorBody"].pop("$defs", None)
        error_ref = {"$ref": "#/components/schemas/ErrorBody"}
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                resp = op.get("responses", {}).get("422")
                if resp is not None:
                    resp["content"] = {"application/json": {"schema": error_ref}}
                    resp["description"] = "Invalid input; `errors` names each offending field."
        _document_bearer_auth(schema)
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    return openapi


def create_app(
    settings: Settings | None = None,
    *,
    model_loader: ModelLoader | None = None,
    explainer: Explainer | None = None,
) -> FastAPI:
    """Build the app; the model and scores load when it starts (lifespan), not here."""
    settings = settings or get_settings()
    state = ServingState(settings, model_loader or load_bundle, explainer or explain_rows)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.tiers = _load_tiers(settings).tiers
        await anyio.to_thread.run_sync(lambda: state.reload(force=True))
        # The loaded model and scores live for the process: keep them out of the cyclic GC's
        # full scans, which otherwise run during large batch requests.
        gc.collect()
        gc.freeze()
        ready, reason = state.readiness()
        log.info("ready: %s%s", ready, f" ({reason})" if reason else "")
        poller = (
            asyncio.create_task(_poll(state, settings.poll_seconds)) if settings.poll_seconds > 0 else None
        )
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller

    app = FastAPI(
        title="churnguard",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses={500: {"model": ErrorBody, "description": "Internal error (no details are exposed)."}},
    )
    app.state.settings = settings
    app.state.serving = state
    app.state.metrics = Metrics()
    app.state.tiers = ScoreParams().tiers
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(Exception, _server_error)
    # Hot lookups first: routes are matched in order.
    for router in (accounts.router, at_risk.router, health.router, score.router, model.router, page.router):
        app.include_router(router)
    # The retention/monitoring router is optional: included when its module exists.
    if importlib.util.find_spec("serving.routers.analytics") is not None:
        app.include_router(importlib.import_module("serving.routers.analytics").router)
    account_route = next(
        r for r in accounts.router.routes if getattr(r, "path", None) == accounts.ACCOUNT_PATH
    )
    # Outermost last: metrics see every request, the lookup lane included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccountLookupMiddleware, state=state, settings=settings, route=account_route)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.openapi = _openapi_with_error_bodies(app)  # type: ignore[method-assign]
    app.mount(
        "/static", StaticFiles(directory=str(Path(__file__).resolve().parent / "static")), name="static"
    )
    return app
