"""Relationship features: key contacts departed, active admins and champions, user growth.

Point in time: a user exists at t when created_at < t and is enabled at t unless
deactivated_at < t (a deactivation recorded at or after t is unknown at t).
"""

from __future__ import annotations

import pandas as pd

from features.engine import Engine


def build_relationship_features(engine: Engine, snaps: str, users: str) -> pd.DataFrame:
    """Per (account_id, snapshot_date): enabled users/admins/champions, departures, 90-day growth,
    days since the last champion / admin departure."""
    d = engine.dialect
    t = "s.snapshot_date"
    t90 = d.minus_days(t, 90)
    enabled = f"(u.deactivated_at IS NULL OR u.deactivated_at >= {t})"
    enabled_90 = f"(u.created_at < {t90} AND (u.deactivated_at IS NULL OR u.deactivated_at >= {t90}))"
    left = f"(u.deactivated_at IS NOT NULL AND u.deactivated_at < {t})"
    left_90 = f"({left} AND u.deactivated_at >= {t90})"
    raw = engine.query(
        f"""
        SELECT s.account_id, s.snapshot_date,
          SUM(CASE WHEN {enabled} THEN 1 ELSE 0 END) AS users_enabled,
          SUM(CASE WHEN {enabled} AND u.role = 'admin' THEN 1 ELSE 0 END) AS admins_enabled,
          SUM(CASE WHEN {enabled} AND u.role = 'champion' THEN 1 ELSE 0 END) AS champions_enabled,
          SUM(CASE WHEN {enabled_90} THEN 1 ELSE 0 END) AS users_enabled_90d_ago,
          SUM(CASE WHEN {left_90} THEN 1 ELSE 0 END) AS users_departed_90d,
          SUM(CASE WHEN {left_90} AND u.role = 'champion' THEN 1 ELSE 0 END) AS champions_departed_90d,
          SUM(CASE WHEN {left_90} AND u.role = 'admin' THEN 1 ELSE 0 END) AS admins_departed_90d,
          SUM(CASE WHEN u.created_at >= {t90} THEN 1 ELSE 0 END) AS users_added_90d,
          MAX(CASE WHEN {left} AND u.role = 'champion' THEN u.deactivated_at END) AS champion_left_at,
          MAX(CASE WHEN {left} AND u.role = 'admin' THEN u.deactivated_at END) AS admin_left_at
        FROM {snaps} s
        JOIN {users} u ON u.account_id = s.account_id AND u.created_at < {t}
        GROUP BY s.account_id, s.snapshot_date
        """
    )
    keys = engine.query(f"SELECT DISTINCT account_id, snapshot_date FROM {snaps}")
    out = keys.merge(raw, on=["account_id", "snapshot_date"], how="left")
    left_at = ["champion_left_at", "admin_left_at"]
    cols = [c for c in raw.columns if c not in ("account_id", "snapshot_date", *left_at)]
    out[cols] = out[cols].fillna(0).astype(float)
    t_col = pd.to_datetime(out["snapshot_date"])
    for role, col in (("champion", "champion_left_at"), ("admin", "admin_left_at")):
        # NaN: no one in the role has ever departed (before t)
        gone = pd.to_datetime(out[col])
        out[f"days_since_{role}_departed"] = ((t_col - gone).dt.total_seconds() / 86400.0).astype(float)
    out["key_contact_departed_90d"] = (
        (out["champions_departed_90d"] + out["admins_departed_90d"]) > 0
    ).astype(float)
    out["users_change_90d"] = out["users_enabled"] - out["users_enabled_90d_ago"]
    before = out["users_enabled_90d_ago"]
    out["users_change_90d_ratio"] = out["users_change_90d"] / before.where(before > 0)
    return out.drop(columns=["users_enabled_90d_ago", *left_at])
