"""Scoring of feature rows posted by a client: calibrated risk and reasons."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request, Response
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


def _frame(model: ServingModel, body: ScoreRequest) -> tuple[pd.DataFrame | None, list[FieldError]]:
    """Rows in the model's feature order (NaN/None = missing); unknown names and wrong kinds rejected.

    Column by column (C-level list and array builds); any doubt about a value sends the whole
    batch through the row-by-row check, which names each offending field.
    """
    feats = [row.features for row in body.rows]
    known = model.feature_index.keys()
    if any(not (f.keys() <= known) for f in feats):
        return _frame_checked(model, body)
    columns: dict[str, Any] = {}
    for name in model.feature_names:
        col = [f.get(name) for f in feats]
        kinds = set(map(type, col))
        allowed = model.categories.get(name)
        if allowed is not None:
            if not kinds <= {str, type(None)} or not {v for v in col if v is not None} <= allowed:
                return _frame_checked(model, body)
            columns[name] = pd.Series(col, dtype=object)
        elif not kinds <= {float, int, type(None)}:
            return _frame_checked(model, body)
        else:
            columns[name] = np.array(col, dtype=float)
    return pd.DataFrame(columns), []


def _frame_checked(model: ServingModel, body: ScoreRequest) -> tuple[pd.DataFrame | None, list[FieldError]]:
    """`_frame` row by row, collecting up to 20 field errors in row order."""
    n = len(body.rows)
    X = np.full((n, len(model.feature_names)), np.nan)
    cats: dict[str, list[str | None]] = {name: [None] * n for name in model.categories}
    index = model.feature_index
    errors: list[FieldError] = []
    for r, row in enumerate(body.rows):
        for name, value in row.features.items():
            j = index.get(name)
            where = f"rows.{r}.features.{name}"
            if j is None:
                errors.append(FieldError(field=where, message="unknown feature"))
            elif value is None:
                continue
            elif name in cats:
                if not isinstance(value, str) or value not in model.categories[name]:
                    allowed = ", ".join(sorted(model.categories[name])[:20])
                    errors.append(FieldError(field=where, message=f"expected one of: {allowed}"))
                else:
                    cats[name][r] = value
            elif isinstance(value, str):
                errors.append(FieldError(field=where, message="expected a number"))
            else:
                X[r, j] = value
            if len(errors) >= 20:
                return None, errors
    if errors:
        return None, errors
    columns: dict[str, Any] = {}
    for j, name in enumerate(model.feature_names):
        columns[name] = pd.Series(cats[name], dtype=object) if name in cats else X[:, j]
    return pd.DataFrame(columns), errors


def _reason(r: Any) -> Reason:
    # Built from our own typed `models.reasons.Reason`: construct without re-validating.
    value = r.value if r.value is not None and math.isfinite(float(r.value)) else None
    return Reason.model_construct(
        text=r.text, family=r.family, action=r.action, playbook_id=r.playbook_id,
        feature=r.feature, value=value, shap=float(r.shap),
    )  # fmt: skip


@router.post("/score", response_model=ScoreResponse, responses=error_responses(400, 401, 413, 422, 503))
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
    frame, errors = _frame(model, body)
    if frame is None:
        return _error(422, f"{errors[0].field}: {errors[0].message}", errors)
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
    body_out = ScoreResponse(model_version=model.version, scored_at=datetime.now(UTC), rows=rows)
    # Already validated as it was built: serialise once, skip FastAPI's second validation pass.
    return Response(body_out.model_dump_json(), media_type="application/json")
