"""Scoring of feature rows posted by a client: calibrated risk and reasons."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from churnguard.scores import assign_tiers
from serving.deps import ModelDep, Reader, SettingsDep, StateDep
from serving.schemas import (
    ErrorBody,
    FieldError,
    Reason,
    ScoredRow,
    ScoreRequest,
    ScoreResponse,
    error_responses,
)
from serving.state import ServingModel

router = APIRouter(prefix="/v1", tags=["score"])


def _error(status: int, detail: str, errors: list[FieldError] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=detail, errors=errors).model_dump(mode="json"), status_code=status)


def _matrix(model: ServingModel, body: ScoreRequest) -> tuple[np.ndarray | None, list[FieldError]]:
    """Rows as a float matrix in the model's feature order (NaN = missing); unknown names rejected."""
    X = np.full((len(body.rows), len(model.feature_names)), np.nan)
    index = model.feature_index
    errors: list[FieldError] = []
    for r, row in enumerate(body.rows):
        for name, value in row.features.items():
            j = index.get(name)
            if j is None:
                errors.append(FieldError(field=f"rows.{r}.features.{name}", message="unknown feature"))
                if len(errors) >= 20:
                    return None, errors
            elif value is not None:
                X[r, j] = value
    return (None if errors else X), errors


def _reason(r: Any) -> Reason:
    value = r.value if r.value is not None and math.isfinite(float(r.value)) else None
    return Reason(
        text=r.text, family=r.family, action=r.action, playbook_id=r.playbook_id,
        feature=r.feature, value=value, shap=float(r.shap),
    )  # fmt: skip


@router.post("/score", response_model=ScoreResponse, responses=error_responses(401, 413, 422, 503))
def score(
    _: Reader, body: ScoreRequest, model: ModelDep, state: StateDep, settings: SettingsDep, request: Request
) -> Any:
    """Score one row or a batch of feature rows: calibrated risk, tier and top reasons."""
    if len(body.rows) > settings.max_batch:
        return _error(
            413,
            f"batch of {len(body.rows)} rows exceeds the limit of {settings.max_batch}",
            [FieldError(field="rows", message=f"at most {settings.max_batch} rows")],
        )
    X, errors = _matrix(model, body)
    if X is None:
        names = ", ".join(e.field for e in errors[:3])
        return _error(422, f"unknown feature names: {names}", errors)
    frame = pd.DataFrame(X, columns=list(model.feature_names))
    risk = np.clip(np.asarray(model.bundle.predict_proba(frame), dtype=float), 0.0, 1.0)
    tiers = assign_tiers(risk, request.app.state.tiers)
    reasons: list[list[Reason]] | None = None
    if body.reasons:
        explained = state.explainer(model.bundle, frame, top_n=body.top_n, language=settings.reason_language)
        reasons = [[_reason(r) for r in rs] for rs in explained]
    rows = [
        ScoredRow(
            id=row.id,
            risk=float(risk[i]),
            risk_tier=tiers[i],
            reasons=None if reasons is None else reasons[i],
        )
        for i, row in enumerate(body.rows)
    ]
    return ScoreResponse(model_version=model.version, scored_at=datetime.now(UTC), rows=rows)
