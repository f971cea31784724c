"""Scoring of feature rows posted by a client: calibrated risk and reasons.

The body is parsed once, by a fast path that only accepts: a msgspec decoder typed by the
model's own feature list (`_FastReader`), which holds exactly what `ScoreRequest` plus the
feature check would accept (numbers that are not booleans, finite since msgspec rejects
NaN, infinity and out-of-range numbers, known feature names, bounded strings and batch),
then the category values. Anything the fast path
does not accept goes through FastAPI's own steps (`json.loads`, `ScoreRequest` validation,
the row-by-row feature check), so every rejection and its 422 body are the ones the API
has always given. The response is built as plain dicts in `ScoreResponse`'s field order and
serialised once in Rust (tests check it equals `ScoreResponse(...).model_dump_json()`).
"""

from __future__ import annotations

import email.message
import itertools
import json
import logging
import math
import operator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Annotated, Any

import anyio.to_thread
import msgspec
import numpy as np
import pandas as pd
import pydantic_core
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from churnguard.scores import assign_tiers
from models.reasons import ReasonTable
from serving.config import Settings
from serving.deps import ModelDep, Reader, SettingsDep, StateDep
from serving.schemas import (
    MAX_BATCH_SCHEMA,
    MAX_FEATURES_PER_ROW,
    MAX_TEXT,
    TOP_N_MAX,
    ErrorBody,
    FieldError,
    ScoreRequest,
    ScoreResponse,
    error_responses,
)
from serving.state import ServingModel, ServingState

router = APIRouter(prefix="/v1", tags=["score"])
log = logging.getLogger(__name__)


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """`schema` with every `#/$defs/...` reference replaced by its definition."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


# The handler reads the body itself (it is parsed once, see the module doc), so the OpenAPI
# schema of the request body is given here, self-contained.
_REQUEST_SCHEMA = ScoreRequest.model_json_schema()
_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline_refs(_REQUEST_SCHEMA, _REQUEST_SCHEMA.get("$defs", {}))}
        },
    }
}


@dataclass(frozen=True)
class _Batch:
    """A validated request: ids, the feature frame (model order), and the options."""

    ids: list[str | None]
    frame: pd.DataFrame
    reasons: bool
    top_n: int


def _error(status: int, detail: str, errors: list[FieldError] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=detail, errors=errors).model_dump(mode="json"), status_code=status)


def _too_many(n: int, limit: int) -> JSONResponse:
    return _error(
        413,
        f"batch of {n} rows exceeds the limit of {limit}",
        [FieldError(field="rows", message=f"at most {limit} rows")],
    )


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule (strict content type): application/json or application/*+json."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _frame(model: ServingModel, X: np.ndarray, cats: dict[str, list[str | None]]) -> pd.DataFrame:
    """The model-ordered frame: one float block, categorical columns as objects."""
    frame = pd.DataFrame(X, columns=list(model.feature_names), copy=False)
    for name, values in cats.items():
        frame[name] = pd.Series(values, dtype=object)
    return frame


class _FastReader:
    """A typed decoder for `ScoreRequest` bodies against one model's features.

    A msgspec struct whose fields are the model's features (renamed, so any column name
    works): a numeric feature takes a number or null (never a boolean, a string, NaN or an
    out-of-range number), a categorical one a string of at most `MAX_TEXT` characters or
    null; unknown fields and keys are rejected. Category values are checked after decoding.
    """

    def __init__(self, names: tuple[str, ...], categorical: frozenset[str]) -> None:
        text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
        attrs = [f"f{j}" for j in range(len(names))]
        features = msgspec.defstruct(
            "Features",
            [
                (a, (text if n in categorical else float) | None, None)
                for a, n in zip(attrs, names, strict=True)
            ],
            rename=dict(zip(attrs, names, strict=True)),
            forbid_unknown_fields=True,
            kw_only=True,
        )
        row = msgspec.defstruct(
            "Row",
            [("id", text | None, None), ("features", features)],
            forbid_unknown_fields=True,
            kw_only=True,
        )
        rows = Annotated[list[row], msgspec.Meta(min_length=1, max_length=MAX_BATCH_SCHEMA)]  # type: ignore[valid-type]
        top_n = Annotated[int, msgspec.Meta(ge=1, le=TOP_N_MAX)]
        request = msgspec.defstruct(
            "Request",
            [("rows", rows), ("reasons", bool, True), ("top_n", top_n, 3)],
            forbid_unknown_fields=True,
            kw_only=True,
        )
        self.decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(request)
        self.numeric = [j for j, n in enumerate(names) if n not in categorical]
        self.numeric_values = operator.attrgetter(*(attrs[j] for j in self.numeric)) if self.numeric else None
        self.categorical = {n: attrs[j] for j, n in enumerate(names) if n in categorical}


@lru_cache(maxsize=8)
def _reader(names: tuple[str, ...], categorical: frozenset[str]) -> _FastReader | None:
    """The model's decoder, built once per feature list. None (every body goes the full way)
    for rows that wide, or for feature names msgspec cannot use as JSON keys (a backslash,
    a quote or a control character: LightGBM accepts some of them)."""
    if len(names) > MAX_FEATURES_PER_ROW:
        return None
    try:
        return _FastReader(names, categorical)
    except ValueError:
        log.info("POST /v1/score: feature names unusable by the fast parser; full validation only")
        return None


def _fast_batch(model: ServingModel, body: bytes) -> _Batch | None:
    """The batch, when every value is plainly valid; None = let the full validation decide."""
    reader = _reader(model.feature_names, frozenset(model.categories))
    if reader is None:
        return None
    try:
        doc = reader.decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):  # invalid UTF-8
        return None
    feats = [row.features for row in doc.rows]
    n = len(feats)
    X = np.empty((n, len(model.feature_names)))
    if reader.numeric_values is not None:
        values = np.array(list(map(reader.numeric_values, feats)), dtype=float)
        X[:, reader.numeric] = values.reshape(n, len(reader.numeric))
    cats: dict[str, list[str | None]] = {}
    for name, attr in reader.categorical.items():
        col = list(map(operator.attrgetter(attr), feats))
        if not {v for v in set(col) if v is not None} <= model.categories[name]:
            return None
        cats[name] = col
        X[:, model.feature_index[name]] = np.nan
    return _Batch([row.id for row in doc.rows], _frame(model, X, cats), doc.reasons, doc.top_n)


def _validated_request(body: bytes, content_type: str | None) -> ScoreRequest:
    """The request as FastAPI would decode and validate it (same errors, same 400/422)."""
    decoded: Any = body
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if _is_json(content_type):
        try:
            decoded = json.loads(body)
        except json.JSONDecodeError as e:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", e.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": e.msg},
                    }
                ]
            ) from e
        except Exception as e:  # not UTF-8/16/32: FastAPI's 400
            raise HTTPException(status_code=400, detail="There was an error parsing the body") from e
    try:
        return ScoreRequest.model_validate(decoded, from_attributes=True)  # as FastAPI does
    except ValidationError as e:
        errors = [{**err, "loc": ("body", *err["loc"])} for err in e.errors()]
        raise RequestValidationError(errors) from e


def _checked_frame(model: ServingModel, body: ScoreRequest) -> tuple[pd.DataFrame | None, list[FieldError]]:
    """The frame from a validated request, row by row, collecting up to 20 field errors in row order."""
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
    return _frame(model, X, cats), errors


def _reason(r: Any) -> dict[str, Any]:
    """`serving.schemas.Reason` as a dict in its field order (from our typed `models.reasons.Reason`)."""
    value = r.value if r.value is not None and math.isfinite(r.value) else None
    return {"text": r.text, "family": r.family, "action": r.action, "playbook_id": r.playbook_id,
            "feature": r.feature, "value": value, "shap": float(r.shap)}  # fmt: skip


def _reason_lists(reasons: Any) -> list[list[dict[str, Any]]]:
    """Each row's reasons as dicts in `serving.schemas.Reason`'s field order.

    From a `ReasonTable` (the default explainer) column by column, or from per-row lists of
    `Reason`-like objects (any other explainer).
    """
    if not isinstance(reasons, ReasonTable):
        return [[_reason(r) for r in row] for row in reasons]
    values = [v if v is not None and math.isfinite(v) else None for v in reasons.value]
    dicts = [
        {"text": t, "family": f, "action": a, "playbook_id": p, "feature": n, "value": v, "shap": s}
        for t, f, a, p, n, v, s in zip(
            reasons.text, reasons.family, reasons.action, reasons.playbook_id, reasons.feature, values,
            reasons.shap, strict=True,
        )
    ]  # fmt: skip
    bounds = reasons.offsets.tolist()
    return [dicts[a:b] for a, b in itertools.pairwise(bounds)]


def render_response(
    version: str, scored_at: datetime, ids: list[str | None], risk: np.ndarray, tiers: list[str],
    reasons: Any,
) -> bytes:  # fmt: skip
    """The `ScoreResponse` JSON, built from plain dicts in the schema's field order.

    `reasons`: None, per-row lists of `Reason`s, or a `models.reasons.ReasonTable`.
    """
    per_row = None if reasons is None else _reason_lists(reasons)
    rows = [
        {"id": i, "risk": p, "risk_tier": t, "reasons": None if per_row is None else per_row[k]}
        for k, (i, p, t) in enumerate(zip(ids, risk.tolist(), tiers, strict=True))
    ]
    return pydantic_core.to_json({"model_version": version, "scored_at": scored_at, "rows": rows})


def _score(
    body: bytes, content_type: str | None, model: ServingModel, state: ServingState, settings: Settings,
    tiers: Any,
) -> Response:  # fmt: skip
    batch = _fast_batch(model, body) if _is_json(content_type) else None
    if batch is None:
        request = _validated_request(body, content_type)
        if len(request.rows) > settings.max_batch:
            return _too_many(len(request.rows), settings.max_batch)
        frame, errors = _checked_frame(model, request)
        if frame is None:
            return _error(422, f"{errors[0].field}: {errors[0].message}", errors)
        batch = _Batch([row.id for row in request.rows], frame, request.reasons, request.top_n)
    elif len(batch.ids) > settings.max_batch:
        return _too_many(len(batch.ids), settings.max_batch)
    risk = np.clip(np.asarray(model.bundle.predict_proba(batch.frame), dtype=float), 0.0, 1.0)
    reasons = None
    if batch.reasons:
        reasons = state.explainer(
            model.bundle, batch.frame, top_n=batch.top_n, language=settings.reason_language
        )
    out = render_response(
        model.version, datetime.now(UTC), batch.ids, risk, assign_tiers(risk, tiers).tolist(), reasons
    )
    return Response(out, media_type="application/json")


@router.post(
    "/score",
    response_model=ScoreResponse,
    responses=error_responses(400, 401, 413, 422, 503),
    openapi_extra=_REQUEST_BODY,
)
async def score(_: Reader, model: ModelDep, state: StateDep, settings: SettingsDep, request: Request) -> Any:
    """Score one row or a batch of feature rows: calibrated risk, tier and top reasons."""
    body = await request.body()
    work = partial(
        _score, body, request.headers.get("content-type"), model, state, settings, request.app.state.tiers
    )
    return await anyio.to_thread.run_sync(work)
