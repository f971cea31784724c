"""The API through the real app (TestClient) on a fake company scored by the real score stage."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.serving_fakes import ADMIN, API_KEY, FEATURES, READ, Company, app_for, scored_company


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> Company:
    return scored_company(tmp_path_factory.mktemp("api") / "co")


@pytest.fixture(scope="module")
def client(company: Company) -> Iterator[TestClient]:
    with TestClient(app_for(company), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def latest(company: Company) -> pd.DataFrame:
    return pd.read_parquet(company.scores / "latest.parquet")


# --- probes, auth --------------------------------------------------------------------------


def test_probes(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["scores_snapshot_date"] == "2026-03-01"


def test_not_ready_until_loaded_with_reason(tmp_path: Path, company: Company) -> None:
    app = app_for(company, scores_dir=tmp_path / "none")
    with TestClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False
        assert "no scores" in r.json()["reason"]
        r = c.get("/v1/at-risk", headers=READ)
        assert r.status_code == 503 and "scores not loaded" in r.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/v1/model"), ("get", "/v1/accounts/acc-001"), ("get", "/v1/at-risk"), ("post", "/v1/score")],
)
def test_customer_data_needs_read_key(client: TestClient, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        r = client.request(method, path, headers=headers, json={"rows": [{"features": {}}]})
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert set(r.json()) == {"detail", "errors"} and "key" in r.json()["detail"]


def test_admin_reload_needs_admin_key(client: TestClient) -> None:
    assert client.post("/v1/admin/reload").status_code == 401
    r = client.post("/v1/admin/reload", headers=READ)
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    r = client.post("/v1/admin/reload", headers=ADMIN)
    assert r.status_code == 200 and r.json()["error"] is None


def test_no_key_configured_means_no_access(company: Company) -> None:
    with TestClient(app_for(company, api_key=None, admin_key=None)) as c:
        r = c.get("/v1/at-risk", headers=READ)
        assert r.status_code == 401 and "CHURNGUARD_API_KEY" in r.json()["detail"]


# --- model, account ------------------------------------------------------------------------


def test_model_info(client: TestClient) -> None:
    body = client.get("/v1/model", headers=READ).json()
    assert body["version"] == "1" and body["feature_names"] == FEATURES
    assert body["metrics"]["roc_auc"] == 0.8 and body["scores_model_version"] == "1"


def test_account_matches_scores_file(client: TestClient, latest: pd.DataFrame, company: Company) -> None:
    row = latest.iloc[3]
    body = client.get(f"/v1/accounts/{row['account_id']}", headers=READ).json()
    assert body["risk"] == pytest.approx(row["risk"]) and body["risk_tier"] == row["risk_tier"]
    assert body["model_version"] == "1" and body["snapshot_date"] == "2026-03-01"
    assert body["expected_arr_lost"] == pytest.approx(row["expected_arr_lost"])
    assert body["currency"] == row["currency"] == "EUR"  # the fake company's, not the USD default
    assert body["health_components"] == pytest.approx(
        {"usage": row["health_usage"], "support": row["health_support"]}
    )
    assert [r["text"] for r in body["reasons"]] == [r["text"] for r in json.loads(row["reasons"])]
    assert all(r["action"] for r in body["reasons"])
    hist = pd.read_parquet(company.scores / "history.parquet")
    mine = hist.loc[hist["account_id"] == row["account_id"]].sort_values("snapshot_date")
    assert [h["risk"] for h in body["history"]] == pytest.approx(mine["risk"].tolist())
    assert len(body["history"]) == 3


def test_unknown_account_is_404(client: TestClient) -> None:
    r = client.get("/v1/accounts/nope", headers=READ)
    assert r.status_code == 404 and "nope" in r.json()["detail"]


# --- at-risk list ----------------------------------------------------------------------------


def test_at_risk_default_ranking_and_pagination(client: TestClient, latest: pd.DataFrame) -> None:
    body = client.get("/v1/at-risk?limit=5", headers=READ).json()
    assert body["total"] == len(latest) and body["model_version"] == "1"
    assert [i["account_id"] for i in body["items"]] == latest["account_id"].head(5).tolist()
    assert body["currency"] == "EUR" and {i["currency"] for i in body["items"]} == {"EUR"}
    page2 = client.get("/v1/at-risk?limit=5&offset=5", headers=READ).json()
    assert [i["account_id"] for i in page2["items"]] == latest["account_id"].iloc[5:10].tolist()


def test_at_risk_filters(client: TestClient, latest: pd.DataFrame) -> None:
    q = "segment=smb&min_risk=0.1&renewal_within_days=200&sort=risk&order=asc&limit=1000"
    body = client.get(f"/v1/at-risk?{q}", headers=READ).json()
    want = latest[
        (latest["segment"] == "smb") & (latest["risk"] >= 0.1) & latest["days_to_renewal"].between(0, 200)
    ].sort_values("risk")
    assert body["total"] == len(want) > 0
    assert [i["account_id"] for i in body["items"]] == want["account_id"].tolist()
    tiers = client.get("/v1/at-risk?tier=high&limit=1000", headers=READ).json()["items"]
    assert {i["risk_tier"] for i in tiers} == {"high"} and len(tiers) == (latest["risk_tier"] == "high").sum()


def test_at_risk_csv_by_param_and_accept(client: TestClient, latest: pd.DataFrame) -> None:
    r = client.get("/v1/at-risk?format=csv&tier=high", headers=READ)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["account_id"] for x in rows] == latest.loc[latest["risk_tier"] == "high", "account_id"].tolist()
    assert rows[0]["model_version"] == "1" and rows[0]["snapshot_date"] == "2026-03-01"
    assert list(rows[0])[-1] == "currency" and {x["currency"] for x in rows} == {"EUR"}
    r2 = client.get("/v1/at-risk?tier=high", headers={**READ, "Accept": "text/csv"})
    assert r2.text == r.text


@pytest.mark.parametrize(
    "query", ["tier=red", "min_risk=2", "min_risk=nan", "limit=0", "limit=5000", "offset=-1", "sort=name"]
)
def test_at_risk_rejects_bad_params(client: TestClient, query: str) -> None:
    r = client.get(f"/v1/at-risk?{query}", headers=READ)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"].startswith("query.")


# --- scoring ---------------------------------------------------------------------------------


def _row(**features: object) -> dict:
    return {"features": {"active_users_30d": 0.5, "nps_last": None, **features}}


def test_score_single_and_batch_match_model(client: TestClient, company: Company) -> None:
    from tests.serving_fakes import FakeBundle

    feats = pd.read_parquet(company.features).head(20)
    rows = [
        {
            "id": a,
            "features": {f: (None if pd.isna(v) else float(v)) for f, v in zip(FEATURES, vals, strict=True)},
        }
        for a, vals in zip(feats["account_id"], feats[FEATURES].to_numpy(), strict=True)
    ]
    r = client.post("/v1/score", headers=READ, json={"rows": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = FakeBundle.load(company.model).predict_proba(feats[FEATURES])
    assert [x["risk"] for x in body["rows"]] == pytest.approx(expected.tolist())
    assert [x["id"] for x in body["rows"]] == feats["account_id"].tolist()
    assert body["model_version"] == "1" and body["scored_at"]
    assert all(x["reasons"] is not None for x in body["rows"])
    one = client.post("/v1/score", headers=READ, json={"rows": rows[:1], "reasons": False}).json()
    assert one["rows"][0]["risk"] == pytest.approx(expected[0]) and one["rows"][0]["reasons"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rows": [_row(active_users_30d=True)]}, "body.rows.0.features.active_users_30d"),
        ({"rows": [_row(active_users_30d="3")]}, "rows.0.features.active_users_30d"),
        ({"rows": [_row(bogus=1.0)]}, "rows.0.features.bogus"),
        ({"rows": [{**_row(), "extra": 1}]}, "body.rows.0.extra"),
        ({"rows": [_row()], "unknown": 1}, "body.unknown"),
        ({"rows": []}, "body.rows"),
        ({"rows": [_row()], "reasons": 1}, "body.reasons"),
        ({}, "body.rows"),
    ],
)
def test_score_strict_validation_names_field(client: TestClient, body: dict, field: str) -> None:
    r = client.post("/v1/score", headers=READ, json=body)
    assert r.status_code == 422, r.text
    assert any(e["field"] == field for e in r.json()["errors"]), r.json()


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_score_rejects_non_finite(client: TestClient, token: str) -> None:
    raw = '{"rows": [{"features": {"active_users_30d": TOKEN}}]}'.replace("TOKEN", token)
    r = client.post("/v1/score", headers={**READ, "Content-Type": "application/json"}, content=raw)
    assert r.status_code == 422, r.text


def test_score_bounded_batch_and_body(company: Company) -> None:
    with TestClient(app_for(company, max_batch=3, max_body_bytes=2048)) as c:
        r = c.post("/v1/score", headers=READ, json={"rows": [_row()] * 4})
        assert r.status_code == 413 and r.json()["errors"][0]["field"] == "rows"
        assert c.post("/v1/score", headers=READ, json={"rows": [_row()] * 3}).status_code == 200
        big = {"rows": [_row(), {"id": "x" * 190, "features": {}}] * 10}
        r = c.post("/v1/score", headers=READ, json=big)
        assert r.status_code == 413 and "bytes" in r.json()["detail"]


def test_errors_never_leak_stack_traces(company: Company, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object, **kwargs: object) -> list:
        raise RuntimeError("secret internals /path/to/file.py")

    from serving.app import create_app
    from tests.serving_fakes import load_fake, settings_for

    app = create_app(settings_for(company), model_loader=load_fake, explainer=broken)
    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.INFO):
        r = c.post("/v1/score", headers=READ, json={"rows": [_row(active_users_30d=0.123456789)]})
    assert r.status_code == 500 and r.json() == {"detail": "internal error", "errors": None}
    assert "Traceback" not in r.text and "secret" not in r.text
    assert "0.123456789" not in caplog.text  # raw feature values never logged


@pytest.mark.parametrize(
    "body",
    [
        b'{"rows": [{"id": "a\xffb", "features": {}}]}',
        b'{"rows": [{"features": {"se\xffats": 1}}]}',
        b'{"rows": [{"id": "\xed\xa0\x80", "features": {}}]}',
    ],
)
def test_score_body_with_invalid_utf8_is_a_client_error(client: TestClient, body: bytes) -> None:
    """400 (not decodable), or 422 naming the field for an encoded surrogate (json.loads reads it)."""
    r = client.post("/v1/score", content=body, headers={**READ, "content-type": "application/json"})
    assert r.status_code in (400, 422) and set(r.json()) == {"detail", "errors"}


# --- hot reload, metrics ---------------------------------------------------------------------


def test_failed_reload_keeps_last_good_and_reports_it(tmp_path: Path, company: Company) -> None:
    c2 = Company(**{**company.__dict__, "scores": tmp_path / "scores"})
    shutil.copytree(company.scores, c2.scores)
    with TestClient(app_for(c2)) as c:
        before = c.get("/v1/at-risk?limit=3", headers=READ).json()
        (c2.scores / "latest.parquet").write_bytes(b"not parquet")
        r = c.post("/v1/admin/reload", headers=ADMIN).json()
        assert "scores load failed" in r["error"]
        assert c.get("/v1/at-risk?limit=3", headers=READ).json() == before
        ready = c.get("/readyz").json()
        assert ready["ready"] is True and "last good" in ready["reason"]
        assert "churnguard_reload_failures 1.0" in c.get("/metrics").text
        c.app.state.serving.reload()  # the same broken file: not reloaded, not counted again
        assert "churnguard_reload_failures 1.0" in c.get("/metrics").text
        shutil.copy(company.scores / "latest.parquet", c2.scores / "latest.parquet")
        r = c.post("/v1/admin/reload", headers=ADMIN).json()
        assert r["error"] is None and r["scores_reloaded"] is True
        assert c.get("/readyz").json()["reason"] is None


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/v1/accounts/acc-001", headers=READ)
    client.get("/v1/accounts/acc-002", headers=READ)
    text = client.get("/metrics").text
    assert 'route="/v1/accounts/{account_id}"' in text and "acc-001" not in text
    assert "churnguard_http_request_duration_seconds_bucket" in text
    assert 'churnguard_model_info{version="1"} 1.0' in text


def test_openapi_documents_every_endpoint_with_auth(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {"/healthz", "/readyz", "/metrics", "/v1/model", "/v1/accounts/{account_id}", "/v1/at-risk",
            "/v1/score", "/v1/admin/reload"} <= paths  # fmt: skip
    assert spec["paths"]["/v1/at-risk"]["get"]["security"]
    schemas = spec["components"]["schemas"]
    assert "examples" in schemas["AccountRisk"]
    assert schemas["AccountRisk"]["examples"][0]["currency"] == "USD"
    for name in ("RiskItem", "AtRiskPage"):
        field = schemas[name]["properties"]["currency"]
        assert "ISO 4217" in field["description"] and field["examples"] == ["USD"]


# --- money figures carry their currency; scores written before the column still serve -----


def _page_html(client: TestClient, path: str) -> str:
    assert client.post("/login", data={"key": API_KEY}, follow_redirects=False).status_code == 303
    r = client.get(path)
    assert r.status_code == 200, r.text
    return r.text


def test_cs_page_labels_money_with_the_currency(client: TestClient, latest: pd.DataFrame) -> None:
    html = _page_html(client, "/")
    assert "<th>ARR (EUR)</th><th>Expected ARR lost (EUR)</th>" in html
    account = _page_html(client, f"/accounts/{latest['account_id'].iloc[0]}")
    assert "ARR / expected loss (EUR)" in account


def test_scores_without_a_currency_column_still_serve(tmp_path: Path, company: Company) -> None:
    """Scores written before the score stage recorded the currency: served, unit unknown."""
    old = Company(**{**company.__dict__, "scores": tmp_path / "scores"})
    shutil.copytree(company.scores, old.scores)
    latest = pd.read_parquet(old.scores / "latest.parquet").drop(columns=["currency"])
    latest.to_parquet(old.scores / "latest.parquet", index=False)
    aid = latest["account_id"].iloc[0]
    with TestClient(app_for(old)) as c:
        assert c.get("/readyz").json()["ready"] is True
        account = c.get(f"/v1/accounts/{aid}", headers=READ).json()
        assert account["currency"] is None and account["arr"] == pytest.approx(latest["arr"].iloc[0])
        page = c.get("/v1/at-risk?limit=3", headers=READ).json()
        assert page["currency"] is None and [i["currency"] for i in page["items"]] == [None] * 3
        rows = list(csv.DictReader(io.StringIO(c.get("/v1/at-risk?format=csv", headers=READ).text)))
        assert len(rows) == len(latest) and {x["currency"] for x in rows} == {""}
        assert "<th>ARR</th><th>Expected ARR lost</th>" in _page_html(c, "/")
        assert "ARR / expected loss</div>" in _page_html(c, f"/accounts/{aid}")


# --- the one-account lookup's fast lane (serving.middleware.AccountLookupMiddleware) -------


@pytest.fixture(scope="module")
def client_without_lane(company: Company) -> Iterator[TestClient]:
    """The same app with the lane taken out: FastAPI's route answers every lookup."""
    from serving.middleware import AccountLookupMiddleware

    app = app_for(company)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not AccountLookupMiddleware]
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_account_lane_answers_exactly_as_the_route(
    client: TestClient, client_without_lane: TestClient, latest: pd.DataFrame
) -> None:
    key = READ["Authorization"].split()[1]
    cases = [READ, ADMIN, {"Authorization": f"bearer  {key} "}, {}, {"Authorization": "Bearer wrong"}]
    for account in [*latest["account_id"].iloc[:5], "nope", "x" * 201, "acc-001/"]:
        for headers in cases:
            lane = client.get(f"/v1/accounts/{account}", headers=headers, follow_redirects=False)
            route = client_without_lane.get(
                f"/v1/accounts/{account}", headers=headers, follow_redirects=False
            )
            assert (lane.status_code, lane.headers.raw, lane.content) == (
                route.status_code, route.headers.raw, route.content,
            )  # fmt: skip
    assert client.get(f"/v1/accounts/{latest['account_id'].iloc[0]}", headers=READ).status_code == 200


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/accounts/acc-001", {}, 401),
        ("/v1/accounts/acc-001", {"Authorization": "Bearer wrong"}, 401),
        ("/v1/accounts/acc-001", {"Authorization": "Basic abc"}, 401),
        ("/v1/accounts/nope", READ, 404),
        ("/v1/accounts/" + "x" * 201, READ, 422),
        ("/v1/accounts/acc-001/", READ, 307),
        ("/v1/accounts/", READ, 404),
    ],
)
def test_account_lane_leaves_every_other_case_to_fastapi(
    client: TestClient, path: str, headers: dict[str, str], status: int
) -> None:
    r = client.get(path, headers=headers, follow_redirects=False)
    assert r.status_code == status
    if status != 307:
        assert set(r.json()) == {"detail", "errors"}
    assert client.head("/v1/accounts/acc-001", headers=READ).status_code == 405


def test_account_lane_is_off_while_scores_are_not_loaded(tmp_path: Path, company: Company) -> None:
    with TestClient(app_for(company, scores_dir=tmp_path / "none")) as c:
        r = c.get("/v1/accounts/acc-001", headers=READ)
        assert r.status_code == 503 and "scores not loaded" in r.json()["detail"]


def test_account_lane_requests_are_counted_by_route(company: Company) -> None:
    with TestClient(app_for(company)) as c:
        for _ in range(3):
            assert c.get("/v1/accounts/acc-001", headers=READ).status_code == 200
        c.get("/v1/accounts/nope", headers=READ)
        text = c.get("/metrics").text
    line = 'churnguard_http_requests_total{method="GET",route="/v1/accounts/{account_id}",status="200"} 3.0'
    assert line in text
    assert 'route="/v1/accounts/{account_id}",status="404"} 1.0' in text
