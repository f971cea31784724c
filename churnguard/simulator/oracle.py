"""The oracle: P(churn in (t, t + horizon]) given each account's latent state at t.

Computed by Monte Carlo continuation of the same latent process that produced the data,
starting from the state known at t (never from the realised future). The decision noise
at each term end is integrated analytically (the probability of surviving a decision is
1 - h), so only the latent path is sampled.
"""

from __future__ import annotations

import numpy as np

from churnguard.simulator.config import US_PER_DAY, month_starts
from churnguard.simulator.latent import State, Static, churn_probability, step


def churn_within_horizon(
    rng: np.random.Generator,
    state: State,
    static: Static,
    next_end_month: np.ndarray,
    term_months: np.ndarray,
    anchor_day: np.ndarray,
    snapshot_month: int,
    horizon_days: int,
    start: str,
    paths: int,
) -> np.ndarray:
    """Probability per row of leaving at a term end in (t, t + horizon], t = month start.

    `state` is the latent state that governed the month before t (the last one whose
    consequences are known at t; it also sets the decisions of the month starting at t).
    Term ends are on `anchor_day` of month indices next_end_month + k * term_months.
    """
    n = len(state.e)
    if n == 0:
        return np.zeros(0)
    t = int(month_starts(start, snapshot_month, snapshot_month)[0])
    t_h = t + horizon_days * US_PER_DAY
    rows = np.repeat(np.arange(n), paths)
    st, stat = state.take(rows), static.take(rows)
    nxt, term, anchor = next_end_month[rows], term_months[rows], anchor_day[rows]
    survive = np.ones(len(rows))
    j = snapshot_month
    while int(month_starts(start, j, j)[0]) <= t_h:
        month_start = int(month_starts(start, j, j)[0])
        end_ts = month_start + (anchor.astype(np.int64) - 1) * US_PER_DAY
        is_end = (j >= nxt) & ((j - nxt) % term == 0) & (end_ts > t) & (end_ts <= t_h)
        if is_end.any():
            # decisions in month j are taken on the state of month j - 1, as in the history
            h = churn_probability(st, stat)
            survive *= np.where(is_end, 1.0 - h, 1.0)
        st, _ = step(st, stat, rng)
        j += 1
    return 1.0 - survive.reshape(n, paths).mean(axis=1)
