"""The rule-based health score CS teams know: weighted components, 0-100, red/yellow/green.

Each component is a transparent rule on a few features (docs/features.md) scored 0-100;
the health score is the weighted mean of the components that can be computed (a missing
table means a missing component, and the weights of the others are renormalised).
Weights, thresholds and penalties come from params.yaml `health`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from churnguard.params import Section

COMPONENTS = ("usage", "adoption", "support", "sentiment", "relationship")


class HealthRules(Section):
    """Thresholds and penalties of the component rules."""

    target_seat_utilisation: float = 0.7  # active users / seats at which usage scores full marks
    trend_floor: float = -0.5  # 30d-vs-previous-30d change at which the trend scores 0
    breadth_target_share: float = 0.6  # share of known event types used in 30 days for full marks
    bug_open_penalty: float = 25.0  # per open high/urgent bug
    sla_breach_penalty: float = 10.0  # per SLA breach in 90 days
    csat_penalty_per_point: float = 10.0  # per CSAT point below 5
    contact_drop_penalty: float = 10.0  # tickets stopped (some in the previous 90 days, none now)
    theme_penalty: float = 20.0  # per comment mentioning cancel or a competitor (180 days)
    champion_departed_penalty: float = 40.0
    admin_departed_penalty: float = 20.0
    no_admin_penalty: float = 20.0
    shrink_penalty: float = 100.0  # times the share of users lost over 90 days


class HealthParams(Section):
    """params.yaml `health` section."""

    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "usage": 0.35,
            "adoption": 0.15,
            "support": 0.2,
            "sentiment": 0.2,
            "relationship": 0.1,
        }
    )
    tiers: dict[str, float] = Field(default_factory=lambda: {"red": 40.0, "yellow": 70.0})
    rules: HealthRules = Field(default_factory=HealthRules)


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name].astype(float) if name in frame else pd.Series(np.nan, index=frame.index)


def _usage(f: pd.DataFrame, r: HealthRules) -> pd.Series:
    users = _col(f, "active_users_30d")
    seats = _col(f, "seats")
    capacity = (seats * r.target_seat_utilisation).where(seats > 0)
    fallback = _col(f, "active_users_90d").where(lambda s: s > 0)
    util = (users / capacity).fillna(users / fallback).fillna(0.0).clip(0, 1)
    change = _col(f, "events_30d_vs_prev_30d_ratio") - 1
    events_30 = _col(f, "events_30d")
    trend = ((change - r.trend_floor) / -r.trend_floor).clip(0, 1)
    trend = trend.fillna((events_30 > 0).astype(float))  # nothing before: any use now is fine
    return 100 * (util + trend) / 2


def _support(f: pd.DataFrame, r: HealthRules) -> pd.Series:
    if "tickets_90d" not in f:
        return pd.Series(np.nan, index=f.index)
    breaches = _col(f, "sla_first_response_breaches_90d") + _col(f, "sla_resolution_breaches_90d")
    csat_gap = (5 - _col(f, "csat_mean_90d")).fillna(0).clip(lower=0)
    dropped = (_col(f, "tickets_prev_90d") > 0) & (_col(f, "tickets_90d") == 0)
    score = (
        100
        - r.bug_open_penalty * _col(f, "bugs_high_open")
        - r.sla_breach_penalty * breaches
        - r.csat_penalty_per_point * csat_gap
        - r.contact_drop_penalty * dropped.astype(float)
    )
    return score.clip(0, 100)


def _sentiment(f: pd.DataFrame, r: HealthRules) -> pd.Series:
    base = (_col(f, "nps_last") * 10).fillna(_col(f, "comment_sentiment_last") * 10)
    mentions = _col(f, "comments_theme_cancel_180d").fillna(0) + _col(
        f, "comments_theme_competitor_180d"
    ).fillna(0)
    return (base - r.theme_penalty * mentions).clip(0, 100)


def _relationship(f: pd.DataFrame, r: HealthRules) -> pd.Series:
    if "users_enabled" not in f:
        return pd.Series(np.nan, index=f.index)
    shrink = (-_col(f, "users_change_90d_ratio")).fillna(0).clip(lower=0, upper=1)
    score = (
        100
        - r.champion_departed_penalty * (_col(f, "champions_departed_90d") > 0).astype(float)
        - r.admin_departed_penalty * (_col(f, "admins_departed_90d") > 0).astype(float)
        - r.no_admin_penalty * (_col(f, "admins_enabled") == 0).astype(float)
        - r.shrink_penalty * shrink
    )
    return score.clip(0, 100)


def _adoption(f: pd.DataFrame, r: HealthRules, n_event_types: int) -> pd.Series:
    core = _col(f, "core_event_adoption_30d_share").clip(0, 1)
    if n_event_types <= 0:
        return 100 * core
    breadth = (_col(f, "distinct_events_30d") / (r.breadth_target_share * n_event_types)).clip(0, 1)
    return 100 * (core.fillna(breadth) + breadth) / 2


def compute_health(features: pd.DataFrame, params: HealthParams, n_event_types: int = 0) -> pd.DataFrame:
    """health_<component> (0-100 or NaN), health_score (0-100) and health_tier per row.

    `n_event_types` is the number of event types known before the train cut-off (part of
    the fitted state), the yardstick of usage breadth; 0 scores adoption on core events only.
    """
    r = params.rules
    parts = {
        "usage": _usage(features, r),
        "adoption": _adoption(features, r, n_event_types),
        "support": _support(features, r),
        "sentiment": _sentiment(features, r),
        "relationship": _relationship(features, r),
    }
    out = pd.DataFrame({f"health_{k}": v.astype(float) for k, v in parts.items()}, index=features.index)
    weights = np.array([params.weights.get(k, 0.0) for k in COMPONENTS])
    values = out[[f"health_{k}" for k in COMPONENTS]].to_numpy()
    present = ~np.isnan(values)
    total_w = (present * weights).sum(axis=1)
    score = np.where(
        total_w > 0,
        np.nansum(np.nan_to_num(values) * weights, axis=1) / np.where(total_w > 0, total_w, 1),
        np.nan,
    )
    out["health_score"] = np.round(score, 6)
    red, yellow = params.tiers.get("red", 40.0), params.tiers.get("yellow", 70.0)
    tier = np.where(score < red, "red", np.where(score < yellow, "yellow", "green"))
    tiers = pd.Series(tier, index=features.index, dtype="string")
    out["health_tier"] = tiers.where(~np.isnan(score), pd.NA)
    return out
