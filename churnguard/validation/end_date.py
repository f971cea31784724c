"""The data's end date: declared in params.yaml, or inferred from the event log.

Inference (documented in docs/data_contract.md): count the event timestamps that parse
and are not later than the wall clock + `max_ahead_days` (1 day by default, None = no
cap; a warning counts the events beyond it) per UTC day. Walking back from the latest
day, drop days that are sparse (< 2 % of the median day's events) or detached (more
than 7 days after the previous day with events), but never more than 1 % of all
events. The data end is the latest event timestamp on the remaining last day. Events
stamped days or years ahead by clock bugs or typos are few per day or far away, so they
never move the end; the real last days of the log are dense and contiguous, so they
stay. Timestamps on or after the start of the day following the data end are
`future_timestamp` in every table (except columns marked `future_ok`, such as the
end of a paid term).
"""

from __future__ import annotations

import logging

import duckdb
import pandas as pd

from churnguard.errors import InputError
from churnguard.validation.rules import quote

log = logging.getLogger(__name__)


def parse_end_date(value: str) -> pd.Timestamp:
    """A declared end date: a date means the end of that day (UTC); zones convert to UTC."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InputError(f"validate.end_date: cannot parse {value!r} as a date") from exc
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    if len(value.strip()) <= 10:  # a bare date: the whole day is in the data
        ts = ts.normalize() + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    return ts.as_unit("us")


def future_cutoff(data_end: pd.Timestamp) -> pd.Timestamp:
    """Exclusive cut-off: the start of the day after the data end."""
    return data_end.normalize() + pd.Timedelta(days=1)


def timestamp_sql(column: str, sql_type: str) -> str:
    """The same timestamp parse the rules use (UTC wall time, NULL when unparseable)."""
    ref = quote(column)
    upper = sql_type.upper()
    if upper.startswith("TIMESTAMP") or upper == "DATE":
        return f"CAST({ref} AS TIMESTAMP)"
    text = f"trim(CAST({ref} AS VARCHAR))"
    return (
        f"CASE WHEN {text}[-1] = 'Z' THEN try_cast({text} AS TIMESTAMP) "
        f"ELSE CAST(try_cast({text} AS TIMESTAMPTZ) AS TIMESTAMP) END"
    )


def infer_end_day(
    daily: pd.Series, density: float = 0.02, gap_days: int = 7, max_tail: float = 0.01
) -> pd.Timestamp:
    """The last day of the data from event counts per day (index: day, values: counts).

    Walking back from the latest day, a day is dropped while it is sparse (fewer events
    than `density` x the median day) or detached (more than `gap_days` after the day
    before it), as long as the dropped days hold less than `max_tail` of all events.
    """
    days = daily[daily > 0].sort_index()
    if days.empty:
        raise ValueError("no events to infer the data end from")
    index = list(days.index)
    counts = days.to_numpy(dtype=float)
    total, median = counts.sum(), float(pd.Series(counts).median())
    i, dropped = len(index) - 1, 0.0
    while i > 0:
        sparse = counts[i] < density * median
        detached = (index[i] - index[i - 1]) > pd.Timedelta(days=gap_days)
        if not (sparse or detached) or (dropped + counts[i]) / total >= max_tail:
            break
        dropped += counts[i]
        i -= 1
    return pd.Timestamp(index[i])


def infer_data_end(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    ts_column: str,
    ts_type: str,
    now: pd.Timestamp,
    density: float = 0.02,
    gap_days: int = 7,
    max_tail: float = 0.01,
    max_ahead_days: float | None = 1.0,
) -> pd.Timestamp | None:
    """Infer the data end from the event timestamps in `relation` (None when none parse).

    Timestamps later than `now` + `max_ahead_days` (None: no cap) cannot be the end of a
    real export; they are left out of the inference and counted in a warning (they are
    not dropped: validation quarantines those on or after the cut-off as future_timestamp).
    """
    ts = timestamp_sql(ts_column, ts_type)
    utc_now = now.tz_convert("UTC").tz_localize(None) if now.tzinfo else now
    ceiling = None if max_ahead_days is None else utc_now + pd.Timedelta(days=max_ahead_days)
    bound = "NULL" if ceiling is None else f"TIMESTAMP '{ceiling.isoformat(sep=' ')}'"
    # One scan, no WHERE: a filter on the parsed value would make DuckDB parse it again.
    rows = con.execute(
        f"SELECT CAST(date_trunc('day', ts) AS TIMESTAMP) AS d, count(*), max(ts), count_if(ts >= {bound}) "
        f"FROM (SELECT {ts} AS ts FROM {relation}) GROUP BY d"
    ).fetchall()
    all_days = {pd.Timestamp(d): (n, pd.Timestamp(last)) for d, n, last, _ in rows if d is not None}
    days = all_days
    if ceiling is not None:
        days = {d: v for d, v in all_days.items() if v[1] < ceiling}
        beyond = sum(int(b) for d, _, _, b in rows if d is not None)
        if beyond:
            _warn_beyond_clock(all_days, days, beyond, ceiling, density, gap_days, max_tail)
    if not days:
        return None
    daily = pd.Series({d: n for d, (n, _) in days.items()})
    end_day = infer_end_day(daily, density=density, gap_days=gap_days, max_tail=max_tail)
    return days[end_day][1].as_unit("us")


def _warn_beyond_clock(
    all_days: dict[pd.Timestamp, tuple[int, pd.Timestamp]],
    days: dict[pd.Timestamp, tuple[int, pd.Timestamp]],
    beyond: int,
    ceiling: pd.Timestamp,
    density: float,
    gap_days: int,
    max_tail: float,
) -> None:
    total = sum(n for n, _ in all_days.values())
    latest = max(last for _, last in all_days.values())
    uncapped = infer_end_day(
        pd.Series({d: n for d, (n, _) in all_days.items()}),
        density=density,
        gap_days=gap_days,
        max_tail=max_tail,
    )
    moved = not days or uncapped > max(days)
    log.warning(
        "data end: %d event timestamp(s) (%.3f %% of %d, latest %s) are later than this machine's "
        "clock + validate.end_max_ahead_days (%s), so they do not count toward the inferred data "
        "end; those on or after the cut-off are quarantined as future_timestamp.%s If the export "
        "is legitimately ahead of this clock (time zones, clock skew, fixtures), set "
        "validate.end_date, or raise validate.end_max_ahead_days (null = no cap).",
        beyond, 100 * beyond / total, total, latest, ceiling,
        f" Without the cap the data would end on {uncapped.date()}." if moved else "",
    )  # fmt: skip
