"""POST /v1/score's fast body parser accepts only what the full validation accepts, with the same frame."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.routers.score import _Batch, _checked_frame, _fast_batch, _validated_request, render_response
from serving.schemas import ScoreResponse
from serving.state import ServingModel

NAMES = ("seats", "plan", "nps_last", "segment", "active_users_30d")
CATEGORIES = {"plan": frozenset({"basic", "pro"}), "segment": frozenset({"smb", "enterprise"})}
MODEL = ServingModel(
    bundle=None, version="1", content_hash=None, trained_at=None, metrics={}, feature_names=NAMES,
    feature_index={n: i for i, n in enumerate(NAMES)}, categories=CATEGORIES, source="test",
    fingerprint="", loaded_at=datetime.now(UTC),
)  # fmt: skip
FULL_ROW = {"seats": 3, "plan": "pro", "nps_last": None, "segment": "smb", "active_users_30d": 2.5}


def _full(body: bytes) -> tuple[Any, pd.DataFrame] | None:
    """FastAPI's decode + ScoreRequest + the row-by-row feature check; None = rejected."""
    try:
        request = _validated_request(body, "application/json")
    except (RequestValidationError, HTTPException):
        return None
    frame, _ = _checked_frame(MODEL, request)
    return None if frame is None else (request, frame)


def _assert_same(body: bytes) -> bool:
    """The fast path accepts only bodies the full path accepts, and reads them the same way."""
    fast, full = _fast_batch(MODEL, body), _full(body)
    if fast is None:
        return full is not None
    assert full is not None, body[:300]
    request, frame = full
    assert fast.ids == [row.id for row in request.rows]
    assert (fast.reasons, fast.top_n) == (request.reasons, request.top_n)
    pd.testing.assert_frame_equal(fast.frame, frame, check_exact=True)
    return True


def _body(rows: list[Any], **top: Any) -> bytes:
    return json.dumps({"rows": rows, **top}).encode()


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        (_body([{"features": FULL_ROW}] * 3), True),
        (_body([{"id": "a", "features": FULL_ROW}, {"id": None, "features": {"seats": 1}}], top_n=2), True),
        (_body([{"features": {}}], reasons=False), True),
        # n_features names, but an unknown one in place of a categorical one
        (_body([{"features": {**{k: v for k, v in FULL_ROW.items() if k != "plan"}, "bogus": 1.0}}]), False),
        (_body([{"features": {**{k: v for k, v in FULL_ROW.items() if k != "seats"}, "bogus": 1.0}}]), False),
        (_body([{"features": {**FULL_ROW, "plan": "gold"}}]), False),
        (_body([{"features": {**FULL_ROW, "plan": True}}]), False),
        (_body([{"features": {**FULL_ROW, "plan": 1}}]), False),
        (_body([{"features": {**FULL_ROW, "seats": True}}]), False),
        (_body([{"features": {**FULL_ROW, "seats": "3"}}]), False),
        (_body([{"features": {**FULL_ROW, "seats": [3]}}]), False),
        (_body([{"id": 3, "features": FULL_ROW}]), False),
        (_body([{"id": "x" * 201, "features": FULL_ROW}]), False),
        (_body([{"features": FULL_ROW, "extra": 1}]), False),
        (_body([{"features": FULL_ROW}], top_n=True), False),
        (_body([{"features": FULL_ROW}], reasons=1), False),
        (_body([]), False),
        (b'{"rows": [{"features": {"seats": NaN}}]}', False),
        (b'{"rows": [{"features": {"seats": 1e999}}]}', False),
        (_body([{"features": {**FULL_ROW, "seats": 10**30}}]), True),  # a float, as pydantic reads it
        (_body([{"features": {**FULL_ROW, "seats": 10**400}}]), False),
        (_body([{"features": {**FULL_ROW, "seats": 123456789012345678901234567}}]), True),
        (_body([{"features": {**FULL_ROW, "seats": -0.0, "nps_last": -0}}]), True),
        (b'{"rows": [{"features": {"seats": 1, "seats": 2}}]}', True),  # the last one, as json.loads
        (b'{"rows": [{"features": {"seats": 2, "seats": true}}]}', False),
        (_body([{"id": "\u00e9" * 200, "features": {}}]), True),  # 200 characters, 400 bytes
        (_body([{"id": "\U0001f600" * 201, "features": {}}]), False),
        (b'{"rows": [{"id": "\\ud800", "features": {}}]}', False),  # a lone surrogate
        (_body([{"features": {}}], top_n=3.0), False),
        (_body([{"features": {}}], top_n=11), False),
        (_body([{"features": {}}], top_n=10), True),
        (_body([{"features": {}}]) + b" x", False),
        (_body({"features": {}}), False),
        (b"[]", False),
        (b'{"rows": [{"id": "a\xffb", "features": {}}]}', False),  # invalid UTF-8 in a string
        (b'{"rows": [{"features": {"se\xffats": 1}}]}', False),  # ... in a key
        (b'{"rows": [{"id": "\xed\xa0\x80", "features": {}}]}', False),  # an encoded surrogate
        (b'{"rows": [{"id": "\xc0\xaf", "features": {}}]}', False),  # overlong
    ],
)
def test_fast_parser_agrees_with_full_validation(body: bytes, valid: bool) -> None:
    _assert_same(body)
    assert (_full(body) is not None) == valid
    assert (_fast_batch(MODEL, body) is not None) == valid  # every valid body here takes the fast path


def test_a_body_the_fast_path_declines_is_decided_by_the_full_validation() -> None:
    """A duplicate key whose first value is invalid (json.loads keeps the last, valid one), and
    a body behind a UTF-8 byte-order mark (json.loads reads it): both accepted, the full way."""
    for body in (
        b'{"rows": [{"features": {"seats": true, "seats": 2}}]}',
        b"\xef\xbb\xbf" + _body([{"features": {"seats": 2}}]),
    ):
        assert _fast_batch(MODEL, body) is None
        full = _full(body)
        assert full is not None and full[1]["seats"].tolist() == [2.0]


def test_feature_names_need_not_be_identifiers() -> None:
    """Real exports name columns anything; models with one or no numeric feature parse too."""
    for names, cats in [
        (("a b", "class", "f0", "x-y", "ü"), {"class": frozenset({"k"})}),
        (("a\\b", "tab\there"), {}),  # not usable as msgspec keys: the full path reads them
        (("only",), {}),
        (("plan",), {"plan": frozenset({"basic"})}),
    ]:
        model = ServingModel(
            bundle=None, version="1", content_hash=None, trained_at=None, metrics={}, feature_names=names,
            feature_index={n: i for i, n in enumerate(names)}, categories=cats, source="test",
            fingerprint="", loaded_at=datetime.now(UTC),
        )  # fmt: skip
        row = {n: ("k" if n == "class" else "basic" if n == "plan" else 1.5) for n in names}
        body = _body([{"features": row}, {"features": {}}])
        fast = _fast_batch(model, body)
        if any("\\" in n or "\t" in n for n in names):
            assert fast is None
            request = _validated_request(body, "application/json")
            fast = _Batch([None, None], _checked_frame(model, request)[0], True, 3)
        assert fast is not None and fast.frame is not None
        assert list(fast.frame.columns) == list(names)
        assert fast.frame.iloc[0].tolist() == list(row.values())
        assert fast.frame.iloc[1].isna().all()
        assert _fast_batch(model, _body([{"features": {"bogus": 1}}])) is None


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["basic", "pro", "smb", "enterprise", "gold", "", "x" * 201]),
    st.lists(st.integers(), max_size=1),
)
_KEYS = st.sampled_from([*NAMES, "bogus"])
_ROWS = st.fixed_dictionaries(
    {"features": st.dictionaries(_KEYS, _VALUES, max_size=6)},
    optional={"id": st.one_of(st.none(), st.text(max_size=3), st.integers()), "extra": st.just(1)},
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    rows=st.lists(st.one_of(_ROWS, st.just({"features": FULL_ROW})), max_size=4),
    top=st.dictionaries(st.sampled_from(["reasons", "top_n", "bogus"]), _VALUES, max_size=2),
)
def test_fast_parser_never_accepts_what_full_validation_rejects(rows: list[Any], top: dict[str, Any]) -> None:
    ACCEPTED.append(_assert_same(_body(rows, **top)) and _fast_batch(MODEL, _body(rows, **top)) is not None)


ACCEPTED: list[bool] = []


def test_generated_bodies_include_accepted_ones() -> None:
    """The property above is not vacuous: some generated bodies pass the fast path."""
    if not ACCEPTED:
        test_fast_parser_never_accepts_what_full_validation_rejects()
    assert 10 < sum(ACCEPTED) < len(ACCEPTED)


def test_response_bytes_equal_the_pydantic_model_dump() -> None:
    from models.reasons import Reason

    reason = Reason(
        feature="seats", family="usage_decline", value=float("nan"), shap=0.25, text="few seats \u2192 7",
        playbook_id="p@1", action="Call",
    )  # fmt: skip
    at = datetime(2026, 11, 28, 11, 0, 0, 123456, tzinfo=UTC)
    risk = np.array([0.25, 1.0, 0.0])
    out = render_response("v1", at, ["a", None, "c"], risk, ["high", "low", "low"], [[reason], [], [reason]])
    expected = ScoreResponse.model_validate(json.loads(out)).model_dump_json().encode()
    assert out == expected
    assert json.loads(out)["rows"][0]["reasons"][0]["value"] is None  # NaN -> null
    bare = render_response("v1", at, ["a"], risk[:1], ["high"], None)
    assert bare == ScoreResponse.model_validate(json.loads(bare)).model_dump_json().encode()


def test_response_from_a_reason_table_equals_the_one_from_reason_lists() -> None:
    """The default explainer hands the router columns (`ReasonTable`): the same bytes as from
    per-row `Reason` lists, non-finite values shown as null."""
    from models.reasons import ReasonTable

    table = ReasonTable(
        offsets=np.array([0, 2, 2, 3]),
        feature=["seats", "nps_last", "seats"],
        family=["usage_decline", "detractor", "usage_decline"],
        value=[float("inf"), 3.0, None],
        shap=[0.5, 0.25, 1e-7],
        text=["few seats \u2192 7", 'NPS "3"\n', "\u30b7\u30fc\u30c8"],
        playbook_id=["p@1", "d@1", "p@1"],
        action=["Call", "Follow up", "Call"],
    )
    at = datetime(2026, 11, 28, 11, 0, 0, 123456, tzinfo=UTC)
    risk = np.array([0.25, 1.0, 0.0])
    args = ("v1", at, ["a", None, "c"], risk, ["high", "low", "low"])
    out = render_response(*args, table)
    assert out == render_response(*args, table.rows())
    assert out == ScoreResponse.model_validate(json.loads(out)).model_dump_json().encode()
    assert [len(r["reasons"]) for r in json.loads(out)["rows"]] == [2, 0, 1]
    assert json.loads(out)["rows"][0]["reasons"][0]["value"] is None
