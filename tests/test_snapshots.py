"""Snapshot calendar, eligibility and labels on hand-built tiny cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.errors import InputError
from features.snapshots import (
    SnapshotParams,
    build_activity_snapshots,
    build_contract_snapshots,
    build_snapshots,
    contract_churn_dates,
    make_calendar,
    scoring_date,
)

T = pd.Timestamp


def _accounts(*ids: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"account_id": list(ids), "created_at": [T("2023-01-01")] * len(ids), "segment": ["smb"] * len(ids)}
    )


def _subs(rows: list[tuple]) -> pd.DataFrame:
    """rows: (account_id, start, end, billing_period[, canceled_at])."""
    out = []
    for i, r in enumerate(rows):
        out.append(
            {
                "account_id": r[0],
                "subscription_id": f"s{i}",
                "start_date": T(r[1]),
                "end_date": T(r[2]),
                "mrr": 100.0,
                "billing_period": r[3],
                "seats": 5,
                "canceled_at": T(r[4]) if len(r) > 4 else pd.NaT,
            }
        )
    return pd.DataFrame(out)


def _row(snaps: pd.DataFrame, account: str, date: str) -> pd.Series:
    hit = snaps[(snaps["account_id"] == account) & (snaps["snapshot_date"] == T(date))]
    assert len(hit) == 1, f"no single row for {account} at {date}"
    return hit.iloc[0]


P = SnapshotParams(horizon_days=90, grace_days=30)
END = T("2025-12-31 18:00")


def test_calendar_is_monthly_and_ends_at_scoring_date() -> None:
    dates = make_calendar(T("2024-01-10"), END, SnapshotParams(warmup_days=60))
    assert dates[0] == T("2024-04-01")
    assert dates[-1] == scoring_date(END) == T("2026-01-01")
    assert (dates[:-1].day == 1).all()
    assert dates.dtype == "datetime64[us]"


def test_calendar_weekly_and_daily() -> None:
    weekly = make_calendar(
        T("2025-01-01"), T("2025-03-05 10:00"), SnapshotParams(freq="weekly", warmup_days=0)
    )
    assert (weekly[:-1].dayofweek == 0).all() and weekly[-1] == T("2025-03-06")
    daily = make_calendar(T("2025-01-01"), T("2025-01-10"), SnapshotParams(freq="daily", warmup_days=0))
    assert len(daily) == 11 and daily[-1] == T("2025-01-11")


def test_renewal_inside_grace_is_not_churn_outside_is() -> None:
    subs = _subs(
        [
            ("in", "2024-01-01", "2025-01-01", "annual"),
            ("in", "2025-01-20", "2026-01-20", "annual"),  # 19 days late: inside grace
            ("out", "2024-01-01", "2025-01-01", "annual"),
            ("out", "2025-03-01", "2026-03-01", "annual"),  # 59 days late: churned, came back
        ]
    )
    churns = contract_churn_dates(subs, 30, END)
    assert churns["account_id"].tolist() == ["out"]
    assert churns["churn_date"].tolist() == [T("2025-01-01")]
    dates = pd.DatetimeIndex([T("2024-11-01"), T("2025-02-01")]).astype("datetime64[us]")
    snaps = build_contract_snapshots(_accounts("in", "out"), subs, dates, END, P)
    assert _row(snaps, "in", "2024-11-01")["label"] == 0.0
    assert _row(snaps, "out", "2024-11-01")["label"] == 1.0
    assert _row(snaps, "out", "2024-11-01")["churn_date"] == T("2025-01-01")
    # Between terms 'out' has no active term: not eligible on 2025-02-01.
    assert not ((snaps["account_id"] == "out") & (snaps["snapshot_date"] == T("2025-02-01"))).any()


def test_annual_vs_monthly_horizon() -> None:
    # Monthly account stops after May 2025; annual account's term ends 2025-08-15 and is not renewed.
    rows = [("m", f"2025-{m:02d}-01", f"2025-{m + 1:02d}-01", "monthly") for m in range(1, 6)]
    rows.append(("a", "2024-08-15", "2025-08-15", "annual"))
    subs = _subs(rows)
    dates = pd.DatetimeIndex([T("2025-02-01"), T("2025-04-01"), T("2025-06-01")]).astype("datetime64[us]")
    snaps = build_contract_snapshots(_accounts("m", "a"), subs, dates, END, P)
    assert _row(snaps, "m", "2025-02-01")["label"] == 0.0  # churn 2025-06-01 is > 90 days away
    assert _row(snaps, "m", "2025-04-01")["label"] == 1.0
    assert _row(snaps, "m", "2025-06-01")["label"] == 1.0  # term ends at t: churns at t
    assert _row(snaps, "m", "2025-06-01")["days_to_renewal"] == 0
    assert _row(snaps, "a", "2025-04-01")["label"] == 0.0
    assert _row(snaps, "a", "2025-06-01")["label"] == 1.0
    assert _row(snaps, "a", "2025-06-01")["renewal_date"] == T("2025-08-15")
    assert _row(snaps, "a", "2025-06-01")["arr"] == 1200.0


def test_cancellation_recorded_later_does_not_change_label_or_eligibility() -> None:
    base = [("c", "2024-06-01", "2025-06-01", "annual")]
    canceled = [("c", "2024-06-01", "2025-06-01", "annual", "2025-05-20")]
    dates = pd.DatetimeIndex([T("2025-04-01"), T("2025-05-01")]).astype("datetime64[us]")
    a = build_contract_snapshots(_accounts("c"), _subs(base), dates, END, P)
    b = build_contract_snapshots(_accounts("c"), _subs(canceled), dates, END, P)
    pd.testing.assert_frame_equal(a, b)
    assert a["label"].tolist() == [1.0, 1.0]


def test_unlabeled_tail_and_scoring_date() -> None:
    subs = _subs([("x", "2024-01-01", "2027-01-01", "annual")])
    dates = make_calendar(T("2024-01-01"), END, SnapshotParams(warmup_days=0))
    snaps = build_contract_snapshots(_accounts("x"), subs, dates, END, P)
    observable = snaps.set_index("snapshot_date")["label_observable"]
    # horizon 90 + grace 30 days must fit before data_end 2025-12-31 18:00.
    assert observable[T("2025-09-01")]
    assert not observable[T("2025-10-01")]
    assert snaps.loc[~snaps["label_observable"], "label"].isna().all()
    assert snaps["is_scoring_date"].sum() == 1
    assert snaps.loc[snaps["is_scoring_date"], "snapshot_date"].iloc[0] == T("2026-01-01")


def test_lead_time_shifts_label_window() -> None:
    subs = _subs([("l", "2024-06-01", "2025-03-15", "annual")])
    dates = pd.DatetimeIndex([T("2025-03-01")]).astype("datetime64[us]")
    no_lead = build_contract_snapshots(_accounts("l"), subs, dates, END, P)
    lead = build_contract_snapshots(_accounts("l"), subs, dates, END, P.model_copy(update={"lead_days": 30}))
    assert no_lead["label"].tolist() == [1.0]
    assert lead["label"].tolist() == [0.0]  # churn 14 days away falls before the window


def test_activity_definition() -> None:
    days = pd.DataFrame(
        {
            "account_id": ["busy"] * 12 + ["quits"] * 3,
            "day": [
                *pd.date_range("2025-01-05", periods=12, freq="14D"),
                *[T("2025-01-10"), T("2025-02-10"), T("2025-02-25")],
            ],
        }
    )
    dates = pd.DatetimeIndex([T("2025-01-01"), T("2025-03-01"), T("2025-06-01")]).astype("datetime64[us]")
    params = SnapshotParams(definition="activity", active_days=30, horizon_days=60)
    snaps = build_activity_snapshots(_accounts("busy", "quits", "never"), days, None, dates, END, params)
    assert set(snaps["account_id"]) == {"busy", "quits"}
    assert not (snaps["snapshot_date"] == T("2025-01-01")).any()  # nobody active before
    assert _row(snaps, "busy", "2025-03-01")["label"] == 0.0
    quits = _row(snaps, "quits", "2025-03-01")
    assert quits["label"] == 1.0 and quits["churn_date"] == T("2025-02-26")
    assert np.isnan(quits["mrr"])


def test_contract_without_subscriptions_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="definition: activity"):
        build_snapshots(_accounts("a"), None, None, T("2024-01-01"), END, SnapshotParams())
