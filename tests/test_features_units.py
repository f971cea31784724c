"""Feature families on tiny inline frames: the point-in-time rules, one by one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.engine import Engine
from features.relationship import build_relationship_features
from features.support import build_support_features, finish_support_features
from features.surveys import build_comment_features, build_survey_features
from features.text import THEMES
from features.usage import build_usage_features, infer_core_events, prepare_event_aggregates, snapshot_days
from features.usage_history import (
    build_event_history,
    build_user_history,
    finish_usage_history,
    first_event_day,
)

T = pd.Timestamp
SNAP = T("2025-03-01")


@pytest.fixture()
def engine() -> Engine:
    e = Engine(threads=1)
    e.register(
        "snaps",
        pd.DataFrame({"account_id": ["a", "b"], "snapshot_date": [SNAP, SNAP]}).astype(
            {"snapshot_date": "datetime64[us]"}
        ),
    )
    return e


def _at(frame: pd.DataFrame, account: str) -> pd.Series:
    return frame.set_index("account_id").loc[account]


def test_tickets_open_response_and_sla_at_t(engine: Engine) -> None:
    tickets = pd.DataFrame(
        {
            "ticket_id": ["1", "2", "3", "4"],
            "account_id": ["a", "a", "a", "a"],
            "created_at": [T("2025-02-20"), T("2025-02-27"), T("2024-06-01"), T("2025-03-05")],
            "category": ["bug", "question", "bug", "bug"],
            "severity": ["high", "low", "urgent", "high"],
            # 1: answered in 2 h (in SLA of 8 h); 2: answered only after t -> unanswered at t
            "first_response_at": [T("2025-02-20 02:00"), T("2025-03-02"), T("2024-06-01 01:00"), pd.NaT],
            # 1: resolved after t -> open at t; 3: resolved before -> closed
            "resolved_at": [T("2025-03-10"), pd.NaT, T("2024-06-02"), pd.NaT],
            "escalated": [True, False, True, True],
            "csat": [1.0, np.nan, 5.0, 1.0],
        }
    )
    engine.register("tickets", tickets)
    raw = build_support_features(
        engine,
        "snaps",
        "tickets",
        {"high": 8, "low": 72, "urgent": 4},
        {"high": 72, "low": 336, "urgent": 24},
    )
    out = finish_support_features(engine.query("SELECT * FROM snaps"), raw)
    a, b = _at(out, "a"), _at(out, "b")
    assert a["tickets_30d"] == 2 and a["tickets_bug_30d"] == 1  # ticket 4 is created after t
    assert a["bugs_high_open"] == 1  # ticket 1, resolved only after t
    assert a["bugs_high_open_max_age_days"] == pytest.approx(9.0)
    assert a["first_response_hours_median_90d"] == pytest.approx(2.0)  # ticket 2's response is after t
    assert a["sla_first_response_breaches_90d"] == 0  # ticket 2 waited 48 h < 72 h
    assert a["sla_resolution_breaches_90d"] == 1  # ticket 1 open 9 days > 72 h
    assert a["escalations_90d"] == 0  # ticket 1's escalation is not final while open at t
    assert np.isnan(a["csat_mean_90d"])  # ticket 1's CSAT is not known at t
    # responses before t in 365 days: ticket 1 (2 h / 8 h); ticket 3 is older than 365 days
    assert a["first_response_vs_target_median_365d"] == pytest.approx(0.25)
    assert b["tickets_90d"] == 0 and np.isnan(b["first_response_hours_median_90d"])
    assert np.isnan(b["first_response_vs_target_median_365d"])


def test_users_deactivated_after_t_are_still_enabled(engine: Engine) -> None:
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4"],
            "account_id": ["a"] * 4,
            "created_at": [T("2024-01-01"), T("2024-01-01"), T("2024-01-01"), T("2025-03-02")],
            "role": ["champion", "admin", "member", "champion"],
            "deactivated_at": [T("2025-02-01"), T("2025-04-01"), pd.NaT, pd.NaT],
        }
    )
    engine.register("users", users)
    out = build_relationship_features(engine, "snaps", "users")
    a = _at(out, "a")
    assert a["users_enabled"] == 2  # u2 leaves after t; u4 is created after t
    assert a["champions_departed_90d"] == 1 and a["key_contact_departed_90d"] == 1
    assert a["admins_enabled"] == 1 and a["champions_enabled"] == 0
    assert a["users_change_90d"] == -1
    assert a["days_since_champion_departed"] == 28  # u1 left 2025-02-01
    assert np.isnan(a["days_since_admin_departed"])  # u2 leaves only after t


def test_survey_after_t_does_not_exist(engine: Engine) -> None:
    surveys = pd.DataFrame(
        {
            "response_id": ["r1", "r2", "r3", "r4"],
            "account_id": ["a", "a", "a", "b"],
            "submitted_at": [T("2024-10-01"), T("2025-01-15"), T("2025-03-01"), T("2025-04-01")],
            "nps": [9.0, 4.0, 0.0, 10.0],
        }
    )
    engine.register("surveys", surveys)
    out = build_survey_features(engine, "snaps", "surveys", wave_days=90)
    a, b = _at(out, "a"), _at(out, "b")
    assert a["nps_last"] == 4 and a["nps_prev"] == 9 and a["nps_change_last"] == -5
    assert a["nps_last_detractor"] == 1 and a["days_since_last_survey"] == 45
    assert a["survey_nonresponse_last_wave"] == 0
    assert np.isnan(b["nps_last"]) and b["survey_nonresponse_last_wave"] == 1


def test_usage_windows_trend_streak_and_core_events(engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    days = pd.date_range("2024-12-01", "2025-02-28", freq="D")
    rows = []
    for i, d in enumerate(days):
        n = 1 if i < 60 else 3  # usage rises in the last 30 days
        rows += [
            ("a", f"u{i % 3}", d + pd.Timedelta(hours=10), "login" if k == 0 else "report") for k in range(n)
        ]
    rows.append(("a", "u9", T("2025-03-01 00:00"), "login"))  # at t: not known at t
    rows.append(("b", "v1", T("2024-10-01"), "export"))
    ev = pd.DataFrame(rows, columns=["account_id", "user_id", "timestamp", "event"]).astype(
        {"timestamp": "datetime64[us]"}
    )
    ev.to_parquet(tmp_path / "e.parquet")
    prepare_event_aggregates(engine, engine.dialect.parquet(str(tmp_path / "e.parquet")))
    assert infer_core_events(engine, SNAP, 1) == ["login"]  # most events among the most widely used
    out = build_usage_features(engine, "snaps", ["login", "report"])
    a, b = _at(out, "a"), _at(out, "b")
    assert a["events_30d"] == 30 * 3 and a["events_prev_30d"] == 30
    assert a["active_users_30d"] == 3 and a["active_days_7d"] == 7
    assert a["days_since_last_activity"] == 1
    assert a["events_slope_90d_per_day"] > 0 and a["active_weeks_streak"] == 12
    assert a["core_event_adoption_30d_share"] == 1.0
    assert b["events_90d"] == 0 and b["days_since_last_activity"] == 151
    assert np.isnan(b["events_per_active_user_30d"]) and b["active_weeks_streak"] == 0


def test_usage_history_periods_intensity_and_unobserved_periods(engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """30-day periods before t, per enabled user, NaN before the event log starts."""
    rows = []
    for d in pd.date_range("2024-09-01", "2025-01-29", freq="D"):  # one login a day
        rows.append(("a", "u1", d + pd.Timedelta(hours=9), "login"))
    for d in pd.date_range("2025-01-30", "2025-02-28", freq="D"):  # period 0: three a day
        rows += [("a", "u1", d + pd.Timedelta(hours=9), e) for e in ("login", "report", "report")]
    for d in pd.date_range("2024-12-01", "2025-02-28", freq="D"):  # b: two a day since creation
        rows += [("b", "v1", d + pd.Timedelta(hours=h), "login") for h in (9, 10)]
    rows.append(("a", "u1", T("2025-03-01 00:00"), "login"))  # at t: not known at t
    ev = pd.DataFrame(rows, columns=["account_id", "user_id", "timestamp", "event"]).astype(
        {"timestamp": "datetime64[us]"}
    )
    ev.to_parquet(tmp_path / "e.parquet")
    accounts = pd.DataFrame(
        {"account_id": ["a", "b"], "created_at": [T("2024-06-01"), T("2024-12-01")]}
    ).astype({"created_at": "datetime64[us]"})
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "v1"],
            "account_id": ["a", "a", "a", "a", "b"],
            "created_at": [T("2024-06-01")] * 3 + [T("2025-03-05"), T("2024-12-01")],
            "role": ["admin", "member", "member", "member", "admin"],
            # u2 leaves before t (enabled until then); u3 only after t (enabled all along)
            "deactivated_at": [pd.NaT, T("2025-02-14"), T("2025-03-10"), pd.NaT, pd.NaT],
        }
    ).astype({"created_at": "datetime64[us]", "deactivated_at": "datetime64[us]"})
    engine.register("accounts", accounts)
    engine.register("users", users)
    prepare_event_aggregates(engine, engine.dialect.parquet(str(tmp_path / "e.parquet")))
    build_usage_features(engine, "snaps", ["login"])  # materialises the per-day aggregate
    start = first_event_day(engine, ["usage_events"])
    events = build_event_history(engine, snapshot_days(engine, "snaps"), "accounts", start)
    people = build_user_history(engine, "snaps", "users", "accounts")
    out = finish_usage_history(events.merge(people, on=["account_id", "snapshot_date"]))
    assert not any(c.startswith("_hist_") for c in out.columns)
    a, b = _at(out, "a"), _at(out, "b")
    # period 0 = [t - 30 d, t): 90 events; users 30 + 15 + 30 user-days = 2.5 enabled users
    assert a["usage_intensity_30d"] == pytest.approx(90.5 / 3.0)
    assert a["usage_intensity_30d_lag1"] == pytest.approx(30.5 / 3.5)
    assert a["core_event_share_30d"] == pytest.approx(1 / 3) and a["core_event_share_30d_lag1"] == 1.0
    assert a["events_30d_lag5"] == 30  # [t - 180 d, t - 150 d) starts 2024-09-02, inside the log
    # periods starting before the log's first day are unobserved: the mean uses periods 0..5 only
    lags = [np.log(90.5 / 3.0)] + [np.log(30.5 / 3.5)] * 5
    assert a["usage_intensity_mean_360d"] == pytest.approx(np.exp(np.mean(lags)))  # geometric mean
    assert a["usage_intensity_vs_usual_trend_30d_pct"] == pytest.approx((90.5 / 3.0 / (30.5 / 3.5) - 1) * 100)
    assert a["usage_intensity_slope_90d_rel"] > 0
    assert np.isnan(a["usage_intensity_at_start"])  # created before the log started
    # b: created 2024-12-01, first 90 days fully observed (180 events, one user)
    assert b["usage_intensity_at_start"] == pytest.approx(60.5 / 1.5)
    assert b["events_30d_lag3"] == 0 and np.isnan(b["usage_intensity_30d_lag3"])  # no user yet


def test_comment_theme_shares_over_a_year(engine: Engine) -> None:
    comments = pd.DataFrame(
        {
            "response_id": ["r1", "r2", "r3", "r4"],
            "account_id": ["a", "a", "a", "a"],
            # r1 is older than 365 days; r4 arrives after t
            "submitted_at": [T("2024-01-10"), T("2024-10-01"), T("2025-02-01"), T("2025-03-02")],
            "sentiment": [np.nan] * 4,
            **{f"theme_{th}": [1, 1, 0, 1] if th == "price" else [0, 0, 0, 1] for th in THEMES},
        }
    ).astype({"submitted_at": "datetime64[us]"})
    engine.register("comments", comments)
    out = build_comment_features(engine, "snaps", "comments", with_sentiment=False)
    a, b = _at(out, "a"), _at(out, "b")
    assert a["comments_365d"] == 2 and a["comments_theme_price_365d_share"] == 0.5
    assert a["comments_theme_cancel_365d_share"] == 0.0
    assert b["comments_365d"] == 0 and np.isnan(b["comments_theme_price_365d_share"])
