"""The score stage and the service on the tiny simulated company (real upstream stages)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow


def test_tiny_scores_one_row_per_active_account_ranked(tiny_scores) -> None:
    t = tiny_scores
    latest = pd.read_parquet(t.scores / "latest.parquet")
    snaps = pd.read_parquet(t.snapshots)
    active = snaps.loc[snaps["is_scoring_date"]]
    assert sorted(latest["account_id"]) == sorted(active["account_id"])
    assert latest["account_id"].is_unique
    assert (latest["snapshot_date"] == active["snapshot_date"].max()).all()
    assert latest["expected_arr_lost"].is_monotonic_decreasing
    assert latest["risk"].between(0, 1).all()
    np.testing.assert_allclose(latest["expected_arr_lost"], latest["risk"] * latest["arr"])
    assert set(latest["risk_tier"]) <= {"high", "medium", "low"}
    # the model's own calibrated probability for the features at the scoring date
    from models.bundle import ModelBundle

    bundle = ModelBundle.load(t.model)
    feats = pd.read_parquet(t.features).merge(latest[["account_id", "snapshot_date", "risk"]])
    np.testing.assert_allclose(bundle.predict_proba(feats), feats["risk"], rtol=1e-9)
    assert (latest["model_version"] == bundle.version).all()
    # reasons in plain language with a playbook action, from the explain stage
    with_reasons = latest[latest["reason_1"].notna()]
    assert len(with_reasons) > 0 and with_reasons["action_1"].notna().all()
    first = json.loads(with_reasons["reasons"].iloc[0])[0]
    assert {"text", "family", "action", "feature", "value", "shap"} <= set(first)
    assert any(c.startswith("health_") and c not in ("health_score", "health_tier") for c in latest)
    hist = pd.read_parquet(t.scores / "history.parquet")
    assert len(hist) == len(latest)


def test_tiny_service_serves_the_stage_output(tiny_scores) -> None:
    from serving.app import create_app
    from serving.config import Settings

    t = tiny_scores
    latest = pd.read_parquet(t.scores / "latest.parquet")
    settings = Settings(
        api_key="k", admin_key="a", model_uri=str(t.model), scores_dir=t.scores, params_path=t.params,
        poll_seconds=0,
    )  # fmt: skip
    headers = {"Authorization": "Bearer k"}
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["ready"] is True
        top = client.get("/v1/at-risk?limit=5", headers=headers).json()
        assert [i["account_id"] for i in top["items"]] == latest["account_id"].head(5).tolist()
        account = client.get(f"/v1/accounts/{latest['account_id'].iloc[0]}", headers=headers).json()
        assert account["risk"] == pytest.approx(latest["risk"].iloc[0])
        model = client.get("/v1/model", headers=headers).json()
        feats = pd.read_parquet(t.features)
        row = feats.merge(latest[["account_id", "snapshot_date"]]).iloc[0]
        values = {}
        for f in model["feature_names"]:
            v = row[f]
            if pd.isna(v):
                values[f] = None
            elif isinstance(v, str):
                values[f] = v
            else:
                values[f] = float(v)
        r = client.post(
            "/v1/score", headers=headers, json={"rows": [{"id": row["account_id"], "features": values}]}
        )
        assert r.status_code == 200, r.text
        scored = r.json()["rows"][0]
        served = latest.set_index("account_id").loc[row["account_id"]]
        assert scored["risk"] == pytest.approx(served["risk"], rel=1e-9)
        assert [x["text"] for x in scored["reasons"]] == [x["text"] for x in json.loads(served["reasons"])]


def test_tiny_scores_carry_the_params_currency(tiny_scores, tmp_path) -> None:
    """`features.currency` ends the latest files as a column; the history holds no money."""
    import yaml

    from pipeline import score

    t = tiny_scores
    default = pd.read_parquet(t.scores / "latest.parquet")
    assert list(default.columns[-3:]) == ["model_version", "scored_at", "currency"]
    assert (default["currency"] == "USD").all()
    params = yaml.safe_load(t.params.read_text(encoding="utf-8"))
    params["features"]["currency"] = "EUR"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    out = tmp_path / "scores"
    score.main(
        [
            "--model", str(t.model), "--features", str(t.features), "--snapshots", str(t.snapshots),
            "--explanations", str(t.explanations), "--accounts", str(t.validated / "accounts.parquet"),
            "--out", str(out), "--params", str(tmp_path / "params.yaml"),
        ]
    )  # fmt: skip
    latest = pd.read_parquet(out / "latest.parquet")
    assert list(latest.columns) == list(default.columns) and (latest["currency"] == "EUR").all()
    sheet = pd.read_csv(out / "latest.csv", encoding="utf-8-sig")
    assert list(sheet.columns) == [c for c in latest.columns if c != "reasons"]
    assert (sheet["currency"] == "EUR").all()
    assert "currency" not in pd.read_parquet(out / "history.parquet").columns
