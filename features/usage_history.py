"""Usage history: activity per enabled user over a year of 30-day periods, and its trend.

The usage features (`features/usage.py`) look back 90 days. Churn risk also depends on
how today's usage compares with the account's *own* past: a team that used the product
heavily for a year and has slowed down for three months is at more risk than one that
was always light. This module measures, for each snapshot t:

- per 30-day period k = 0, 1, ... (period k is [t - 30 (k + 1) days, t - 30 k days)):
  events, events of the core types, and enabled user-days (users table);
- the same for the account's first `EARLY_DAYS` days (from `accounts.created_at`, cut at t).

From these, `finish_usage_history` derives the *usage intensity* of a period,
log((events + 0.5) / (enabled users + 0.5)) with enabled users = user-days / period
length, and its history: lags, an exponentially weighted mean (what "usual" looks like
for this account), the change of the last period against it, means, least-squares slopes,
and the same for the share of events that are core events. Intensities are computed on
that log scale and published in readable units (events per enabled user per 30 days,
% changes, the relative change over a window), each a monotone function of its log form,
so that reasons can quote them to a CS manager (docs/features.md).

Event counts come from running sums over the per-(account, day) aggregate of
`features/usage.py` (`usage_account_days`): one window function over the account's active
days and the period boundaries of its snapshots, no range join, so a year of history costs
about as much as one pass over the per-day rows. Point in time: a boundary b counts the
days d < b only, and the last boundary is the snapshot's own (`c` in `usage.snapshot_days`);
a deactivation counts only when it happened before t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.engine import Engine

KEYS = ["account_id", "snapshot_date"]
# Windows are part of the column names (like the 7/30/90-day usage windows), so constants.
PERIOD_DAYS = 30
PERIODS = 12  # a year of 30-day periods
EARLY_DAYS = 90  # the account's first days, for "usage now vs at the start"
EWM_WEIGHT = 0.3  # weight of the newest period in the exponentially weighted mean
EARLY = -1  # period index of the account's first EARLY_DAYS days


def _raw(k: int) -> str:
    return "early" if k == EARLY else str(k)


def events_col(k: int) -> str:
    return f"_hist_events_{_raw(k)}"


def core_col(k: int) -> str:
    return f"_hist_core_{_raw(k)}"


EARLY_LENGTH = "_hist_early_length_days"


def user_days_col(k: int) -> str:
    return f"_hist_user_days_{_raw(k)}"


def first_event_day(engine: Engine, sources: list[str]) -> int | None:
    """Day number of the first event over all `sources` (table expressions), None without events.

    Periods before it were not observed. It is a fact before every snapshot that has any
    history (snapshots start after the data start), so it never looks past t.
    """
    day = engine.dialect.day_number("MIN(timestamp)")
    days = [engine.scalar(f"SELECT {day} FROM {src}") for src in sources]
    known = [int(v) for v in days if v is not None]  # type: ignore[call-overload]
    return min(known) if known else None


def build_event_history(
    engine: Engine, snap_days: str, accounts: str, log_start_day: int | None
) -> pd.DataFrame:
    """Events and core events per period (internal `_hist_*` columns) per snapshot row.

    Needs `usage_account_days` (account_id, d, n, n_core) from `features.usage` and the
    snapshot days `snap_days` (account_id, snapshot_date, a, c) of `usage.snapshot_days`.
    A period starting before `log_start_day` (the day number of the event log's first
    day; None = no events) was not observed: its counts are NaN, not 0. The same holds
    for the early window of an account created before the log starts.
    """
    d = engine.dialect
    engine.register(
        "usage_history_offsets",
        pd.DataFrame({"k": np.arange(PERIODS + 1), "ago": np.arange(PERIODS + 1) * PERIOD_DAYS}),
    )
    created = d.day_number("x.created_at")
    long = engine.query(
        f"""
        WITH s AS {snap_days},
        b AS (
            SELECT s.account_id, s.snapshot_date, o.k AS k, s.c - o.ago AS day
            FROM s CROSS JOIN usage_history_offsets o
            UNION ALL
            SELECT s.account_id, s.snapshot_date, -1 AS k, LEAST(s.c, {created}) AS day
            FROM s JOIN {accounts} x ON x.account_id = s.account_id
            UNION ALL
            SELECT s.account_id, s.snapshot_date, -2 AS k, LEAST(s.c, {created} + {int(EARLY_DAYS)}) AS day
            FROM s JOIN {accounts} x ON x.account_id = s.account_id
        ),
        pts AS (
            SELECT account_id, day, 0 AS kind, snapshot_date, k, 0 AS n, 0 AS n_core FROM b
            UNION ALL
            SELECT account_id, d AS day, 1 AS kind, NULL AS snapshot_date, NULL AS k, n, n_core
            FROM usage_account_days
        ),
        run AS (
            SELECT account_id, snapshot_date, k, kind,
                   SUM(n) OVER w AS cum_n, SUM(n_core) OVER w AS cum_core
            FROM pts
            WINDOW w AS (
                PARTITION BY account_id ORDER BY day, kind
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            )
        )
        SELECT account_id, snapshot_date, k, cum_n, cum_core FROM run WHERE kind = 0
        """
    )
    keys = engine.query(
        f"""
        SELECT DISTINCT s.account_id, s.snapshot_date, s.c, {created} AS created_day
        FROM {snap_days} s LEFT JOIN {accounts} x ON x.account_id = s.account_id
        """
    )
    wide_n = long.pivot_table(index=KEYS, columns="k", values="cum_n", aggfunc="first")
    wide_c = long.pivot_table(index=KEYS, columns="k", values="cum_core", aggfunc="first")
    out = keys.set_index(KEYS)
    start = np.inf if log_start_day is None else float(log_start_day)
    c = out["c"].to_numpy(float)
    observed = {k: c - (k + 1) * PERIOD_DAYS >= start for k in range(PERIODS)}
    observed[EARLY] = out["created_day"].to_numpy(float) >= start
    cols: dict[str, pd.Series] = {}
    for k in range(PERIODS):
        # boundary k is the later end of period k (days d < c - k * period_days)
        cols[events_col(k)] = wide_n[k] - wide_n[k + 1]
        cols[core_col(k)] = wide_c[k] - wide_c[k + 1]
    cols[events_col(EARLY)] = wide_n[-2] - wide_n[-1]
    cols[core_col(EARLY)] = wide_c[-2] - wide_c[-1]
    frame = pd.DataFrame(cols).reindex(out.index).fillna(0.0).astype(float)
    for k, ok in observed.items():
        for col in (events_col(k), core_col(k)):
            frame[col] = frame[col].where(ok)
    return frame.reset_index()


def build_user_history(engine: Engine, snaps: str, users: str, accounts: str) -> pd.DataFrame:
    """Enabled user-days per period (internal `_hist_user_days_*` columns) per snapshot row.

    A user is enabled from created_at until deactivated_at; a deactivation at or after t
    is unknown at t, so the user counts as enabled up to t.
    """
    d = engine.dialect
    t = "s.snapshot_date"
    known_gone = f"u.deactivated_at IS NOT NULL AND u.deactivated_at < {t}"
    gone = f"CASE WHEN {known_gone} THEN u.deactivated_at ELSE {t} END"

    def overlap(lo: str, hi: str) -> str:
        start = f"GREATEST({lo}, u.created_at)"
        end = f"LEAST({hi}, {gone})"
        return f"GREATEST(0.0, {d.hours_between(start, end)} / 24.0)"

    parts = [
        f"SUM({overlap(d.minus_days(t, (k + 1) * PERIOD_DAYS), d.minus_days(t, k * PERIOD_DAYS))}) "
        f"AS {user_days_col(k)}"
        for k in range(PERIODS)
    ]
    early_end = f"LEAST({t}, x.created_at + INTERVAL '{int(EARLY_DAYS)}' DAY)"
    parts.append(f"SUM({overlap('x.created_at', early_end)}) AS {user_days_col(EARLY)}")
    # length of the early window known at t (shorter for accounts younger than EARLY_DAYS)
    parts.append(f"MAX(GREATEST(0.0, {d.hours_between('x.created_at', early_end)} / 24.0)) AS {EARLY_LENGTH}")
    raw = engine.query(
        f"""
        SELECT s.account_id, s.snapshot_date, {", ".join(parts)}
        FROM {snaps} s
        JOIN {accounts} x ON x.account_id = s.account_id
        JOIN {users} u ON u.account_id = s.account_id AND u.created_at < {t}
        GROUP BY s.account_id, s.snapshot_date
        """
    )
    keys = engine.query(f"SELECT DISTINCT account_id, snapshot_date FROM {snaps}")
    out = keys.merge(raw, on=KEYS, how="left")
    cols = [c for c in raw.columns if c not in KEYS]
    out[cols] = out[cols].fillna(0.0).astype(float)
    return out


def _ewm(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponentially weighted mean over columns, oldest (last column) to newest (first); NaNs skipped."""
    out = np.full(len(values), np.nan)
    for k in range(values.shape[1] - 1, -1, -1):
        v = values[:, k]
        out = np.where(np.isnan(out), v, np.where(np.isnan(v), out, (1.0 - weight) * out + weight * v))
    return out


def _per_user(log_intensity: np.ndarray) -> np.ndarray:
    """Events per enabled user per 30 days from the log intensity (a geometric mean for means)."""
    return np.exp(log_intensity)


def _pct(log_ratio: np.ndarray) -> np.ndarray:
    """A log ratio as a % change (-45.0 = 45 % below)."""
    return (np.exp(log_ratio) - 1.0) * 100.0


def _slope(values: np.ndarray) -> np.ndarray:
    """Least-squares slope per period of the columns (newest first), NaN with fewer than 3 values."""
    x = np.arange(values.shape[1])[::-1].astype(float)  # newest period has the largest x
    ok = ~np.isnan(values)
    n = ok.sum(axis=1)
    safe_n = np.maximum(n, 1)
    mx = (x * ok).sum(axis=1) / safe_n
    my = np.where(ok, values, 0.0).sum(axis=1) / safe_n
    dx = np.where(ok, x - mx[:, None], 0.0)
    cov = (dx * np.where(ok, values - my[:, None], 0.0)).sum(axis=1)
    var = (dx * dx).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n >= 3) & (var > 0), cov / var, np.nan)


def _nanmean(values: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(values)
    n = ok.sum(axis=1)
    return np.where(n > 0, np.where(ok, values, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)


def finish_usage_history(frame: pd.DataFrame) -> pd.DataFrame:
    """History features from the internal `_hist_*` columns, which are dropped (never mutates).

    Intensity needs the user-days (users table): without them only the event and core-share
    features are produced. A period before the account's first enabled user (or before
    the data) has no intensity (NaN), so means, slopes and the weighted mean use the
    periods the account actually lived.
    """
    out = frame.copy()
    if events_col(0) not in out:
        return out
    n = len(out)
    events = np.column_stack([out[events_col(k)].to_numpy(float) for k in range(PERIODS)])
    core = np.column_stack([out[core_col(k)].to_numpy(float) for k in range(PERIODS)])
    new: dict[str, np.ndarray] = {}
    for k in range(2, min(6, PERIODS)):
        new[f"events_30d_lag{k}"] = events[:, k]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(events > 0, core / events, np.nan)
    new["core_event_share_30d"] = share[:, 0]
    for k in (1, 2):
        if k < PERIODS:
            new[f"core_event_share_30d_lag{k}"] = share[:, k]
    e3, c3 = events[:, :3].sum(axis=1), core[:, :3].sum(axis=1)
    new["core_event_share_90d"] = np.where(e3 > 0, c3 / np.where(e3 > 0, e3, 1.0), np.nan)
    new["core_event_share_ewm"] = _ewm(share, EWM_WEIGHT)
    new["core_event_share_rise_vs_ewm"] = share[:, 0] - _ewm(share[:, 1:], EWM_WEIGHT)
    new["core_event_share_slope_180d"] = _slope(share[:, :6])
    if user_days_col(0) in out:
        days = np.column_stack([out[user_days_col(k)].to_numpy(float) for k in range(PERIODS)])
        users = days / PERIOD_DAYS
        intensity = np.where(days > 0, np.log((events + 0.5) / (users + 0.5)), np.nan)
        # Computed on the log scale (ratios become differences); published in a CS manager's
        # units: events per enabled user per 30 days, % changes, relative change over a window.
        # Each is a monotone function of its log form, so the trees split the same way.
        new["usage_intensity_30d"] = _per_user(intensity[:, 0])
        for k in range(1, min(6, PERIODS)):
            new[f"usage_intensity_30d_lag{k}"] = _per_user(intensity[:, k])
        new["usage_intensity_ewm"] = _per_user(_ewm(intensity, EWM_WEIGHT))
        usual = _ewm(intensity[:, 1:], EWM_WEIGHT)
        new["usage_intensity_vs_usual_trend_30d_pct"] = _pct(intensity[:, 0] - usual)
        new["usage_intensity_mean_180d"] = _per_user(_nanmean(intensity[:, :6]))
        new["usage_intensity_mean_360d"] = _per_user(_nanmean(intensity))
        # slope per period x periods in the window: the relative change over the window
        new["usage_intensity_slope_90d_rel"] = np.exp(_slope(intensity[:, :3]) * 3) - 1.0
        new["usage_intensity_slope_180d_rel"] = np.exp(_slope(intensity[:, :6]) * 6) - 1.0
        # the early window as one period: events per PERIOD_DAYS and mean enabled users
        length = out[EARLY_LENGTH].to_numpy(float)
        early_days = out[user_days_col(EARLY)].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_period = out[events_col(EARLY)].to_numpy(float) * PERIOD_DAYS / length
            early_users = early_days / length
            early = np.where(
                (early_days > 0) & (length > 0), np.log((per_period + 0.5) / (early_users + 0.5)), np.nan
            )
        new["usage_intensity_at_start"] = _per_user(early)
        new["usage_intensity_vs_start_trend_30d_pct"] = _pct(intensity[:, 0] - early)
    internal = [c for c in out.columns if c.startswith("_hist_")]
    result = pd.concat([out.drop(columns=internal), pd.DataFrame(new, index=out.index)], axis=1)
    assert len(result) == n
    return result
