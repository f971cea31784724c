"""Score stage and the pure at-risk functions: tiers, ranking, filters, history, risk change."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pipeline.score as stage
from churnguard.errors import InputError
from churnguard.scores import (
    AtRiskQuery,
    ScoreParams,
    TierThresholds,
    append_history,
    assign_tiers,
    build_scores,
    filter_at_risk,
    score_columns,
    select_at_risk,
    split_history,
)
from tests.serving_fakes import FakeBundle, make_company, patch_stage, score_history, set_scoring_date


def _scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d"],
            "segment": ["smb", "SMB", "enterprise", None],
            "risk": [0.5, 0.2, 0.1, 0.9],
            "risk_tier": ["high", "medium", "low", "high"],
            "expected_arr_lost": [500.0, 2000.0, 100.0, np.nan],
            "arr": [1000.0, 10000.0, 1000.0, np.nan],
            "days_to_renewal": [10, 100, -5, 30],
            "health_score": [20.0, 50.0, 90.0, 10.0],
            "risk_change": [np.nan, 0.1, -0.2, 0.3],
        }
    )


def test_tiers_follow_thresholds_inclusive() -> None:
    tiers = TierThresholds(high=0.3, medium=0.15)
    got = assign_tiers(np.array([0.0, 0.1499, 0.15, 0.29, 0.3, 1.0]), tiers)
    assert got.tolist() == ["low", "low", "medium", "medium", "high", "high"]


def test_tier_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError):
        TierThresholds(high=0.1, medium=0.2)


def test_select_default_is_expected_loss_with_missing_last() -> None:
    idx = select_at_risk(score_columns(_scores()), AtRiskQuery())
    assert idx.tolist() == [1, 0, 2, 3]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (AtRiskQuery(segment="smb"), ["b", "a"]),  # case-insensitive
        (AtRiskQuery(tier="high"), ["a", "d"]),
        (AtRiskQuery(min_risk=0.5), ["a", "d"]),
        (AtRiskQuery(renewal_within_days=30), ["a", "d"]),  # past renewals (negative days) excluded
        (AtRiskQuery(sort="risk"), ["d", "a", "b", "c"]),
        (AtRiskQuery(sort="days_to_renewal", descending=False), ["c", "a", "d", "b"]),
        (AtRiskQuery(sort="risk_change", descending=False), ["c", "b", "d", "a"]),
    ],
)
def test_filters_and_sorting(query: AtRiskQuery, expected: list[str]) -> None:
    assert filter_at_risk(_scores(), query)["account_id"].tolist() == expected


def test_filter_top_and_does_not_mutate() -> None:
    frame = _scores()
    before = frame.copy()
    assert len(filter_at_risk(frame, AtRiskQuery(), top=2)) == 2
    pd.testing.assert_frame_equal(frame, before)


@pytest.mark.parametrize(
    "kwargs", [{"sort": "name"}, {"tier": "red"}, {"min_risk": 1.5}, {"renewal_within_days": -1}]
)
def test_bad_queries_are_input_errors(kwargs: dict) -> None:
    with pytest.raises(InputError):
        AtRiskQuery(**kwargs)


def _scoring_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["x", "y", "z"],
            "snapshot_date": pd.to_datetime(["2026-03-01"] * 3).astype("datetime64[us]"),
            "segment": ["smb", "smb", "enterprise"],
            "arr": [1000.0, 50000.0, np.nan],
            "health_score": [40.0, 60.0, 80.0],
            "health_tier": ["yellow", "yellow", "green"],
            "health_usage": [1.0, 2.0, 3.0],
            "days_to_renewal": [10, 20, 30],
        }
    )


def test_build_scores_ranks_by_expected_arr_lost_and_computes_change() -> None:
    prev = pd.DataFrame(
        {
            "account_id": ["x", "y", "x"],
            "snapshot_date": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-02-01"]),
            "scored_at": pd.to_datetime(["2026-01-02", "2026-02-02", "2026-02-02"]),
            "risk": [0.1, 0.05, 0.5],
            "risk_tier": ["low", "low", "high"],
            "model_version": ["1", "1", "1"],
        }
    )
    reasons = {"x": [{"text": "usage fell", "action": "training", "family": "usage", "feature": "f",
                      "value": 1.0, "shap": 0.3, "playbook_id": "t"}]}  # fmt: skip
    out = build_scores(
        _scoring_rows(), np.array([0.9, 0.1, 0.5]), reasons, prev,
        tiers=TierThresholds(), model_version="7", scored_at=pd.Timestamp("2026-03-02"), currency="EUR",
    )  # fmt: skip
    assert out["account_id"].tolist() == ["y", "x", "z"]  # 5000 > 900 > NaN
    assert out["expected_arr_lost"].iloc[0] == pytest.approx(5000.0)
    assert out.set_index("account_id")["risk_change"].to_dict() == pytest.approx(
        {"x": 0.4, "y": 0.05, "z": np.nan}, nan_ok=True
    )
    x = out.set_index("account_id").loc["x"]
    assert x["reason_1"] == "usage fell" and x["action_1"] == "training" and x["reason_2"] is None
    assert json.loads(x["reasons"])[0]["text"] == "usage fell"
    assert x["health_usage"] == 1.0 and x["model_version"] == "7"
    assert out.columns[-1] == "currency" and (out["currency"] == "EUR").all()


def test_history_rerun_replaces_same_date_and_model() -> None:
    d1, d2 = pd.Timestamp("2026-02-01"), pd.Timestamp("2026-03-01")
    hist = pd.DataFrame(
        {
            "account_id": ["x", "x"],
            "snapshot_date": [d1, d2],
            "scored_at": [d1, d2],
            "risk": [0.1, 0.2],
            "risk_tier": ["low", "medium"],
            "model_version": ["1", "1"],
        }
    )
    kept = split_history(hist, d2, "1")
    assert kept["snapshot_date"].tolist() == [d1]
    assert len(split_history(hist, d2, "2")) == 2  # a new model for the same date is a new run
    latest = hist.iloc[[1]].assign(risk=0.3)
    merged = append_history(kept, latest)
    assert merged["risk"].tolist() == [0.1, 0.3]


# --- the stage on a fake company (real LightGBM, fake bundle wrapper) ------------------------


@pytest.fixture
def company(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    patch_stage(monkeypatch)
    return make_company(tmp_path / "co", n_accounts=30)


def _run(c, scored_at: str = "2026-03-02") -> dict:
    return stage.run(
        model=c.model, features=c.features, snapshots=c.snapshots, explanations=c.explanations,
        accounts=c.accounts, out=c.scores, params=ScoreParams(), currency="USD",
        scored_at=pd.Timestamp(scored_at),
    )  # fmt: skip


def test_stage_scores_only_active_accounts_ranked(company) -> None:
    summary = _run(company)
    latest = pd.read_parquet(company.scores / "latest.parquet")
    snaps = pd.read_parquet(company.snapshots)
    active = set(snaps.loc[snaps["is_scoring_date"], "account_id"])
    assert set(latest["account_id"]) == active and len(latest) == summary["accounts"] == 27
    assert latest["expected_arr_lost"].is_monotonic_decreasing
    # risk is the model's calibrated probability for exactly these feature rows
    feats = pd.read_parquet(company.features).merge(latest[["account_id", "snapshot_date", "risk"]])
    expected = FakeBundle.load(company.model).predict_proba(feats)
    np.testing.assert_allclose(feats["risk"], expected)
    np.testing.assert_allclose(latest["expected_arr_lost"], latest["risk"] * latest["arr"])
    assert latest["risk_change"].isna().all()  # first run
    assert set(latest["risk_tier"]) <= {"high", "medium", "low"}
    assert latest["reason_1"].notna().any() and latest["name"].str.startswith("Company").all()
    csv = pd.read_csv(company.scores / "latest.csv", encoding="utf-8-sig")
    assert csv["account_id"].tolist() == latest["account_id"].tolist() and "reasons" not in csv


def test_stage_history_grows_per_run_and_rerun_replaces(company) -> None:
    score_history(company)  # three scoring dates in turn
    hist = pd.read_parquet(company.scores / "history.parquet")
    assert hist["snapshot_date"].nunique() == 3
    assert not hist.duplicated(["account_id", "snapshot_date", "model_version"]).any()
    latest = pd.read_parquet(company.scores / "latest.parquet")
    prev = hist.loc[hist["snapshot_date"] == hist["snapshot_date"].sort_values().unique()[1]]
    merged = latest.merge(prev[["account_id", "risk"]], on="account_id", suffixes=("", "_prev"))
    np.testing.assert_allclose(merged["risk_change"], merged["risk"] - merged["risk_prev"])
    n = len(hist)
    _run(company, "2026-03-09")  # same date, same model: replaces its rows
    assert len(pd.read_parquet(company.scores / "history.parquet")) == n


def test_stage_explains_accounts_missing_from_explanations(company) -> None:
    set_scoring_date(company, 0)  # explanations only cover the last date
    _run(company)
    latest = pd.read_parquet(company.scores / "latest.parquet")
    assert latest["reasons"].map(lambda s: len(json.loads(s))).gt(0).any()


def test_stage_names_missing_feature_column(company) -> None:
    feats = pd.read_parquet(company.features).drop(columns=["nps_last"])
    feats.to_parquet(company.features, index=False)
    with pytest.raises(InputError, match="nps_last"):
        _run(company)


def test_stage_main_reads_params_tiers(company, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("score:\n  tiers: {high: 0.99, medium: 0.98}\n", encoding="utf-8")
    stage.main(
        ["--model", str(company.model), "--features", str(company.features), "--snapshots",
         str(company.snapshots), "--explanations", str(company.explanations), "--accounts",
         str(company.accounts), "--out", str(company.scores), "--params", str(params)]
    )  # fmt: skip
    assert set(pd.read_parquet(company.scores / "latest.parquet")["risk_tier"]) == {"low"}


@pytest.mark.parametrize("code", ["usd", "EURO", "€"])
def test_a_currency_that_is_not_an_iso_code_is_refused(tmp_path: Path, code: str) -> None:
    """The score stage and the features stage both refuse it, naming `features.currency`."""
    from churnguard.params import load_section
    from features.build import FeatureParams

    params = tmp_path / "params.yaml"
    params.write_text(f"features:\n  currency: {code}\n  onboarding_days: 120\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"features\.currency: .*ISO 4217"):
        stage.main(["--model", "m", "--features", "f", "--snapshots", "s", "--explanations", "e",
                    "--out", str(tmp_path / "out"), "--params", str(params)])  # fmt: skip
    with pytest.raises(InputError, match=r"features\.currency: .*ISO 4217"):
        load_section("features", FeatureParams, params)
    assert not (tmp_path / "out").exists()
