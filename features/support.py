"""Support features: ticket volume by category and severity, open high-severity bugs,
response and resolution times, SLA breaches, escalations, CSAT, contact-volume trend.

Point in time: a ticket exists at t when created_at < t; it is open at t unless
resolved_at < t; a first response counts only when first_response_at < t. Escalation
and CSAT carry no timestamp of their own, so they count only for tickets resolved
before t (when the ticket's record is final); an escalation flag set on a ticket still
open at t would otherwise leak the future.
"""

from __future__ import annotations

import pandas as pd

from churnguard.contract import TICKET_CATEGORIES, TICKET_SEVERITIES
from features.engine import Engine, sql_string

LOOKBACK_DAYS = 365  # the 365-day response-time window (90-day windows and the 90 days before them fit)


def _target_case(column: str, targets: dict[str, float]) -> str:
    whens = " ".join(f"WHEN {sql_string(k)} THEN {float(v)}" for k, v in sorted(targets.items()))
    return f"CASE {column} {whens} ELSE NULL END"


def build_support_features(
    engine: Engine,
    snaps: str,
    tickets: str,
    sla_first_response_hours: dict[str, float],
    sla_resolution_hours: dict[str, float],
) -> pd.DataFrame:
    """Support features per (account_id, snapshot_date) of `snaps`, from the `tickets` table."""
    d = engine.dialect
    t = "s.snapshot_date"
    in30 = f"k.created_at >= {d.minus_days(t, 30)}"
    in90 = f"k.created_at >= {d.minus_days(t, 90)}"
    prev90 = f"k.created_at < {d.minus_days(t, 90)} AND k.created_at >= {d.minus_days(t, 180)}"
    is_open = f"(k.resolved_at IS NULL OR k.resolved_at >= {t})"
    responded = f"(k.first_response_at IS NOT NULL AND k.first_response_at < {t})"
    resolved = f"(k.resolved_at IS NOT NULL AND k.resolved_at < {t})"
    fr_hours = d.hours_between("k.created_at", "k.first_response_at")
    res_hours = d.hours_between("k.created_at", "k.resolved_at")
    waited = d.hours_between("k.created_at", t)
    fr_target = _target_case("k.severity", sla_first_response_hours)
    res_target = _target_case("k.severity", sla_resolution_hours)
    high_bug = "k.category = 'bug' AND k.severity IN ('high', 'urgent')"
    counts = []
    for w, cond in (("30d", in30), ("90d", in90)):
        for cat in TICKET_CATEGORIES:
            counts.append(
                f"SUM(CASE WHEN {cond} AND k.category = {sql_string(cat)} THEN 1 ELSE 0 END) "
                f"AS tickets_{cat}_{w}"
            )
        for sev in TICKET_SEVERITIES:
            counts.append(
                f"SUM(CASE WHEN {cond} AND k.severity = {sql_string(sev)} THEN 1 ELSE 0 END) "
                f"AS tickets_sev_{sev}_{w}"
            )
    count_sql = ",\n".join(counts)
    return engine.query(
        f"""
        SELECT s.account_id, s.snapshot_date,
          SUM(CASE WHEN {in30} THEN 1 ELSE 0 END) AS tickets_30d,
          SUM(CASE WHEN {in90} THEN 1 ELSE 0 END) AS tickets_90d,
          SUM(CASE WHEN {prev90} THEN 1 ELSE 0 END) AS tickets_prev_90d,
          {count_sql},
          SUM(CASE WHEN {is_open} THEN 1 ELSE 0 END) AS tickets_open,
          SUM(CASE WHEN {is_open} AND {high_bug} THEN 1 ELSE 0 END) AS bugs_high_open,
          MAX(CASE WHEN {is_open} AND {high_bug} THEN {waited} / 24.0 END) AS bugs_high_open_max_age_days,
          percentile_cont(0.5) WITHIN GROUP (
            ORDER BY CASE WHEN {in90} AND {responded} THEN {fr_hours} END
          ) AS first_response_hours_median_90d,
          percentile_cont(0.5) WITHIN GROUP (
            ORDER BY CASE WHEN {in90} AND {resolved} THEN {res_hours} END
          ) AS resolution_hours_median_90d,
          SUM(CASE WHEN {in90} AND (
                ({responded} AND {fr_hours} > {fr_target})
                OR (NOT {responded} AND {waited} > {fr_target})) THEN 1 ELSE 0 END
          ) AS sla_first_response_breaches_90d,
          SUM(CASE WHEN {in90} AND (
                ({resolved} AND {res_hours} > {res_target})
                OR (NOT {resolved} AND {waited} > {res_target})) THEN 1 ELSE 0 END
          ) AS sla_resolution_breaches_90d,
          SUM(CASE WHEN {in90} AND {resolved} AND k.escalated THEN 1 ELSE 0 END) AS escalations_90d,
          AVG(CASE WHEN {resolved} AND k.resolved_at >= {d.minus_days(t, 90)} THEN k.csat END)
              AS csat_mean_90d,
          percentile_cont(0.5) WITHIN GROUP (
            ORDER BY CASE WHEN {responded} THEN {fr_hours} / {fr_target} END
          ) AS first_response_vs_target_median_365d
        FROM {snaps} s
        JOIN {tickets} k
          ON k.account_id = s.account_id
         AND k.created_at < {t}
         AND (k.created_at >= {d.minus_days(t, LOOKBACK_DAYS)} OR {is_open})
        GROUP BY s.account_id, s.snapshot_date
        """
    )


def finish_support_features(keys: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """Zero counts for accounts without tickets (the table exists, so none is a fact); trend ratios."""
    out = keys.merge(raw, on=["account_id", "snapshot_date"], how="left")
    value_cols = [c for c in raw.columns if c not in ("account_id", "snapshot_date")]
    keep_missing = {
        "bugs_high_open_max_age_days",
        "first_response_hours_median_90d",
        "resolution_hours_median_90d",
        "csat_mean_90d",
        "first_response_vs_target_median_365d",
    }
    for col in value_cols:
        out[col] = out[col].astype(float)
        if col not in keep_missing:
            out[col] = out[col].fillna(0.0)
    prev = out["tickets_prev_90d"]
    # A drop in contact is a warning sign: keep the ratio so the model can see it.
    out["tickets_90d_vs_prev_90d_ratio"] = out["tickets_90d"] / prev.where(prev > 0)
    out["tickets_90d_change"] = out["tickets_90d"] - prev
    return out
