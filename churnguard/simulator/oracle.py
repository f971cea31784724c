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
    t = int(month_starts(start, snapshot_month, snapshot_month)[0])
    t_h = t + horizon_days * US_PER_DAY
    months = []
    j = snapshot_month
    while int(month_starts(start, j, j)[0]) <= t_h:
        months.append(j)
        j += 1
    ends = np.zeros((len(months), n), dtype=bool)
    for i, j in enumerate(months):
        end_ts = int(month_starts(start, j, j)[0]) + (anchor_day.astype(np.int64) - 1) * US_PER_DAY
        on_schedule = (j >= next_end_month) & ((j - next_end_month) % term_months == 0)
        ends[i] = on_schedule & (end_ts > t) & (end_ts <= t_h)
    prob = np.zeros(n)
    # only accounts with a term end inside the horizon can churn in it; the others stay 0
    todo = np.flatnonzero(ends.any(axis=0))
    if len(todo) == 0:
        return prob
    rows = np.repeat(todo, paths)
    st, stat = state.take(rows), static.take(rows)
    survive = np.ones(len(rows))
    last = int(np.flatnonzero(ends.any(axis=1)).max())
    for i in range(last + 1):
        is_end = ends[i][rows]
        if is_end.any():
            # decisions in month j are taken on the state of month j - 1, as in the history
            h = churn_probability(st, stat)
            survive *= np.where(is_end, 1.0 - h, 1.0)
        if i < last:
            st, _ = step(st, stat, rng)
    prob[todo] = 1.0 - survive.reshape(len(todo), paths).mean(axis=1)
    return prob
