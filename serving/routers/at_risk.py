"""The at-risk list: filters, sorting, pagination; JSON or CSV."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Response

from churnguard.scores import AtRiskQuery, SortKey, select_at_risk
from serving.deps import ReaderScores
from serving.schemas import AtRiskPage, Tier, error_responses
from serving.state import ScoreStore, csv_header

router = APIRouter(prefix="/v1", tags=["at-risk"])


async def at_risk_filters(
    segment: Annotated[str | None, Query(max_length=100, description="Segment, e.g. smb.")] = None,
    renewal_within_days: Annotated[
        int | None, Query(ge=0, le=100_000, description="Renewal date within this many days.")
    ] = None,
    min_risk: Annotated[float | None, Query(ge=0.0, le=1.0, allow_inf_nan=False)] = None,
    tier: Annotated[Tier | None, Query()] = None,
    sort: Annotated[SortKey, Query()] = "expected_arr_lost",
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> AtRiskQuery:
    """The list's query parameters (shared by the API and the CS page)."""
    return AtRiskQuery(
        segment=segment or None,
        renewal_within_days=renewal_within_days,
        min_risk=min_risk,
        tier=tier,
        sort=sort,
        descending=order == "desc",
    )


Filters = Annotated[AtRiskQuery, Depends(at_risk_filters)]


def select(scores: ScoreStore, query: AtRiskQuery) -> list[int]:
    return select_at_risk(scores.columns, query).tolist()


def render_csv(scores: ScoreStore, idx: list[int]) -> str:
    return csv_header() + "".join(scores.csv_rows[i] for i in idx)


def csv_response(scores: ScoreStore, idx: list[int]) -> Response:
    name = f"at-risk-{scores.snapshot_date.date()}.csv"
    return Response(
        render_csv(scores, idx),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Model-Version": scores.model_version,
            "X-Snapshot-Date": str(scores.snapshot_date.date()),
        },
    )


@router.get(
    "/at-risk",
    response_model=AtRiskPage,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "JSON page, or CSV with `format=csv` / `Accept: text/csv`",
        },
        **error_responses(401, 422, 503),
    },
)
async def at_risk(
    scores: ReaderScores,
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    format: Annotated[Literal["json", "csv"] | None, Query(description="Overrides Accept.")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Accounts ranked by expected ARR lost (or `sort`), filtered; JSON page or CSV (all matches)."""
    idx = select(scores, filters)
    want_csv = format == "csv" or (format is None and accept is not None and "text/csv" in accept)
    if want_csv:
        return csv_response(scores, idx)
    page = idx[offset : offset + limit]
    head = b"{%s,%s" % (
        scores.meta_json,
        b'"total":%d,"offset":%d,"limit":%d,"items":[' % (len(idx), offset, limit),
    )
    body = head + b",".join(scores.item_json[i] for i in page) + b"]}"
    return Response(body, media_type="application/json")
