"""Retention metrics and model monitoring for dashboards, from the report stage's JSON files.

The files (`Settings.report_path`, `Settings.monitoring_path`) are re-read when they
change on disk, so a new `dvc repro` shows up without a restart.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from serving.deps import Reader, SettingsDep
from serving.schemas import error_responses

router = APIRouter(prefix="/v1", tags=["analytics"])

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
Number = float | int | None


class RetentionMonth(BaseModel):
    """One calendar month's retention metrics (definitions: docs/retention.md)."""

    month: str = Field(description="YYYY-MM")
    logo_retention_rate: float | None = None
    renewal_rate: float | None = None
    gross_revenue_retention: float | None = None
    net_revenue_retention: float | None = None
    logo_churn_rate: float | None = None
    mrr_churn_rate: float | None = None
    customers_start: int | None = None
    customers_end: int | None = None
    new_logos: int | None = None
    reactivated_logos: int | None = None
    churned_logos: int | None = None
    terms_up_for_renewal: int | None = None
    terms_renewed: int | None = None
    mrr_start: float | None = None
    mrr_end: float | None = None
    expansion_mrr: float | None = None
    contraction_mrr: float | None = None
    churned_mrr: float | None = None
    new_mrr: float | None = None


class RetentionResponse(BaseModel):
    """Retention by month for the whole company or one segment, and pooled over the months."""

    definition: str
    data_end: str
    segment: str | None
    segments: list[str]
    overall: dict[str, Number]
    months: list[RetentionMonth]
    notes: list[str]


class MonitoringResponse(BaseModel):
    """Drift, backtest and the retrain recommendation from the last report run."""

    retrain_recommended: bool
    reasons: list[str]
    summary: dict[str, Any]
    thresholds: dict[str, Any]
    reference: dict[str, Any]
    current: dict[str, Any]
    model: str
    feature_drift: list[dict[str, Any]]
    score_drift: dict[str, Any] | None
    backtest: dict[str, Any]
    notes: list[str]


class _JsonCache:
    """A JSON file parsed once per change of its modification time and size."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}

    def load(self, path: Path, what: str) -> dict[str, Any]:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"{what} not available yet: run the report stage ({path})",
            ) from None
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._entries.get(path)
            if hit is not None and hit[0] == key:
                return hit[1]
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"{what} could not be read: {exc}"
            ) from None
        with self._lock:
            self._entries[path] = (key, doc)
        return doc


_cache = _JsonCache()


def _months(table: dict[str, dict[str, Any]], start: str | None, end: str | None) -> list[RetentionMonth]:
    rows = []
    for month in sorted(table):
        if (start and month < start) or (end and month > end):
            continue
        values = {k: v for k, v in table[month].items() if k in RetentionMonth.model_fields}
        for k in ("customers_start", "customers_end", "new_logos", "reactivated_logos", "churned_logos",
                  "terms_up_for_renewal", "terms_renewed"):  # fmt: skip
            if values.get(k) is not None:
                values[k] = int(values[k])
        rows.append(RetentionMonth(month=month, **values))
    return rows


def _check_month(value: str | None, name: str) -> None:
    if value is not None and not _MONTH.match(value):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: expected YYYY-MM, got {value!r}")


@router.get("/retention", response_model=RetentionResponse, responses=error_responses(401, 404, 422, 503))
def get_retention(
    _: Reader,
    settings: SettingsDep,
    segment: Annotated[str | None, Query(max_length=100, description="One segment, e.g. smb")] = None,
    start: Annotated[str | None, Query(description="First month, YYYY-MM")] = None,
    end: Annotated[str | None, Query(description="Last month, YYYY-MM")] = None,
) -> RetentionResponse:
    """Retention rate, renewal rate, GRR, NRR, logo and MRR churn by month (optionally one segment)."""
    _check_month(start, "start")
    _check_month(end, "end")
    doc = _cache.load(Path(settings.report_path), "retention report")
    segments = sorted(doc.get("by_segment", {}))
    if segment is None:
        overall, table = doc.get("overall", {}), doc.get("by_month", {})
    else:
        key = segment.strip().lower()
        if key not in doc.get("by_segment", {}):
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"segment {segment!r} not found; known: {segments}"
            )
        overall, table = doc["by_segment"][key]["overall"], doc["by_segment"][key]["by_month"]
    return RetentionResponse(
        definition=str(doc.get("definition", "")),
        data_end=str(doc.get("data_end", "")),
        segment=segment.strip().lower() if segment else None,
        segments=segments,
        overall={k: v for k, v in overall.items() if v is None or isinstance(v, int | float)},
        months=_months(table, start, end),
        notes=list(doc.get("notes", [])),
    )


@router.get("/monitoring", response_model=MonitoringResponse, responses=error_responses(401, 422, 503))
def get_monitoring(
    _: Reader,
    settings: SettingsDep,
    top: Annotated[
        int, Query(ge=1, le=1000, description="Features in the drift list, largest PSI first")
    ] = 50,
) -> MonitoringResponse:
    """Feature, missing-rate and score drift, realised backtest, and whether to retrain (with reasons)."""
    doc = _cache.load(Path(settings.monitoring_path), "monitoring report")
    retrain = doc.get("retrain", {})
    return MonitoringResponse(
        retrain_recommended=bool(retrain.get("recommended", False)),
        reasons=list(retrain.get("reasons", [])),
        summary=doc.get("summary", {}),
        thresholds=doc.get("thresholds", {}),
        reference=doc.get("reference", {}),
        current=doc.get("current", {}),
        model=str(doc.get("model", "")),
        feature_drift=list(doc.get("feature_drift", []))[:top],
        score_drift=doc.get("score_drift"),
        backtest=doc.get("backtest", {}),
        notes=list(doc.get("notes", [])),
    )
