"""Contract features: tenure, billing period, MRR and its 90-day change, seats, plan,
days to renewal, renewals so far, a cancellation already recorded.

Point in time: a subscription row is known at t when start_date < t; a cancellation
when canceled_at < t. The snapshot's own facts (mrr, seats, billing period, renewal
date) come from the snapshots stage, which applies the same rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.engine import Engine


def build_contract_features(
    engine: Engine, snaps: str, subscriptions: str, columns: set[str]
) -> pd.DataFrame:
    """Per (account_id, snapshot_date) from `subscriptions` (which has `columns`)."""
    d = engine.dialect
    t = "s.snapshot_date"
    t90 = d.minus_days(t, 90)
    plan = "x.plan" if "plan" in columns else "CAST(NULL AS VARCHAR)"
    canceled = (
        f"CASE WHEN x.canceled_at IS NOT NULL AND x.canceled_at < {t} THEN 1 ELSE 0 END"
        if "canceled_at" in columns
        else "CAST(NULL AS INTEGER)"
    )
    return engine.query(
        f"""
        WITH known AS (
            SELECT s.account_id, s.snapshot_date, x.start_date, x.end_date, x.mrr,
                   {plan} AS plan, {canceled} AS canceled,
                   CASE WHEN x.end_date >= {t} THEN 1 ELSE 0 END AS covers_t,
                   CASE WHEN x.start_date < {t90} AND x.end_date >= {t90} THEN 1 ELSE 0 END AS covers_t90
            FROM {snaps} s
            JOIN {subscriptions} x ON x.account_id = s.account_id AND x.start_date < {t}
        ),
        ranked AS (
            SELECT *,
                   ROW_NUMBER() OVER (PARTITION BY account_id, snapshot_date, covers_t
                                      ORDER BY start_date DESC, end_date DESC) AS rn_t,
                   ROW_NUMBER() OVER (PARTITION BY account_id, snapshot_date, covers_t90
                                      ORDER BY start_date DESC, end_date DESC) AS rn_t90
            FROM known
        )
        SELECT account_id, snapshot_date,
               MIN(start_date) AS first_start,
               COUNT(*) AS terms_started,
               MAX(CASE WHEN covers_t = 1 AND rn_t = 1 THEN plan END) AS plan,
               MAX(CASE WHEN covers_t = 1 AND rn_t = 1 THEN canceled END) AS cancellation_recorded,
               MAX(CASE WHEN covers_t = 1 AND rn_t = 1 THEN {d.days_between("start_date", "end_date")} END)
                   AS term_length_days,
               MAX(CASE WHEN covers_t90 = 1 AND rn_t90 = 1 THEN mrr END) AS mrr_90d_ago
        FROM ranked
        GROUP BY account_id, snapshot_date
        """
    )


def finish_contract_features(
    snaps: pd.DataFrame, raw: pd.DataFrame | None, accounts: pd.DataFrame
) -> pd.DataFrame:
    """Combine the snapshot's own facts, account age and the subscription history."""
    out = snaps[["account_id", "snapshot_date"]].copy()
    created = accounts.set_index("account_id")["created_at"]
    out["account_age_days"] = (out["snapshot_date"] - out["account_id"].map(created)).dt.days.astype(float)
    if "segment" in snaps:
        out["segment"] = snaps["segment"].astype("string")
    if raw is None:
        return out
    out["mrr"] = snaps["mrr"].astype(float)
    out["seats"] = snaps["seats"].astype(float)
    out["days_to_renewal"] = snaps["days_to_renewal"].astype(float)
    bp = snaps["billing_period"]
    out["billing_annual"] = np.where(bp.isna(), np.nan, (bp == "annual").astype(float))
    out = out.merge(raw, on=["account_id", "snapshot_date"], how="left")
    out["tenure_days"] = (out["snapshot_date"] - out["first_start"]).dt.days.astype(float)
    out["renewals_so_far"] = (out["terms_started"].astype(float) - 1).clip(lower=0)
    out["mrr_90d_ago"] = out["mrr_90d_ago"].astype(float)
    out["mrr_change_90d"] = out["mrr"] - out["mrr_90d_ago"]
    out["mrr_change_90d_ratio"] = out["mrr_change_90d"] / out["mrr_90d_ago"].where(out["mrr_90d_ago"] > 0)
    out["cancellation_recorded"] = out["cancellation_recorded"].astype(float)
    out["term_length_days"] = out["term_length_days"].astype(float)
    out["plan"] = out["plan"].astype("string")
    return out.drop(columns=["first_start", "terms_started", "mrr_90d_ago"])
