"""GET /v1/retention and GET /v1/monitoring through the real app, on a report written by the stage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline import report
from tests.test_report import _argv, _write_inputs

KEY = "read-key-for-tests"
READ = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report_api")
    paths = _write_inputs(root)
    report.main(_argv(root, paths["validated"], paths["params"]))
    return root


def _client(root: Path, **overrides: object) -> TestClient:
    from serving.app import create_app
    from serving.config import Settings

    values: dict[str, object] = {
        "api_key": KEY,
        "admin_key": "admin-key-for-tests",
        "model_uri": str(root / "no_model"),
        "scores_dir": root / "no_scores",
        "params_path": root / "params.yaml",
        "report_path": root / "metrics" / "report.json",
        "monitoring_path": root / "metrics" / "monitoring.json",
        "poll_seconds": 0,
        **overrides,
    }
    return TestClient(create_app(Settings(**values)), raise_server_exceptions=False)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(written: Path) -> Iterator[TestClient]:
    with _client(written) as c:
        yield c


@pytest.mark.parametrize("path", ["/v1/retention", "/v1/monitoring"])
def test_needs_the_read_key(client: TestClient, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = client.get(path, headers=headers)
        assert r.status_code == 401 and "key" in r.json()["detail"]


def test_retention_by_month_matches_the_report(client: TestClient, written: Path) -> None:
    doc = json.loads((written / "metrics" / "report.json").read_text())
    r = client.get("/v1/retention", headers=READ)
    assert r.status_code == 200
    body = r.json()
    assert body["segments"] == ["enterprise", "mid_market", "smb"]
    assert [m["month"] for m in body["months"]] == sorted(doc["by_month"])
    first = body["months"][0]
    assert first["net_revenue_retention"] == doc["by_month"][first["month"]]["net_revenue_retention"]
    assert body["overall"]["renewal_rate"] == doc["overall"]["renewal_rate"]


def test_retention_one_segment_and_month_range(client: TestClient, written: Path) -> None:
    doc = json.loads((written / "metrics" / "report.json").read_text())
    r = client.get(
        "/v1/retention", params={"segment": "SMB", "start": "2023-06", "end": "2023-08"}, headers=READ
    )
    assert r.status_code == 200
    body = r.json()
    assert body["segment"] == "smb"
    assert [m["month"] for m in body["months"]] == ["2023-06", "2023-07", "2023-08"]
    assert (
        body["months"][0]["customers_start"]
        == doc["by_segment"]["smb"]["by_month"]["2023-06"]["customers_start"]
    )
    assert client.get("/v1/retention", params={"segment": "nope"}, headers=READ).status_code == 404
    bad = client.get("/v1/retention", params={"start": "June"}, headers=READ)
    assert bad.status_code == 422 and "YYYY-MM" in bad.json()["detail"]


def test_monitoring(client: TestClient) -> None:
    r = client.get("/v1/monitoring", params={"top": 1}, headers=READ)
    assert r.status_code == 200
    body = r.json()
    assert body["retrain_recommended"] is False and body["reasons"] == []
    assert len(body["feature_drift"]) == 1 and "psi" in body["feature_drift"][0]
    assert body["thresholds"]["psi_bands"] == [0.1, 0.25]


def test_missing_report_is_503_with_reason(written: Path) -> None:
    with _client(written, report_path=written / "none.json", monitoring_path=written / "none2.json") as c:
        for path in ("/v1/retention", "/v1/monitoring"):
            r = c.get(path, headers=READ)
            assert r.status_code == 503 and "report stage" in r.json()["detail"]


def test_bad_query_values_are_422_not_500(client: TestClient) -> None:
    for path, params in (
        ("/v1/monitoring", {"top": "0"}),
        ("/v1/monitoring", {"top": "abc"}),
        ("/v1/retention", {"end": "2024-13-01"}),
        ("/v1/retention", {"start": "2024-13"}),
        ("/v1/retention", {"segment": "x" * 101}),
    ):
        r = client.get(path, params=params, headers=READ)
        assert r.status_code == 422, (path, params, r.text)
    schema = client.get("/openapi.json").json()["paths"]
    assert {"/v1/retention", "/v1/monitoring"} <= set(schema)
