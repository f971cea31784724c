"""The model in service, and the admin reload."""

from __future__ import annotations

import anyio
from fastapi import APIRouter

from serving.deps import Admin, ModelDep, Reader, StateDep
from serving.schemas import ModelInfo, ReloadResult, error_responses

router = APIRouter(prefix="/v1", tags=["model"])


@router.get("/model", response_model=ModelInfo, responses=error_responses(401, 503))
async def get_model_info(_: Reader, model: ModelDep, state: StateDep) -> ModelInfo:
    """The model in service: version, trained-at, test metrics; and the scores being served."""
    scores = state.current.scores
    return ModelInfo(
        version=model.version,
        content_hash=model.content_hash,
        trained_at=model.trained_at,
        metrics=model.metrics,
        feature_names=list(model.feature_names),
        source=model.source,
        loaded_at=model.loaded_at,
        scores_model_version=scores.model_version if scores else None,
        scores_snapshot_date=scores.snapshot_date.date() if scores else None,
        scores_loaded_at=scores.loaded_at if scores else None,
    )


@router.post("/admin/reload", response_model=ReloadResult, responses=error_responses(401, 403))
async def reload(_: Admin, state: StateDep) -> ReloadResult:
    """Reload the model and scores now (admin key); a failed load keeps the last good ones."""
    model_changed, scores_changed = await anyio.to_thread.run_sync(lambda: state.reload(force=True))
    cur = state.current
    errors = [e for e in (state.model_error, state.scores_error) if e]
    return ReloadResult(
        model_version=cur.model.version if cur.model else None,
        scores_snapshot_date=cur.scores.snapshot_date.date() if cur.scores else None,
        model_reloaded=model_changed,
        scores_reloaded=scores_changed,
        error="; ".join(errors) or None,
    )
