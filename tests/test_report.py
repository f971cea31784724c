"""The report stage: outputs, first run without model or scores, activity definition, the service.

Stage tests on hand-built stage inputs (fast; no other stage needed), then on the shared
tiny simulated company (fixtures in conftest.py), cross-checked with the simulator's
own churn records.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import report

T = pd.Timestamp


def _write_inputs(
    root: Path, *, with_subscriptions: bool = True, with_history: bool = False
) -> dict[str, Path]:
    """A 60-account company, monthly terms 2023-01..2024-06, snapshots and two features."""
    rng = np.random.default_rng(3)
    validated = root / "validated"
    validated.mkdir(parents=True)
    ids = [f"acc{i:03d}" for i in range(60)]
    accounts = pd.DataFrame({"account_id": ids, "segment": ["smb", "mid_market", "enterprise"] * 20})
    accounts.to_parquet(validated / "accounts.parquet")
    rows = []
    months = pd.date_range("2023-01-01", "2024-07-01", freq="MS")
    for i, acc in enumerate(ids):
        start = i % 6
        stop = len(months) - 1 if i % 4 else int(rng.integers(start + 2, len(months) - 1))
        mrr = 100.0 + 10 * (i % 5)
        for k in range(start, stop):
            mrr = mrr * (1.1 if rng.uniform() < 0.1 else 1.0)
            rows.append((acc, f"{acc}-{k}", months[k], months[k + 1], mrr, "monthly"))
    subs = pd.DataFrame(
        rows, columns=["account_id", "subscription_id", "start_date", "end_date", "mrr", "billing_period"]
    )
    for c in ("start_date", "end_date"):
        subs[c] = subs[c].astype("datetime64[us]")
    if with_subscriptions:
        subs.to_parquet(validated / "subscriptions.parquet")
    data_end = T("2024-06-30 23:00")
    (validated / "validation_report.json").write_text(json.dumps({"data_end": data_end.isoformat()}))
    churn = subs.groupby("account_id")["end_date"].max()
    snaps = []
    for t in pd.date_range("2023-04-01", "2024-07-01", freq="MS"):
        active = subs[(subs["start_date"] <= t) & (subs["end_date"] > t)]["account_id"].unique()
        for acc in active:
            cd = churn[acc]
            observable = t + pd.Timedelta(days=90) <= data_end
            churned = cd <= t + pd.Timedelta(days=90) and cd < T("2024-06-30")
            snaps.append((acc, t, float(churned) if observable else np.nan, observable))
    snap = pd.DataFrame(snaps, columns=["account_id", "snapshot_date", "label", "label_observable"])
    snap["snapshot_date"] = snap["snapshot_date"].astype("datetime64[us]")
    snap["segment"] = snap["account_id"].map(accounts.set_index("account_id")["segment"])
    snap["is_scoring_date"] = snap["snapshot_date"] == snap["snapshot_date"].max()
    snap.to_parquet(root / "snapshots.parquet")
    feats = snap[["account_id", "snapshot_date"]].copy()
    feats["logins_30d"] = rng.poisson(20, len(feats)).astype(float)
    feats["tickets_open"] = np.where(rng.uniform(size=len(feats)) < 0.1, np.nan, rng.poisson(2, len(feats)))
    feats.to_parquet(root / "features.parquet")
    if with_history:  # past scoring runs: risk informative of the realised label
        hist = snap[["account_id", "snapshot_date"]].copy()
        signal = snap["label"].fillna(0).to_numpy()
        hist["risk"] = np.clip(0.05 + 0.5 * signal + rng.normal(0, 0.15, len(hist)), 0.001, 0.999)
        hist["scored_at"] = hist["snapshot_date"] + pd.Timedelta(hours=6)
        hist["risk_tier"] = np.where(hist["risk"] > 0.3, "high", "low")
        hist["model_version"] = "1"
        (root / "scores").mkdir()
        hist.to_parquet(root / "scores" / "history.parquet")
    params = root / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "snapshots": {"definition": "contract", "grace_days": 30},
                "split": {"test_months": 3, "valid_months": 2},
                "report": {"acquisition_cost": 500.0},
                "features": {"currency": "EUR"},
            }
        )
    )
    return {"validated": validated, "params": params, "root": root}


def _argv(root: Path, validated: Path, params: Path, model: Path | None = None) -> list[str]:
    return [
        "--validated", str(validated),
        "--snapshots", str(root / "snapshots.parquet"),
        "--features", str(root / "features.parquet"),
        "--scores", str(root / "scores"),
        "--model", str(model or root / "no_model"),
        "--metrics", str(root / "metrics" / "report.json"),
        "--html", str(root / "reports" / "report.html"),
        "--params", str(params),
    ]  # fmt: skip


def test_first_run_without_model_or_scores(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path)
    report.main(_argv(tmp_path, paths["validated"], paths["params"]))
    doc = json.loads((tmp_path / "metrics" / "report.json").read_text())
    for name in ("logo_retention_rate", "renewal_rate", "gross_revenue_retention", "net_revenue_retention",
                 "logo_churn_rate", "mrr_churn_rate"):  # fmt: skip
        assert isinstance(doc["overall"][name], float), name
        month = next(iter(doc["by_month"].values()))
        assert name in month
    assert 0 < doc["overall"]["logo_churn_rate"] < 0.2
    assert doc["overall"]["net_revenue_retention"] > doc["overall"]["gross_revenue_retention"]
    assert set(doc["by_segment"]) == {"smb", "mid_market", "enterprise"}
    assert doc["clv"]["all"]["acquisition_cost"] == 500.0
    assert any("first run" in n for n in doc["notes"])
    mon = json.loads((tmp_path / "metrics" / "monitoring.json").read_text())
    assert mon["backtest"]["by_date"] == [] and any("Backtest unavailable" in n for n in mon["notes"])
    assert {r["feature"] for r in mon["feature_drift"]} == {"logins_30d", "tickets_open"}
    assert mon["retrain"]["recommended"] is False
    html = (tmp_path / "reports" / "report.html").read_text()
    assert html.count("<svg") >= 3
    assert "<th>MRR start (EUR)</th>" in html and "<th>CLV (EUR)</th>" in html  # features.currency
    assert "segment × feature pairs" in html and len(mon["segment_feature_drift"]) == 3 * 2
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing fetched from elsewhere


def test_activity_definition_when_subscriptions_are_absent(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path, with_subscriptions=False)
    report.main(_argv(tmp_path, paths["validated"], paths["params"]))
    doc = json.loads((tmp_path / "metrics" / "report.json").read_text())
    assert doc["definition"] == "activity"
    assert doc["overall"]["logo_retention_rate"] is not None
    assert doc["overall"]["net_revenue_retention"] is None and doc["overall"]["renewal_rate"] is None
    assert any("unavailable" in n for n in doc["notes"])


def test_missing_inputs_are_clear_errors(tmp_path: Path) -> None:
    from churnguard.errors import InputError

    paths = _write_inputs(tmp_path)
    (tmp_path / "features.parquet").unlink()
    with pytest.raises(InputError, match=r"features\.parquet"):
        report.main(_argv(tmp_path, paths["validated"], paths["params"]))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"report": {"psi_bandz": [0.1, 0.2]}}))
    with pytest.raises(InputError, match="psi_bandz"):
        report.main(_argv(tmp_path, paths["validated"], bad))


def test_backtest_and_score_drift_from_score_history(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path, with_history=True)
    report.main(_argv(tmp_path, paths["validated"], paths["params"]))
    mon = json.loads((tmp_path / "metrics" / "monitoring.json").read_text())
    assert mon["backtest"]["source"].startswith("score history")
    dates = [r["snapshot_date"][:10] for r in mon["backtest"]["by_date"]]
    assert dates[0] == "2023-04-01" and dates[-1] == "2024-04-01"  # horizon passed by data_end
    aucs = [r["roc_auc"] for r in mon["backtest"]["by_date"] if r["roc_auc"] is not None]
    assert aucs and min(aucs) > 0.8  # the history's risks carry the label signal
    assert mon["score_drift"]["source"].startswith("score history")
    html = (tmp_path / "reports" / "report.html").read_text()
    assert 'data-plot="backtest"' in html


def test_backtest_labels_scoring_runs_off_the_snapshot_calendar(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path, with_history=True)
    hist_path = tmp_path / "scores" / "history.parquet"
    hist = pd.read_parquet(hist_path)
    hist["snapshot_date"] = hist["snapshot_date"] + pd.Timedelta(days=15)  # e.g. runs on the 16th
    hist.to_parquet(hist_path)
    report.main(_argv(tmp_path, paths["validated"], paths["params"]))
    mon = json.loads((tmp_path / "metrics" / "monitoring.json").read_text())
    dates = [r["snapshot_date"][:10] for r in mon["backtest"]["by_date"]]
    # labelled once t + 90 days horizon + 30 days grace <= data_end (2024-06-30)
    assert dates[0] == "2023-04-16" and dates[-1] == "2024-02-16"
    assert sum(r["positives"] for r in mon["backtest"]["by_date"]) > 10


def test_too_little_history_for_a_split_still_reports_retention(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path)
    paths["params"].write_text(yaml.safe_dump({"split": {"test_months": 12, "valid_months": 6}}))
    report.main(_argv(tmp_path, paths["validated"], paths["params"]))
    doc = json.loads((tmp_path / "metrics" / "report.json").read_text())
    mon = json.loads((tmp_path / "metrics" / "monitoring.json").read_text())
    assert doc["overall"]["logo_retention_rate"] is not None
    assert any("Drift unavailable" in n for n in mon["notes"]) and mon["reference"]["rows"] == 0
    assert mon["retrain"]["recommended"] is False
