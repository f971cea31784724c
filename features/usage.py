"""Usage features: activity, intensity, trend, breadth, recency, streaks, core-event adoption.

A snapshot at t sees the days before t only (`day < t`); the longest window is 90 days.
The events are read in three streaming aggregations, each much smaller than the log:

- per (account, day): event counts, for every count, active-day, trend, streak and
  recency feature (sums over day ranges);
- per (account, user, bucket) and per (account, event, bucket), where a *bucket* is a
  run of days between two consecutive window boundaries of the snapshot dates at hand
  (t, t-7, t-30, t-60 and t-90 for every t; event types only need t, t-30 and t-90).
  Every window is a union of whole buckets, so "was this user / event type active in
  the window" is exact at bucket grain, and the distinct-user and distinct-event counts
  need far fewer rows than per-day aggregates (about 6x fewer on the benchmark log).

Each aggregate is then range-joined to the snapshot dates once (one join per aggregate
covering all windows via CASE). Days are integer day numbers (`Dialect.day_number`).
Measured and rejected on DuckDB (bench/bench_features.py): counting each user on its
first bucket in the window via LAG (the window sort costs more than the group-by it
saves) and equi-joins on (account, bucket) through per-snapshot bucket lists.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.engine import Engine, sql_string

WINDOW_DAYS = 90  # longest usage window; trend/slope/streaks also fit in it
STREAK_WEEKS = 12
# Window starts relative to the snapshot's day a, besides c and c - 90 which bound every
# window: users need ago <= 7, <= 30 and 31..60; event types only ago <= 30.
USER_OFFSETS = (7, 30, 60)
EVENT_OFFSETS = (30,)
KEYS = ["account_id", "snapshot_date"]


def prepare_event_aggregates(engine: Engine, events: str) -> None:
    """Expose the event table expression to the usage and onboarding queries.

    Creates the view `usage_events` and, at event grain with a `day` column, the views
    `daily_user` (account_id, user_id, day, n_events) and `daily_event` (account_id, event,
    day, n_events) that `infer_core_events`, `count_event_types` and the onboarding
    features aggregate over (MIN/COUNT DISTINCT/SUM give the same as on per-day rows).
    Nothing is read until a feature query runs; the windowed aggregates are built by
    `build_usage_features`, which knows the snapshot dates.
    """
    day = engine.dialect.day("timestamp")
    engine.create_view("usage_events", f"SELECT account_id, user_id, event, timestamp FROM {events}")
    engine.create_view(
        "daily_user", f"SELECT account_id, user_id, {day} AS day, 1 AS n_events FROM usage_events"
    )
    engine.create_view(
        "daily_event", f"SELECT account_id, event, {day} AS day, 1 AS n_events FROM usage_events"
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


def event_type_stats(
    engine: Engine, before: pd.Timestamp | None, source: str = "daily_event"
) -> pd.DataFrame:
    """Per event type seen before `before` (all when None): accounts using it and events,
    ranked by accounts, then events, then name (one pass over `source`)."""
    where = f"WHERE day < TIMESTAMP {sql_string(str(pd.Timestamp(before)))}" if before is not None else ""
    return engine.query(
        f"""
        SELECT event, COUNT(DISTINCT account_id) AS n_accounts, SUM(n_events) AS n_events
        FROM {source} {where}
        GROUP BY event
        ORDER BY n_accounts DESC, n_events DESC, event
        """
    )


def count_event_types(engine: Engine, before: pd.Timestamp | None, source: str = "daily_event") -> int:
    """Number of distinct event types seen before `before` (all when None)."""
    return int(event_type_stats(engine, before, source)["event"].notna().sum())


def infer_core_events(
    engine: Engine, before: pd.Timestamp | None, top_n: int, source: str = "daily_event"
) -> list[str]:
    """The `top_n` events used by the most accounts (ties: most events, then name), before `before`."""
    return core_events_from_stats(event_type_stats(engine, before, source), top_n)


def core_events_from_stats(stats: pd.DataFrame, top_n: int) -> list[str]:
    """The first `top_n` events of `event_type_stats`."""
    return [str(e) for e in stats["event"].head(top_n)]


def snapshot_days(engine: Engine, snaps: str) -> str:
    """Distinct snapshot keys with `a` = day number of t and `c` = first day number not before t.

    For midnight snapshot dates a = c. A day d is before t exactly when d < c, and its
    age in days is a - d (as `days_between(day, t)`).
    """
    d = engine.dialect
    a = d.day_number("snapshot_date")
    c = f"CASE WHEN snapshot_date > {d.day('snapshot_date')} THEN {a} + 1 ELSE {a} END"
    return f"(SELECT DISTINCT account_id, snapshot_date, {a} AS a, {c} AS c FROM {snaps})"


def _register_buckets(engine: Engine, snap_days: str) -> tuple[int, int] | None:
    """Register `usage_user_bucket` and `usage_event_bucket` (day, bucket): each day of the
    boundaries' span mapped to the latest window boundary on or before it (event types need
    fewer boundaries, so their buckets are coarser). Returns the span [first, last), the
    same for both, or None without snapshots."""
    bounds = engine.query(f"SELECT DISTINCT a, c FROM {snap_days} s")
    if bounds.empty:
        return None
    a = bounds["a"].to_numpy(dtype=np.int64)
    c = bounds["c"].to_numpy(dtype=np.int64)
    span = (int((c - WINDOW_DAYS).min()), int(c.max()))  # every a - k >= c - 61 is inside
    days = np.arange(*span, dtype=np.int64)
    for name, offsets in (("usage_user_bucket", USER_OFFSETS), ("usage_event_bucket", EVENT_OFFSETS)):
        edges = np.unique(np.concatenate([c, c - WINDOW_DAYS, *(a - k for k in offsets)]))
        bucket = edges[np.searchsorted(edges, days, side="right") - 1]
        engine.register(name, pd.DataFrame({"day": days, "bucket": bucket}))
    return span


def _prepare_windowed(engine: Engine, snap_days: str, core_events: list[str]) -> None:
    """Materialise `usage_account_days` (events and core-type events per account and day),
    `usage_user_buckets`, `usage_event_buckets` and `usage_last_days` (the latest active day
    per account and bucket, plus the latest before the first bucket: all that "last active
    day before t" needs)."""
    d = engine.dialect
    day = d.day_number("timestamp")
    core = ", ".join(sql_string(e) for e in core_events) or "NULL"
    engine.create_table(
        "usage_account_days",
        f"""
        SELECT account_id, {day} AS d, COUNT(*) AS n,
               SUM(CASE WHEN event IN ({core}) THEN 1 ELSE 0 END) AS n_core
        FROM usage_events GROUP BY 1, 2
        """,
    )
    span = _register_buckets(engine, snap_days)
    if span is None:
        engine.create_table("usage_last_days", "SELECT account_id, d FROM usage_account_days WHERE 1 = 0")
    else:
        engine.create_table(
            "usage_last_days",
            f"""
            SELECT x.account_id, MAX(x.d) AS d
            FROM usage_account_days x LEFT JOIN usage_user_bucket b ON b.day = x.d
            WHERE x.d < {span[1]}
            GROUP BY x.account_id, COALESCE(b.bucket, {span[0] - 1})
            """,
        )
    for table, key, lookup in (
        ("usage_user_buckets", "user_id", "usage_user_bucket"),
        ("usage_event_buckets", "event", "usage_event_bucket"),
    ):
        if span is None:
            engine.create_table(table, f"SELECT account_id, {key}, 0 AS bucket FROM usage_events WHERE 1 = 0")
            continue
        lo, hi = (d.day_start(n) for n in span)  # pushes the span into the scan
        engine.create_table(
            table,
            f"""
            SELECT e.account_id, e.{key}, b.bucket
            FROM usage_events e JOIN {lookup} b ON b.day = {d.day_number("e.timestamp")}
            WHERE e.timestamp >= {lo} AND e.timestamp < {hi}
            GROUP BY 1, 2, 3
            """,
        )


def _window_join(snap_days: str, table: str, col: str, extra: str = "") -> str:
    return f"""
        SELECT s.account_id, s.snapshot_date, s.a, x.{col} AS d{extra}
        FROM {snap_days} s
        JOIN {table} x
          ON x.account_id = s.account_id
         AND x.{col} >= s.c - {WINDOW_DAYS}
         AND x.{col} < s.c
    """


def _user_window_features(snap_days: str) -> str:
    joined = _window_join(snap_days, "usage_user_buckets", "bucket", ", x.user_id")
    return f"""
        WITH per_user AS (
            SELECT account_id, snapshot_date, user_id,
                   MAX(CASE WHEN d >= a - 7 THEN 1 ELSE 0 END) AS in_7d,
                   MAX(CASE WHEN d >= a - 30 THEN 1 ELSE 0 END) AS in_30d,
                   MAX(CASE WHEN d >= a - 60 AND d < a - 30 THEN 1 ELSE 0 END) AS in_prev_30d
            FROM ({joined}) j
            GROUP BY account_id, snapshot_date, user_id
        )
        SELECT account_id, snapshot_date,
               SUM(in_7d) AS active_users_7d,
               SUM(in_30d) AS active_users_30d,
               SUM(in_prev_30d) AS active_users_prev_30d,
               COUNT(*) AS active_users_90d
        FROM per_user
        GROUP BY account_id, snapshot_date
    """


def _day_window_features(snap_days: str) -> str:
    joined = _window_join(snap_days, "usage_account_days", "d", ", x.n, s.a - x.d AS ago")
    weeks = ",\n".join(
        f"MAX(CASE WHEN ago BETWEEN {7 * k + 1} AND {7 * k + 7} THEN 1 ELSE 0 END) AS week_{k}"
        for k in range(STREAK_WEEKS)
    )
    return f"""
        SELECT account_id, snapshot_date,
               SUM(CASE WHEN ago <= 7 THEN n ELSE 0 END) AS events_7d,
               SUM(CASE WHEN ago <= 30 THEN n ELSE 0 END) AS events_30d,
               SUM(CASE WHEN ago BETWEEN 31 AND 60 THEN n ELSE 0 END) AS events_prev_30d,
               SUM(n) AS events_90d,
               SUM(CASE WHEN ago <= 7 THEN 1 ELSE 0 END) AS active_days_7d,
               SUM(CASE WHEN ago <= 30 THEN 1 ELSE 0 END) AS active_days_30d,
               COUNT(*) AS active_days_90d,
               SUM(n * ({WINDOW_DAYS} - ago)) AS sum_xy_90d,
               {weeks}
        FROM ({joined}) j
        GROUP BY account_id, snapshot_date
    """


def _event_window_features(snap_days: str, core_events: list[str]) -> str:
    joined = _window_join(snap_days, "usage_event_buckets", "bucket", ", x.event")
    core = ", ".join(sql_string(e) for e in core_events) or "NULL"
    return f"""
        WITH per_event AS (
            SELECT account_id, snapshot_date, event,
                   MAX(CASE WHEN d >= a - 30 THEN 1 ELSE 0 END) AS in_30d
            FROM ({joined}) j
            GROUP BY account_id, snapshot_date, event
        )
        SELECT account_id, snapshot_date,
               SUM(in_30d) AS distinct_events_30d,
               COUNT(*) AS distinct_events_90d,
               SUM(CASE WHEN in_30d = 1 AND event IN ({core}) THEN 1 ELSE 0 END) AS core_events_used_30d,
               SUM(CASE WHEN event IN ({core}) THEN 1 ELSE 0 END) AS core_events_used_90d
        FROM per_event
        GROUP BY account_id, snapshot_date
    """


def _last_activity(snap_days: str) -> str:
    """Days since the last active day before t, with a running max (no unbounded range join)."""
    return f"""
        WITH timeline AS (
            SELECT account_id, c AS at_day, 0 AS is_activity, snapshot_date, a FROM {snap_days} s
            UNION ALL
            SELECT account_id, d AS at_day, 1 AS is_activity, NULL AS snapshot_date, NULL AS a
            FROM usage_last_days
        ),
        running AS (
            SELECT account_id, snapshot_date, a, is_activity,
                   MAX(CASE WHEN is_activity = 1 THEN at_day END) OVER (
                       PARTITION BY account_id ORDER BY at_day, is_activity
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                   ) AS last_day
            FROM timeline
        )
        SELECT account_id, snapshot_date, a - last_day AS days_since_last_activity
        FROM running
        WHERE is_activity = 0
    """


USER_COLUMNS = ["active_users_7d", "active_users_30d", "active_users_prev_30d", "active_users_90d"]
EVENT_COUNT_COLUMNS = ["events_7d", "events_30d", "events_prev_30d", "events_90d"]


def _safe_ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    den = den.astype(float)
    return num.astype(float) / den.where(den > 0)


def usage_window_counts(engine: Engine, snaps: str, core_events: list[str]) -> pd.DataFrame:
    """The windowed counts per (account_id, snapshot_date) of `snaps` (0 when no events) and
    `days_since_last_activity`; `build_usage_features` derives the final features from them."""
    snap_days = snapshot_days(engine, snaps)
    _prepare_windowed(engine, snap_days, core_events)
    keys = engine.query(f"SELECT DISTINCT account_id, snapshot_date FROM {snaps}")
    users = engine.query(_user_window_features(snap_days))
    days = engine.query(_day_window_features(snap_days))
    # Same column order as the per-day formulation this replaced (tests/test_features_usage_equiv.py).
    day_cols = [c for c in days.columns if c not in EVENT_COUNT_COLUMNS]
    users = users.merge(days[[*KEYS, *EVENT_COUNT_COLUMNS]], on=KEYS, how="outer")
    days = days[day_cols]
    events = engine.query(_event_window_features(snap_days, core_events))
    last = engine.query(_last_activity(snap_days))
    out = keys
    for part in (users, days, events):
        out = out.merge(part, on=KEYS, how="left")
    count_cols = [c for c in out.columns if c not in KEYS]
    out[count_cols] = out[count_cols].fillna(0).astype(float)
    out = out.merge(last, on=KEYS, how="left")
    out["days_since_last_activity"] = out["days_since_last_activity"].astype(float)
    return out


def build_usage_features(engine: Engine, snaps: str, core_events: list[str]) -> pd.DataFrame:
    """Usage features per (account_id, snapshot_date) of the registered `snaps` table.

    Needs `prepare_event_aggregates` first. Counts are 0 (a true value: no events were
    logged) for accounts without activity in a window; ratios are NaN when undefined.
    """
    return finish_usage_features(usage_window_counts(engine, snaps, core_events), core_events)


def finish_usage_features(counts: pd.DataFrame, core_events: list[str]) -> pd.DataFrame:
    """Ratios, slope, streaks and adoption shares from `usage_window_counts` (never mutates)."""
    out = counts.copy()
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
