"""Usage events for one month, fully vectorised (no Python loop per event or per user)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from churnguard.simulator.config import (
    CORE_EVENTS,
    CORE_WEIGHTS,
    EVENT_NAMES,
    PERIPHERAL_WEIGHTS,
    US_PER_DAY,
    US_PER_HOUR,
    day_weights,
)
from churnguard.simulator.users import UserPool

_CORE_CUM = np.cumsum(CORE_WEIGHTS) / np.sum(CORE_WEIGHTS)
_PERI_CUM = np.cumsum(PERIPHERAL_WEIGHTS) / np.sum(PERIPHERAL_WEIGHTS)
_API = EVENT_NAMES.index("api_call")
_SYNC = EVENT_NAMES.index("integration_sync")
_EXPORT = EVENT_NAMES.index("export_csv")
EVENT_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("user_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("event", pa.string()),
        ("quantity", pa.float64()),
    ]
)


def month_events(
    rng: np.random.Generator,
    pool: UserPool,
    t0: int,
    t1: int,
    account_end: np.ndarray,
    engagement: np.ndarray,
    tz_hours: np.ndarray,
    events_per_user_day: float,
    account_ids: pa.Array,
) -> pa.Table:
    """Events in [t0, t1) for every user active then, sorted by time.

    account_end[a] is when account a stops using the product (its churn date, or a time
    >= t1 when it stays); accounts not yet started or already gone have account_end <= t0.
    """
    acc = pool.account
    lo = np.maximum(pool.created, t0)
    hi = np.minimum(np.minimum(pool.deactivated, t1), account_end[acc])
    users = np.flatnonzero(hi > lo)
    lo, hi, acc = lo[users], hi[users], acc[users]

    n_days = int((t1 - t0) // US_PER_DAY)
    grid = np.arange(n_days + 1, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(day_weights(t0 + np.arange(n_days) * US_PER_DAY))])
    c_lo = np.interp((lo - t0) / US_PER_DAY, grid, cum)
    c_hi = np.interp((hi - t0) / US_PER_DAY, grid, cum)
    rate = events_per_user_day * np.exp(engagement[acc]) * pool.activity[users]
    counts = rng.poisson(rate * (c_hi - c_lo))

    row_user = np.repeat(np.arange(len(users)), counts)
    n = len(row_user)
    u = rng.random((4, n))
    pos = np.interp(c_lo[row_user] + u[0] * (c_hi - c_lo)[row_user], cum, grid)
    local_hour = np.clip(rng.normal(13.0, 3.2, n), 0.0, 23.99)
    ts = t0 + np.floor(pos).astype(np.int64) * US_PER_DAY
    ts += ((local_hour - tz_hours[acc[row_user]]) * US_PER_HOUR).astype(np.int64)
    # times pushed outside the user's window by the time-zone shift are redrawn inside it
    lo_r, hi_r = lo[row_user], hi[row_user]
    outside = (ts < lo_r) | (ts >= hi_r)
    ts[outside] = lo_r[outside] + (u[3][outside] * (hi_r - lo_r)[outside]).astype(np.int64)

    breadth = pool.breadth[users] + 1.2 * engagement[acc]
    p_peri = 0.1 + 0.4 / (1.0 + np.exp(-breadth))
    peripheral = u[1] < p_peri[row_user]
    code = np.where(
        peripheral,
        len(CORE_EVENTS) + np.searchsorted(_PERI_CUM, u[2], side="right").clip(max=len(_PERI_CUM) - 1),
        np.searchsorted(_CORE_CUM, u[2], side="right").clip(max=len(_CORE_CUM) - 1),
    )
    quantity = np.ones(n)
    quantity = np.where(code == _API, 1.0 + rng.poisson(12.0, n), quantity)
    quantity = np.where(code == _SYNC, 1.0 + rng.poisson(40.0, n), quantity)
    quantity = np.where(code == _EXPORT, 1.0 + np.floor(rng.random(n) * 5), quantity)

    user_idx = users[row_user]
    ts, order = _unique_sorted(ts)
    user_ids = pa.array(pool.ids, type=pa.string())
    return pa.table(
        {
            "account_id": account_ids.take(pa.array(acc[row_user][order])),
            "user_id": user_ids.take(pa.array(user_idx[order])),
            "timestamp": pa.array(ts[order], type=pa.timestamp("us", tz="UTC")),
            "event": pa.array(EVENT_NAMES, type=pa.string()).take(pa.array(code[order])),
            "quantity": pa.array(quantity[order], type=pa.float64()),
        },
        schema=EVENT_SCHEMA,
    )


def month_reach(
    pool: UserPool, t0: int, t1: int, account_end: np.ndarray, events_per_user_day: float
) -> np.ndarray:
    """Expected events per account in [t0, t1) at engagement 0 (its team's size and days)."""
    acc = pool.account
    lo = np.maximum(pool.created, t0)
    hi = np.minimum(np.minimum(pool.deactivated, t1), account_end[acc])
    users = np.flatnonzero(hi > lo)
    n_days = int((t1 - t0) // US_PER_DAY)
    grid = np.arange(n_days + 1, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(day_weights(t0 + np.arange(n_days) * US_PER_DAY))])
    span = np.interp((hi[users] - t0) / US_PER_DAY, grid, cum) - np.interp(
        (lo[users] - t0) / US_PER_DAY, grid, cum
    )
    weight = events_per_user_day * pool.activity[users] * span
    return np.bincount(acc[users], weights=weight, minlength=len(account_end))


def _unique_sorted(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make every timestamp in the month unique (a rare 1 µs nudge) and return the time order."""
    ts = ts.copy()
    for _ in range(20):
        order = np.argsort(ts, kind="stable")
        tied = np.flatnonzero(np.diff(ts[order]) == 0)
        if len(tied) == 0:
            break
        ts[order[tied + 1]] -= 1
    return ts, order
