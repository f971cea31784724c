"""One account's risk, reasons, playbook and history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response

from serving.deps import ReaderScores
from serving.schemas import AccountRisk, error_responses

router = APIRouter(prefix="/v1", tags=["accounts"])
ACCOUNT_PATH = "/v1/accounts/{account_id}"  # its success case is also served by `AccountLookupMiddleware`
ACCOUNT_ID_MAX = 200  # longest account id the path accepts


@router.get(
    ACCOUNT_PATH.removeprefix("/v1"),
    response_model=AccountRisk,
    responses=error_responses(401, 404, 422, 503),
)
async def get_account(
    scores: ReaderScores, account_id: Annotated[str, Path(min_length=1, max_length=ACCOUNT_ID_MAX)]
) -> Response:
    """One account: risk, tier, health score and components, reasons, playbook, risk history."""
    body = scores.account_json.get(account_id)
    if body is None:
        raise HTTPException(
            404, f"account_id {account_id!r} is not in the scores of {scores.snapshot_date.date()}"
        )
    # Precomputed from the AccountRisk model when the scores were loaded: no work per request.
    return Response(body, media_type="application/json")
