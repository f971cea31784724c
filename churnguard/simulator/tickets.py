"""Support tickets: questions, feature requests and bugs, rendered from the latent state.

High and urgent bugs follow the latent open-bug count exactly (the oracle's state), so
"unresolved high-severity bugs" in the ticket table are the ones the churn decision sees.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.simulator.config import US_PER_DAY, US_PER_HOUR
from churnguard.simulator.users import NEVER

CATEGORIES = np.array(["bug", "feature_request", "question", "other"], dtype=object)
SEVERITIES = np.array(["low", "medium", "high", "urgent"], dtype=object)
BUG, FEATURE, QUESTION, OTHER = 0, 1, 2, 3
# monthly base rates per sqrt(active user), scaled by exp(contact propensity)
_RATES = ((QUESTION, 0.22), (FEATURE, 0.07), (BUG, 0.11), (OTHER, 0.03))
_FIRST_RESPONSE_H = np.array([20.0, 8.0, 3.0, 1.0])  # median by severity
_RESOLVE_D = {BUG: 5.0, FEATURE: 35.0, QUESTION: 1.5, OTHER: 3.0}


class TicketBook:
    """All tickets so far, as growing arrays."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {
            k: [] for k in ("account", "created", "category", "severity", "first_response", "resolved")
        }
        self.high_account = np.zeros(0, dtype=np.int64)
        self.high_created = np.zeros(0, dtype=np.int64)
        self.high_resolved = np.zeros(0, dtype=np.int64)
        self.high_severity = np.zeros(0, dtype=np.int64)
        self.high_first_response = np.zeros(0, dtype=np.int64)

    def month(
        self,
        rng: np.random.Generator,
        t0: int,
        lo: np.ndarray,
        hi: np.ndarray,
        contact: np.ndarray,
        active_users: np.ndarray,
        slow_support: np.ndarray,
        bugs_new: np.ndarray,
        bugs_resolved: np.ndarray,
        t1: int,
    ) -> None:
        """Tickets created in [lo[a], hi[a]) for each account a alive this month.

        contact[a] is the account's log propensity to contact support: engaged accounts ask
        more, and disengaging ones go quiet, so falling contact volume warns of churn.
        """
        alive = hi > lo
        span = np.where(alive, (hi - lo) / (t1 - t0), 0.0)
        scale = np.exp(contact) * np.sqrt(np.maximum(active_users, 1)) * span
        for cat, rate in _RATES:
            n = rng.poisson(rate * scale)
            acc = np.repeat(np.arange(len(n)), n)
            m = len(acc)
            created = lo[acc] + (rng.random(m) * (hi - lo)[acc]).astype(np.int64)
            if cat == BUG:
                severity = np.where(rng.random(m) < 0.55, 0, 1)
            elif cat == QUESTION:
                severity = np.where(rng.random(m) < 0.7, 0, 1)
            else:
                severity = np.zeros(m, dtype=np.int64)
            slow = 1.0 + 1.6 * slow_support[acc]
            first = created + (
                rng.lognormal(np.log(_FIRST_RESPONSE_H[severity]), 0.8) * slow * US_PER_HOUR
            ).astype(np.int64)
            days = rng.lognormal(np.log(_RESOLVE_D[cat]), 0.9, m) * (1.0 + 0.8 * slow_support[acc])
            resolved = first + (days * US_PER_DAY).astype(np.int64)
            never = rng.random(m) < (0.55 if cat == FEATURE else 0.04)
            resolved = np.where(never, NEVER, resolved)
            self._append(acc, created, np.full(m, cat), severity, first, resolved)

        # high-severity bugs: resolve the latent count among those open at t0, then add new ones
        open_rows = np.flatnonzero((self.high_resolved == NEVER) & (self.high_created < t0))
        if len(open_rows):
            acc = self.high_account[open_rows]
            order = np.lexsort((rng.random(len(open_rows)), acc))
            sorted_acc = acc[order]
            starts = np.searchsorted(sorted_acc, sorted_acc, side="left")
            rank = np.arange(len(order)) - starts
            chosen = open_rows[order[rank < bugs_resolved[sorted_acc]]]
            earliest = np.maximum(t0, self.high_created[chosen] + US_PER_HOUR)
            self.high_resolved[chosen] = earliest + (rng.random(len(chosen)) * (t1 - earliest)).astype(
                np.int64
            )
        n_new = np.where(alive, bugs_new, 0).astype(np.int64)
        acc = np.repeat(np.arange(len(n_new)), n_new)
        m = len(acc)
        created = lo[acc] + (rng.random(m) * (hi - lo)[acc]).astype(np.int64)
        severity = np.where(rng.random(m) < 0.3, 3, 2)
        slow = 1.0 + 1.6 * slow_support[acc]
        first = created + (
            rng.lognormal(np.log(_FIRST_RESPONSE_H[severity]), 0.7) * slow * US_PER_HOUR
        ).astype(np.int64)
        self.high_account = np.concatenate([self.high_account, acc])
        self.high_created = np.concatenate([self.high_created, created])
        self.high_resolved = np.concatenate([self.high_resolved, np.full(m, NEVER, dtype=np.int64)])
        self.high_severity = np.concatenate([self.high_severity, severity])
        self.high_first_response = np.concatenate([self.high_first_response, first])

    def _append(self, *arrays: np.ndarray) -> None:
        for key, arr in zip(self.cols, arrays, strict=True):
            self.cols[key].append(np.asarray(arr, dtype=np.int64))

    def frame(
        self, rng: np.random.Generator, account_ids: np.ndarray, engagement_at: np.ndarray, data_end: int
    ) -> pd.DataFrame:
        """The tickets table; times after the data end are not yet known (null).

        engagement_at[a] is the account's mean engagement, used for CSAT.
        """
        cols = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in self.cols.items()}
        acc = np.concatenate([cols["account"], self.high_account])
        created = np.concatenate([cols["created"], self.high_created])
        category = np.concatenate([cols["category"], np.full(len(self.high_account), BUG)])
        severity = np.concatenate([cols["severity"], self.high_severity])
        first = np.concatenate([cols["first_response"], self.high_first_response])
        resolved = np.concatenate([cols["resolved"], self.high_resolved])
        keep = created < data_end
        acc, created, category, severity, first, resolved = (
            a[keep] for a in (acc, created, category, severity, first, resolved)
        )
        order = np.lexsort((acc, created))
        acc, created, category, severity, first, resolved = (
            a[order] for a in (acc, created, category, severity, first, resolved)
        )
        n = len(acc)
        escalated = rng.random(n) < np.array([0.02, 0.06, 0.3, 0.55])[severity]
        res_days = np.where(resolved < NEVER, (resolved - created) / US_PER_DAY, np.nan)
        csat_mean = 4.4 - 0.35 * np.log1p(np.nan_to_num(res_days, nan=30.0)) + 0.4 * engagement_at[acc]
        csat = np.clip(np.round(csat_mean + rng.normal(0, 0.8, n)), 1, 5)
        has_csat = (resolved < data_end) & (rng.random(n) < 0.35)
        first = np.where(first < data_end, first, NEVER)
        resolved = np.where(resolved < data_end, resolved, NEVER)
        return pd.DataFrame(
            {
                "ticket_id": [f"T-{100000 + i}" for i in range(n)],
                "account_id": account_ids[acc].astype(str),
                "created_at": _ts(created),
                "category": CATEGORIES[category].astype(str),
                "severity": SEVERITIES[severity].astype(str),
                "first_response_at": _ts(first),
                "resolved_at": _ts(resolved),
                "escalated": escalated,
                "csat": pd.array(np.where(has_csat, csat, np.nan), dtype="Int64"),
            }
        )


def _ts(values: np.ndarray) -> pd.Series:
    """µs ints -> tz-aware UTC timestamps, NEVER -> NaT."""
    arr = np.where(values == NEVER, np.datetime64("NaT"), values.astype("datetime64[us]"))
    return pd.Series(pd.to_datetime(arr, utc=True))
