"""Rule-based health score: components, renormalised weights, tiers, direction."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.health import HealthParams, HealthRules, compute_health


def _row(**values: float) -> dict[str, float]:
    base = {
        "active_users_30d": 7.0,
        "active_users_90d": 8.0,
        "seats": 10.0,
        "events_30d": 100.0,
        "events_30d_vs_prev_30d_ratio": 1.0,
        "core_event_adoption_30d_share": 1.0,
        "distinct_events_30d": 6.0,
        "tickets_90d": 2.0,
        "tickets_prev_90d": 2.0,
        "bugs_high_open": 0.0,
        "sla_first_response_breaches_90d": 0.0,
        "sla_resolution_breaches_90d": 0.0,
        "csat_mean_90d": 5.0,
        "nps_last": 10.0,
        "users_enabled": 8.0,
        "admins_enabled": 1.0,
        "champions_departed_90d": 0.0,
        "admins_departed_90d": 0.0,
        "users_change_90d_ratio": 0.0,
        "comments_theme_cancel_180d": 0.0,
        "comments_theme_competitor_180d": 0.0,
    }
    base.update(values)
    return base


def test_healthy_account_is_green_with_full_components() -> None:
    out = compute_health(pd.DataFrame([_row()]), HealthParams(), n_event_types=10)
    assert out.loc[0, "health_score"] == 100.0
    assert out.loc[0, "health_tier"] == "green"
    assert set(out.columns) == {
        f"health_{c}" for c in ("usage", "adoption", "support", "sentiment", "relationship")
    } | {
        "health_score",
        "health_tier",
    }


def test_each_warning_sign_lowers_its_component() -> None:
    rows = pd.DataFrame(
        [
            _row(),
            _row(active_users_30d=1.0, events_30d_vs_prev_30d_ratio=0.4),
            _row(bugs_high_open=2.0, sla_resolution_breaches_90d=1.0),
            _row(nps_last=3.0, comments_theme_competitor_180d=1.0),
            _row(champions_departed_90d=1.0, users_change_90d_ratio=-0.3),
            _row(tickets_90d=0.0, tickets_prev_90d=5.0),  # contact dropped
        ]
    )
    out = compute_health(rows, HealthParams(), n_event_types=10)
    assert out.loc[1, "health_usage"] < out.loc[0, "health_usage"]
    assert out.loc[2, "health_support"] == 100 - 2 * 25 - 10
    assert out.loc[3, "health_sentiment"] == 30 - 20
    assert out.loc[4, "health_relationship"] == 100 - 40 - 30
    assert out.loc[5, "health_support"] < 100
    assert (out.loc[1:, "health_score"] < out.loc[0, "health_score"]).all()


def test_missing_components_renormalise_weights_not_zero() -> None:
    frame = pd.DataFrame([_row(nps_last=np.nan)]).drop(columns=["tickets_90d", "users_enabled"])
    out = compute_health(frame, HealthParams(), n_event_types=10)
    assert np.isnan(out.loc[0, "health_support"]) and np.isnan(out.loc[0, "health_sentiment"])
    assert out.loc[0, "health_score"] == 100.0  # usage and adoption are perfect


def test_tiers_and_rules_come_from_params() -> None:
    frame = pd.DataFrame([_row(active_users_30d=2.0, nps_last=5.0)])
    default = compute_health(frame, HealthParams(), n_event_types=10)
    strict = compute_health(frame, HealthParams(tiers={"red": 95, "yellow": 99}), n_event_types=10)
    assert strict.loc[0, "health_tier"] == "red"
    assert default.loc[0, "health_score"] == strict.loc[0, "health_score"]
    easy = HealthParams(rules=HealthRules(target_seat_utilisation=0.2))
    assert compute_health(frame, easy, 10).loc[0, "health_usage"] > default.loc[0, "health_usage"]
