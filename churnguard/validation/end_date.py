"""The data's end date: declared in params.yaml, or inferred from the event log.

Inference (documented in docs/data_contract.md): among event timestamps that parse and
are not after the wall clock (+1 day), take the `quantile` (default 99.99th percentile,
approximate and streaming); events more than `slack_days` after the end of that
percentile's day are treated as absurd; the data end is the latest event timestamp
that remains. A handful of events stamped years ahead (clock bugs, typos) therefore
never moves the end, while the true last days of the log, which hold far more than
0.01 % of events, always stay inside. Timestamps on or after the start of the day
following the data end are `future_timestamp` in every table (except columns marked
`future_ok`, such as the end of a paid term).
"""

from __future__ import annotations

import duckdb
import pandas as pd

from churnguard.errors import InputError
from churnguard.validation.rules import quote


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
    return f"CAST(try_cast(trim(CAST({ref} AS VARCHAR)) AS TIMESTAMPTZ) AS TIMESTAMP)"


def infer_data_end(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    ts_column: str,
    ts_type: str,
    now: pd.Timestamp,
    quantile: float = 0.9999,
    slack_days: int = 2,
) -> pd.Timestamp | None:
    """Infer the data end from the event timestamps in `relation` (None when none parse)."""
    ts = timestamp_sql(ts_column, ts_type)
    ceiling = (now.tz_convert("UTC").tz_localize(None) if now.tzinfo else now) + pd.Timedelta(days=1)
    valid = f"(SELECT {ts} AS ts FROM {relation}) WHERE ts IS NOT NULL AND ts < TIMESTAMP '{ceiling}'"
    row = con.execute(f"SELECT approx_quantile(epoch_us(ts), {quantile}) FROM {valid}").fetchall()[0]
    if row is None or row[0] is None:
        return None
    q = pd.Timestamp(int(row[0]), unit="us").normalize()
    limit = q + pd.Timedelta(days=1 + slack_days)
    end = con.execute(f"SELECT max(ts) FROM {valid} AND ts < TIMESTAMP '{limit}'").fetchall()[0]
    if end is None or end[0] is None:
        return None
    return pd.Timestamp(end[0]).as_unit("us")
