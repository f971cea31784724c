"""The bucketed usage aggregation equals the straightforward per-day range-join formulation.

`ReferenceUsage` below is the previous implementation of `features/usage.py` (per-day
aggregates range-joined to every snapshot date), kept as an oracle. Both run on random
event logs with awkward snapshot dates (midnights, non-midnight times, dates before any
event, accounts without events) and must agree exactly, usage and onboarding features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.engine import Engine, sql_string
from features.onboarding import build_onboarding_features
from features.usage import (
    STREAK_WEEKS,
    WINDOW_DAYS,
    build_usage_features,
    finish_usage_features,
    prepare_event_aggregates,
    usage_window_counts,
)

KEYS = ["account_id", "snapshot_date"]


def _ref_prepare(engine: Engine, events: str) -> None:
    day = engine.dialect.day("timestamp")
    engine.create_table(
        "daily_user",
        f"SELECT account_id, user_id, {day} AS day, COUNT(*) AS n_events FROM {events} GROUP BY 1, 2, 3",
    )
    engine.create_table(
        "daily_event",
        f"SELECT account_id, event, {day} AS day, COUNT(*) AS n_events FROM {events} GROUP BY 1, 2, 3",
    )
    engine.create_table(
        "daily_account",
        "SELECT account_id, day, SUM(n_events) AS n_events FROM daily_user GROUP BY 1, 2",
    )


def _ref_join(engine: Engine, table: str, snaps: str, extra: str = "") -> str:
    d = engine.dialect
    ago = d.days_between("x.day", "s.snapshot_date")
    return f"""
        SELECT s.account_id, s.snapshot_date, {ago} AS ago, x.n_events{extra}
        FROM {snaps} s JOIN {table} x
          ON x.account_id = s.account_id
         AND x.day >= {d.minus_days("s.snapshot_date", WINDOW_DAYS)} AND x.day < s.snapshot_date
    """


def _ref_usage(engine: Engine, snaps: str, core_events: list[str]) -> pd.DataFrame:
    """Raw window columns of the previous formulation (before the pandas finishing step)."""
    d = engine.dialect
    core = ", ".join(sql_string(e) for e in core_events) or "NULL"
    users = engine.query(
        f"""
        WITH per_user AS (
            SELECT account_id, snapshot_date, user_id, MIN(ago) AS min_ago,
                   MAX(CASE WHEN ago BETWEEN 31 AND 60 THEN 1 ELSE 0 END) AS in_prev_30d,
                   SUM(CASE WHEN ago <= 7 THEN n_events ELSE 0 END) AS e7,
                   SUM(CASE WHEN ago <= 30 THEN n_events ELSE 0 END) AS e30,
                   SUM(CASE WHEN ago BETWEEN 31 AND 60 THEN n_events ELSE 0 END) AS eprev30,
                   SUM(n_events) AS e90
            FROM ({_ref_join(engine, "daily_user", snaps, ", x.user_id")}) j
            GROUP BY account_id, snapshot_date, user_id
        )
        SELECT account_id, snapshot_date,
               SUM(CASE WHEN min_ago <= 7 THEN 1 ELSE 0 END) AS active_users_7d,
               SUM(CASE WHEN min_ago <= 30 THEN 1 ELSE 0 END) AS active_users_30d,
               SUM(in_prev_30d) AS active_users_prev_30d, COUNT(*) AS active_users_90d,
               SUM(e7) AS events_7d, SUM(e30) AS events_30d,
               SUM(eprev30) AS events_prev_30d, SUM(e90) AS events_90d
        FROM per_user GROUP BY account_id, snapshot_date
        """
    )
    weeks = ", ".join(
        f"MAX(CASE WHEN ago BETWEEN {7 * k + 1} AND {7 * k + 7} THEN 1 ELSE 0 END) AS week_{k}"
        for k in range(STREAK_WEEKS)
    )
    days = engine.query(
        f"""
        SELECT account_id, snapshot_date,
               SUM(CASE WHEN ago <= 7 THEN 1 ELSE 0 END) AS active_days_7d,
               SUM(CASE WHEN ago <= 30 THEN 1 ELSE 0 END) AS active_days_30d,
               COUNT(*) AS active_days_90d, SUM(n_events * ({WINDOW_DAYS} - ago)) AS sum_xy_90d, {weeks}
        FROM ({_ref_join(engine, "daily_account", snaps)}) j GROUP BY account_id, snapshot_date
        """
    )
    events = engine.query(
        f"""
        WITH per_event AS (
            SELECT account_id, snapshot_date, event, MIN(ago) AS min_ago
            FROM ({_ref_join(engine, "daily_event", snaps, ", x.event")}) j
            GROUP BY account_id, snapshot_date, event
        )
        SELECT account_id, snapshot_date,
               SUM(CASE WHEN min_ago <= 30 THEN 1 ELSE 0 END) AS distinct_events_30d,
               COUNT(*) AS distinct_events_90d,
               SUM(CASE WHEN min_ago <= 30 AND event IN ({core}) THEN 1 ELSE 0 END) AS core_events_used_30d,
               SUM(CASE WHEN event IN ({core}) THEN 1 ELSE 0 END) AS core_events_used_90d
        FROM per_event GROUP BY account_id, snapshot_date
        """
    )
    last = engine.query(
        f"""
        WITH timeline AS (
            SELECT account_id, snapshot_date AS at_ts, 0 AS is_activity FROM {snaps}
            UNION ALL SELECT account_id, day AS at_ts, 1 AS is_activity FROM daily_account
        ),
        running AS (
            SELECT account_id, at_ts, is_activity,
                   MAX(CASE WHEN is_activity = 1 THEN at_ts END) OVER (
                       PARTITION BY account_id ORDER BY at_ts, is_activity
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS last_day
            FROM timeline
        )
        SELECT account_id, at_ts AS snapshot_date,
               {d.days_between("last_day", "at_ts")} AS days_since_last_activity
        FROM running WHERE is_activity = 0
        """
    )
    out = engine.query(f"SELECT DISTINCT account_id, snapshot_date FROM {snaps}")
    for part in (users, days, events):
        out = out.merge(part, on=KEYS, how="left")
    cols = [c for c in out.columns if c not in KEYS]
    out[cols] = out[cols].fillna(0).astype(float)
    out = out.merge(last, on=KEYS, how="left")
    out["days_since_last_activity"] = out["days_since_last_activity"].astype(float)
    return out


def _company(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Random events, accounts and snapshot keys with edge cases at the window boundaries."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    rows = []
    for a in range(6):
        n = int(rng.integers(0, 400)) if a else 0  # account a0 has no events at all
        days = rng.integers(0, 260, n)
        secs = rng.choice([0, 1, 36_000, 86_399], n)  # midnights and the day's last second
        ts = start + pd.to_timedelta(days, unit="D") + pd.to_timedelta(secs, unit="s")
        users = rng.integers(0, 1 + a, n)
        kinds = rng.choice(["login", "report", "export", "share"], n, p=[0.5, 0.3, 0.15, 0.05])
        rows.append(pd.DataFrame({"account_id": f"a{a}", "user_id": [f"u{a}_{u}" for u in users],
                                  "timestamp": ts, "event": kinds}))  # fmt: skip
    events = pd.concat(rows, ignore_index=True).astype({"timestamp": "datetime64[us]"})
    snap_rows = []
    for a in range(6):
        dates = start + pd.to_timedelta(np.sort(rng.choice(np.arange(-20, 300), 9, replace=False)), unit="D")
        dates = [*dates, dates[3] + pd.Timedelta(hours=13, minutes=30)]  # not a midnight
        snap_rows += [(f"a{a}", t) for t in dates]
    snaps = pd.DataFrame(snap_rows, columns=KEYS).astype({"snapshot_date": "datetime64[us]"})
    created = start + pd.to_timedelta([0, 5, 40, 100, 150, 200], unit="D")
    accounts = pd.DataFrame({"account_id": [f"a{a}" for a in range(6)], "created_at": created})
    accounts = accounts.astype({"created_at": "datetime64[us]"})
    return events, snaps, accounts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bucketed_usage_equals_per_day_range_joins(tmp_path, seed: int) -> None:  # type: ignore[no-untyped-def]
    events, snaps, accounts = _company(seed)
    events.to_parquet(tmp_path / "e.parquet")
    source = f"read_parquet('{tmp_path / 'e.parquet'}')"
    core = ["login", "share", "never_logged"]
    results = {}
    for name in ("new", "ref"):
        eng = Engine(threads=1)
        eng.register("snaps", snaps)
        eng.register("accounts_t", accounts)
        if name == "new":
            prepare_event_aggregates(eng, source)
            raw = usage_window_counts(eng, "snaps", core)
            usage = build_usage_features(eng, "snaps", core)
        else:
            _ref_prepare(eng, source)
            raw = _ref_usage(eng, "snaps", core)
            usage = finish_usage_features(raw, core)
        onboarding = build_onboarding_features(eng, "snaps", "accounts_t", core, 120, 2)
        results[name] = [raw, usage, onboarding]
        eng.close()
    new, ref = results["new"], results["ref"]
    assert len(new[1]) == len(snaps) and new[1]["events_90d"].sum() > 0
    assert new[1]["active_users_prev_30d"].sum() > 0 and new[1]["core_events_used_30d"].sum() > 0
    assert new[2]["onboarding_days_to_first_use"].notna().any()

    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(KEYS).reset_index(drop=True)

    for got, expected in zip(new, ref, strict=True):  # same columns, same order, same values
        pd.testing.assert_frame_equal(ordered(got), ordered(expected), check_exact=True)
