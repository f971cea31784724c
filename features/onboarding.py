"""Onboarding features for young accounts: activation milestones reached before t.

Milestones (each a first-occurrence fact, so known at t exactly when it happened before t):
first usage; at least `min_users` distinct users active; every core event used once.
Defined only for accounts younger than `onboarding_days` (NaN otherwise).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.engine import Engine, sql_string


def build_onboarding_features(
    engine: Engine,
    snaps: str,
    accounts: str,
    core_events: list[str],
    onboarding_days: int,
    min_users: int,
) -> pd.DataFrame:
    """Per (account_id, snapshot_date): milestones reached, days from creation to first use."""
    d = engine.dialect
    t = "s.snapshot_date"
    core = ", ".join(sql_string(e) for e in core_events) or "NULL"
    young = f"a.created_at >= {d.minus_days(t, onboarding_days)}"
    raw = engine.query(
        f"""
        WITH young AS (
            SELECT s.account_id, s.snapshot_date, a.created_at
            FROM {snaps} s JOIN {accounts} a ON a.account_id = s.account_id
            WHERE {young}
        ),
        users_first AS (
            SELECT account_id, user_id, MIN(day) AS first_day FROM daily_user GROUP BY 1, 2
        ),
        events_first AS (
            SELECT account_id, event, MIN(day) AS first_day FROM daily_event
            WHERE event IN ({core}) GROUP BY 1, 2
        ),
        u AS (
            SELECT s.account_id, s.snapshot_date, COUNT(*) AS users_ever, MIN(f.first_day) AS first_use
            FROM young s JOIN users_first f ON f.account_id = s.account_id AND f.first_day < {t}
            GROUP BY 1, 2
        ),
        e AS (
            SELECT s.account_id, s.snapshot_date, COUNT(*) AS core_ever
            FROM young s JOIN events_first f ON f.account_id = s.account_id AND f.first_day < {t}
            GROUP BY 1, 2
        )
        SELECT s.account_id, s.snapshot_date, s.created_at, u.users_ever, u.first_use, e.core_ever
        FROM young s
        LEFT JOIN u ON u.account_id = s.account_id AND u.snapshot_date = s.snapshot_date
        LEFT JOIN e ON e.account_id = s.account_id AND e.snapshot_date = s.snapshot_date
        """
    )
    keys = engine.query(f"SELECT DISTINCT account_id, snapshot_date FROM {snaps}")
    users_ever = raw["users_ever"].fillna(0).astype(float)
    core_ever = raw["core_ever"].fillna(0).astype(float)
    m_first = raw["first_use"].notna().astype(float)
    m_users = (users_ever >= min_users).astype(float)
    m_core = (core_ever >= len(core_events)).astype(float) if core_events else pd.Series(0.0, index=raw.index)
    feats = pd.DataFrame(
        {
            "account_id": raw["account_id"],
            "snapshot_date": raw["snapshot_date"],
            "onboarding_milestones_reached": m_first + m_users + m_core,
            "onboarding_core_events_used": core_ever,
            "onboarding_days_to_first_use": (
                pd.to_datetime(raw["first_use"]) - pd.to_datetime(raw["created_at"]).dt.normalize()
            ).dt.days.astype(float),
        }
    )
    out = keys.merge(feats, on=["account_id", "snapshot_date"], how="left")
    out["onboarding_days_to_first_use"] = out["onboarding_days_to_first_use"].clip(lower=0)
    return out.astype({"onboarding_milestones_reached": np.float64})
