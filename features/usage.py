"""Usage features: activity, intensity, trend, breadth, recency, streaks, core-event adoption.

The event log is aggregated once to per-(account, user, day) and per-(account, event,
day) counts (one streaming pass each over the Parquet parts), then each aggregate is
range-joined to the snapshot dates once, covering every window (7/30/60/90 days) with
CASE expressions. A snapshot at t sees the days before t only: `day < t`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.engine import Engine, sql_string

WINDOW_DAYS = 90  # longest usage window; trend/slope/streaks also fit in it
STREAK_WEEKS = 12


def prepare_event_aggregates(engine: Engine, events: str) -> None:
    """Create `daily_user`, `daily_account` and `daily_event` from the event table expression."""
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
        "SELECT account_id, day, SUM(n_events) AS n_events, COUNT(*) AS n_users "
        "FROM daily_user GROUP BY 1, 2",
    )


def raw_event_source(events: str) -> str:
    """The raw events shaped like `daily_event` (one row per event) for the inference queries."""
    return f"(SELECT account_id, event, timestamp AS day, 1 AS n_events FROM {events}) AS ev"


def plan_event_batches(
    engine: Engine, files: list[str], max_rows: int
) -> list[tuple[list[str], set[str]]] | None:
    """Group event files into batches that each hold *all* events of their accounts.

    Returns (files, account ids) per batch, about `max_rows` events each, or None when some
    account's events are spread over several files (then aggregate globally). The validate
    stage writes one part per hash bucket of account_id, so its output always qualifies.
    """
    if len(files) < 2:
        return None
    source = engine.dialect.parquet_files(files, with_filename=True)
    counts = engine.query(f"SELECT filename, account_id, COUNT(*) AS n FROM {source} GROUP BY 1, 2")
    if counts["account_id"].duplicated().any():
        return None
    per_file = counts.groupby("filename")["n"].sum()
    batches: list[tuple[list[str], set[str]]] = []
    current: list[str] = []
    rows = 0
    for f in files:
        n = int(per_file.get(f, 0))
        if current and rows + n > max_rows:
            batches.append((current, set()))
            current, rows = [], 0
        current.append(f)
        rows += n
    if current:
        batches.append((current, set()))
    by_file = counts.groupby("filename")["account_id"].agg(set)
    return [(fs, set().union(*(by_file.get(f, set()) for f in fs))) for fs, _ in batches]


def count_event_types(engine: Engine, before: pd.Timestamp | None, source: str = "daily_event") -> int:
    """Number of distinct event types seen before `before` (all when None)."""
    where = f"WHERE day < TIMESTAMP {sql_string(str(pd.Timestamp(before)))}" if before is not None else ""
    value = engine.scalar(f"SELECT COUNT(DISTINCT event) FROM {source} {where}")
    return int(value) if isinstance(value, int | float) else 0


def infer_core_events(
    engine: Engine, before: pd.Timestamp | None, top_n: int, source: str = "daily_event"
) -> list[str]:
    """The `top_n` events used by the most accounts (ties: most events, then name), before `before`."""
    where = f"WHERE day < TIMESTAMP {sql_string(str(pd.Timestamp(before)))}" if before is not None else ""
    ranked = engine.query(
        f"""
        SELECT event, COUNT(DISTINCT account_id) AS n_accounts, SUM(n_events) AS n_events
        FROM {source} {where}
        GROUP BY event
        ORDER BY n_accounts DESC, n_events DESC, event
        """
    )
    return [str(e) for e in ranked["event"].head(top_n)]


def _window_join(engine: Engine, table: str, snaps: str, extra: str = "") -> str:
    d = engine.dialect
    ago = d.days_between("x.day", "s.snapshot_date")
    return f"""
        SELECT s.account_id, s.snapshot_date, {ago} AS ago, x.n_events{extra}
        FROM {snaps} s
        JOIN {table} x
          ON x.account_id = s.account_id
         AND x.day >= {d.minus_days("s.snapshot_date", WINDOW_DAYS)}
         AND x.day < s.snapshot_date
    """


def _user_window_features(engine: Engine, snaps: str) -> pd.DataFrame:
    joined = _window_join(engine, "daily_user", snaps, ", x.user_id")
    return engine.query(
        f"""
        WITH per_user AS (
            SELECT account_id, snapshot_date, user_id,
                   MIN(ago) AS min_ago,
                   MAX(CASE WHEN ago BETWEEN 31 AND 60 THEN 1 ELSE 0 END) AS in_prev_30d,
                   SUM(CASE WHEN ago <= 7 THEN n_events ELSE 0 END) AS e7,
                   SUM(CASE WHEN ago <= 30 THEN n_events ELSE 0 END) AS e30,
                   SUM(CASE WHEN ago BETWEEN 31 AND 60 THEN n_events ELSE 0 END) AS eprev30,
                   SUM(n_events) AS e90
            FROM ({joined}) j
            GROUP BY account_id, snapshot_date, user_id
        )
        SELECT account_id, snapshot_date,
               SUM(CASE WHEN min_ago <= 7 THEN 1 ELSE 0 END) AS active_users_7d,
               SUM(CASE WHEN min_ago <= 30 THEN 1 ELSE 0 END) AS active_users_30d,
               SUM(in_prev_30d) AS active_users_prev_30d,
               COUNT(*) AS active_users_90d,
               SUM(e7) AS events_7d, SUM(e30) AS events_30d,
               SUM(eprev30) AS events_prev_30d, SUM(e90) AS events_90d
        FROM per_user
        GROUP BY account_id, snapshot_date
        """
    )


def _day_window_features(engine: Engine, snaps: str) -> pd.DataFrame:
    joined = _window_join(engine, "daily_account", snaps)
    weeks = ",\n".join(
        f"MAX(CASE WHEN ago BETWEEN {7 * k + 1} AND {7 * k + 7} THEN 1 ELSE 0 END) AS week_{k}"
        for k in range(STREAK_WEEKS)
    )
    return engine.query(
        f"""
        SELECT account_id, snapshot_date,
               SUM(CASE WHEN ago <= 7 THEN 1 ELSE 0 END) AS active_days_7d,
               SUM(CASE WHEN ago <= 30 THEN 1 ELSE 0 END) AS active_days_30d,
               COUNT(*) AS active_days_90d,
               SUM(n_events * ({WINDOW_DAYS} - ago)) AS sum_xy_90d,
               {weeks}
        FROM ({joined}) j
        GROUP BY account_id, snapshot_date
        """
    )


def _event_window_features(engine: Engine, snaps: str, core_events: list[str]) -> pd.DataFrame:
    joined = _window_join(engine, "daily_event", snaps, ", x.event")
    core = ", ".join(sql_string(e) for e in core_events) or "NULL"
    return engine.query(
        f"""
        WITH per_event AS (
            SELECT account_id, snapshot_date, event, MIN(ago) AS min_ago
            FROM ({joined}) j
            GROUP BY account_id, snapshot_date, event
        )
        SELECT account_id, snapshot_date,
               SUM(CASE WHEN min_ago <= 30 THEN 1 ELSE 0 END) AS distinct_events_30d,
               COUNT(*) AS distinct_events_90d,
               SUM(CASE WHEN min_ago <= 30 AND event IN ({core}) THEN 1 ELSE 0 END) AS core_events_used_30d,
               SUM(CASE WHEN event IN ({core}) THEN 1 ELSE 0 END) AS core_events_used_90d
        FROM per_event
        GROUP BY account_id, snapshot_date
        """
    )


def _last_activity(engine: Engine, snaps: str) -> pd.DataFrame:
    """Days since the last active day before t, with a running max (no unbounded range join)."""
    d = engine.dialect
    return engine.query(
        f"""
        WITH timeline AS (
            SELECT account_id, snapshot_date AS at_ts, 0 AS is_activity FROM {snaps}
            UNION ALL
            SELECT account_id, day AS at_ts, 1 AS is_activity FROM daily_account
        ),
        running AS (
            SELECT account_id, at_ts, is_activity,
                   MAX(CASE WHEN is_activity = 1 THEN at_ts END) OVER (
                       PARTITION BY account_id ORDER BY at_ts, is_activity
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                   ) AS last_day
            FROM timeline
        )
        SELECT account_id, at_ts AS snapshot_date,
               {d.days_between("last_day", "at_ts")} AS days_since_last_activity
        FROM running
        WHERE is_activity = 0
        """
    )


def _safe_ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    den = den.astype(float)
    return num.astype(float) / den.where(den > 0)


def build_usage_features(engine: Engine, snaps: str, core_events: list[str]) -> pd.DataFrame:
    """Usage features per (account_id, snapshot_date) of the registered `snaps` table.

    Needs `prepare_event_aggregates` first. Counts are 0 (a true value: no events were
    logged) for accounts without activity in a window; ratios are NaN when undefined.
    """
    keys = engine.query(f"SELECT DISTINCT account_id, snapshot_date FROM {snaps}")
    users = _user_window_features(engine, snaps)
    days = _day_window_features(engine, snaps)
    events = _event_window_features(engine, snaps, core_events)
    last = _last_activity(engine, snaps)
    out = keys
    for part in (users, days, events):
        out = out.merge(part, on=["account_id", "snapshot_date"], how="left")
    count_cols = [c for c in out.columns if c not in ("account_id", "snapshot_date")]
    out[count_cols] = out[count_cols].fillna(0).astype(float)
    out = out.merge(last, on=["account_id", "snapshot_date"], how="left")
    out["days_since_last_activity"] = out["days_since_last_activity"].astype(float)

    for w in ("7d", "30d", "90d"):
        out[f"events_per_active_user_{w}"] = _safe_ratio(out[f"events_{w}"], out[f"active_users_{w}"])
    out["events_30d_vs_prev_30d_ratio"] = _safe_ratio(out["events_30d"], out["events_prev_30d"])
    out["active_users_30d_vs_prev_30d_ratio"] = _safe_ratio(
        out["active_users_30d"], out["active_users_prev_30d"]
    )
    # Least-squares slope of daily events over the 90 days (x = 0..89, zero-event days included).
    n = float(WINDOW_DAYS)
    mean_x = (n - 1) / 2
    sxx = n * (n * n - 1) / 12
    out["events_slope_90d_per_day"] = (out["sum_xy_90d"] - mean_x * out["events_90d"]) / sxx
    mean_y = out["events_90d"] / n
    out["events_slope_90d_rel"] = _safe_ratio(out["events_slope_90d_per_day"] * n, mean_y)
    week_cols = [f"week_{k}" for k in range(STREAK_WEEKS)]
    weeks = out[week_cols].to_numpy(dtype=bool)
    # Consecutive active weeks ending at t: position of the first inactive week.
    streak = np.where(weeks.all(axis=1), STREAK_WEEKS, np.argmin(weeks, axis=1))
    out["active_weeks_streak"] = streak.astype(float)
    out["active_weeks_12w"] = weeks.sum(axis=1).astype(float)
    if core_events:
        out["core_event_adoption_30d_share"] = out["core_events_used_30d"] / len(core_events)
        out["core_event_adoption_90d_share"] = out["core_events_used_90d"] / len(core_events)
    else:
        out["core_event_adoption_30d_share"] = np.nan
        out["core_event_adoption_90d_share"] = np.nan
    return out.drop(columns=[*week_cols, "sum_xy_90d"])
