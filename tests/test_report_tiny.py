"""The report stage on the shared tiny simulated company, cross-checked with the simulator's records.

The simulator writes every churn it decided (`sim_truth/churn_events.parquet`: account_id,
churn_date). The report derives churn from the subscriptions alone; the two must agree:
the same churns, the same monthly churned logos, and the same non-renewed terms.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from features import retention
from pipeline import report
from tests.conftest import Tiny

pytestmark = pytest.mark.slow  # needs the whole tiny pipeline (simulate .. score) from conftest


@pytest.fixture(scope="module")
def reported(tiny_reported: Tiny) -> Tiny:
    return tiny_reported


def _data_end(t: Tiny) -> pd.Timestamp:
    return report._read_data_end(t.validated)


def _sim_churns(t: Tiny) -> pd.DataFrame:
    ev = pd.read_parquet(t.truth / "churn_events.parquet")
    ev["churn_date"] = pd.to_datetime(ev["churn_date"])
    if ev["churn_date"].dt.tz is not None:
        ev["churn_date"] = ev["churn_date"].dt.tz_convert("UTC").dt.tz_localize(None)
    return ev


def _grace(t: Tiny) -> int:
    return report.load_context(t.params).grace_days


def test_churns_equal_the_simulators(reported: Tiny) -> None:
    t = reported
    subs = pd.read_parquet(t.validated / "subscriptions.parquet")
    data_end, grace = _data_end(t), _grace(t)
    derived = retention.derive_churn_events(subs, grace, data_end)
    sim = _sim_churns(t)
    known = sim[sim["churn_date"] + pd.Timedelta(days=grace) <= data_end]
    assert len(known) > 10
    got = set(zip(derived["account_id"], derived["churn_date"].dt.floor("D"), strict=True))
    want = set(zip(known["account_id"], known["churn_date"].dt.floor("D"), strict=True))
    assert got == want


def test_monthly_churn_and_renewal_figures_match_the_simulator(reported: Tiny) -> None:
    t = reported
    doc = json.loads((t.metrics / "report.json").read_text())
    sim = _sim_churns(t)
    months = sorted(doc["by_month"])
    assert len(months) >= 6
    for month in months:
        row = doc["by_month"][month]
        start = pd.Timestamp(month + "-01")
        end = start + pd.offsets.MonthBegin(1)
        # churned logos: customers at the month's start who are not at its end (00:00 of next month)
        in_month = sim[(sim["churn_date"] > start) & (sim["churn_date"] <= end)]
        assert row["churned_logos"] == len(in_month), month
        # non-renewed terms: the simulator's churns whose last term ends in this month
        ends_here = sim[sim["churn_date"].dt.to_period("M") == pd.Period(month, "M")]
        assert row["terms_up_for_renewal"] - row["terms_renewed"] == len(ends_here), month
    total_start = sum(doc["by_month"][m]["customers_start"] for m in months)
    total_churn = sum(doc["by_month"][m]["churned_logos"] for m in months)
    assert doc["overall"]["logo_churn_rate"] == pytest.approx(total_churn / total_start)


def test_outputs_on_the_tiny_company(reported: Tiny) -> None:
    t = reported
    doc = json.loads((t.metrics / "report.json").read_text())
    mon = json.loads((t.metrics / "monitoring.json").read_text())
    for name in retention.METRIC_NAMES:
        assert doc["overall"][name] is not None, name
    assert 0.8 < doc["overall"]["logo_retention_rate"] < 1.0
    assert doc["overall"]["renewal_rate"] > 0.5
    assert set(doc["clv"]) >= {"all"}
    assert mon["model"].startswith("model")
    assert mon["feature_drift"], "drift needs the model's features"
    assert mon["score_drift"] is not None and mon["score_drift"]["psi"] is not None
    assert mon["backtest"]["by_date"], mon["notes"]
    # drift is measured against the model's own training months; the backtest never uses
    # the months the model was fitted, early-stopped or calibrated on
    from models.bundle import ModelBundle

    own = ModelBundle.load(t.model).meta["split_dates"]
    assert mon["reference"]["snapshot_dates"] == own["train"]
    in_sample = set(own["train"]) | set(own["valid"])
    assert not {r["snapshot_date"][:10] for r in mon["backtest"]["by_date"]} & in_sample
    assert isinstance(mon["retrain"]["recommended"], bool)
    if mon["retrain"]["recommended"]:
        assert mon["retrain"]["reasons"]
    assert doc["monitoring"]["retrain_recommended"] == mon["retrain"]["recommended"]
    html = Path(t.report_html).read_text()
    assert html.count("<svg") >= 4
