"""Probes and Prometheus metrics (no customer data, so no key)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import StateDep
from serving.schemas import Health, Readiness

router = APIRouter(tags=["probes"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready; `reason` says why."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    """Readiness: true once a model and scores are loaded; `reason` explains otherwise."""
    ready, reason = state.readiness()
    cur = state.current
    body = Readiness(
        ready=ready,
        reason=reason,
        model_version=cur.model.version if cur.model else None,
        scores_snapshot_date=cur.scores.snapshot_date.date() if cur.scores else None,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: request counts, latency histograms, model version."""
    m = request.app.state.metrics
    cur = request.app.state.serving.current
    m.set_model(cur.model.version if cur.model else None)
    m.reload_failures.set(request.app.state.serving.failures)
    if cur.scores is not None:
        m.scores_accounts.set(len(cur.scores))
        m.scores_date.set(cur.scores.snapshot_date.timestamp())
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
