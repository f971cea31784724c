"""Directional and recount tests on the tiny simulated company (shared fixtures).

Features are recomputed independently in pandas from the clean tables for the accounts
whose usage falls, whose champion leaves or who mention a competitor, and compared with
what the features stage wrote.
"""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.text import detect_language, theme_flags

pytestmark = pytest.mark.slow
D = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def sim(tiny_features):  # type: ignore[no-untyped-def]
    from churnguard import tables

    t = tiny_features
    feats = pd.read_parquet(t.features)
    snaps = pd.read_parquet(t.snapshots)
    events = duckdb.connect().execute(f"SELECT * FROM read_parquet('{tables.events_glob(t.validated)}')").df()
    return {
        "t": t,
        "features": feats,
        "snapshots": snaps,
        "events": events,
        "users": tables.read_clean(t.validated, "users"),
        "surveys": tables.read_clean(t.validated, "surveys"),
    }


def _window_counts(events: pd.DataFrame, keys: pd.DataFrame, lo: int, hi: int) -> pd.Series:
    """Events per key row with timestamp in [t - hi days, t - lo days)."""
    m = keys[["account_id", "snapshot_date"]].merge(events[["account_id", "timestamp"]], on="account_id")
    inside = (m["timestamp"] >= m["snapshot_date"] - hi * D) & (m["timestamp"] < m["snapshot_date"] - lo * D)
    counts = m[inside].groupby(["account_id", "snapshot_date"]).size()
    idx = pd.MultiIndex.from_frame(keys[["account_id", "snapshot_date"]])
    return counts.reindex(idx, fill_value=0).astype(float)


def test_every_snapshot_row_has_features(sim) -> None:  # type: ignore[no-untyped-def]
    f, s = sim["features"], sim["snapshots"]
    assert len(f) == len(s)
    assert set(zip(f["account_id"], f["snapshot_date"], strict=True)) == set(
        zip(s["account_id"], s["snapshot_date"], strict=True)
    )
    metrics = json.loads((sim["t"].metrics / "features.json").read_text(encoding="utf-8"))
    assert set(metrics["languages"]) == {"en", "ja", "zh"}
    assert metrics["core_events_source"] == "inferred" and metrics["core_events"]


def test_event_counts_match_an_independent_recount(sim) -> None:  # type: ignore[no-untyped-def]
    f = sim["features"]
    recount_30 = _window_counts(sim["events"], f, 0, 30)
    recount_prev = _window_counts(sim["events"], f, 30, 60)
    np.testing.assert_array_equal(f["events_30d"].to_numpy(), recount_30.to_numpy())
    np.testing.assert_array_equal(f["events_prev_30d"].to_numpy(), recount_prev.to_numpy())


def test_falling_usage_shows_in_trend_and_health(sim) -> None:  # type: ignore[no-untyped-def]
    f = sim["features"]
    falling = f["events_30d"] < 0.5 * f["events_prev_30d"]
    rising = f["events_30d"] > 1.2 * f["events_prev_30d"]
    assert falling.sum() >= 5 and rising.sum() >= 5
    assert (f.loc[falling, "events_30d_vs_prev_30d_ratio"] < 0.5).all()
    assert f.loc[falling, "health_usage"].mean() < f.loc[rising, "health_usage"].mean()
    # Falling usage is a churn signal in the simulated company.
    snaps = sim["snapshots"]
    d = f.merge(snaps[["account_id", "snapshot_date", "label"]], on=["account_id", "snapshot_date"])
    d = d[d["label"].notna()]
    fell = d["events_30d"] < 0.5 * d["events_prev_30d"]
    assert d.loc[fell, "label"].mean() > d.loc[~fell, "label"].mean()


def test_champion_departure_is_seen_for_90_days_then_forgotten(sim) -> None:  # type: ignore[no-untyped-def]
    f, users = sim["features"], sim["users"]
    left = users[(users["role"] == "champion") & users["deactivated_at"].notna()]
    m = f[["account_id", "snapshot_date", "champions_departed_90d", "key_contact_departed_90d"]].merge(
        left[["account_id", "deactivated_at"]], on="account_id"
    )
    assert len(m) > 0
    within = (m["deactivated_at"] < m["snapshot_date"]) & (m["deactivated_at"] >= m["snapshot_date"] - 90 * D)
    assert (m.loc[within, "champions_departed_90d"] >= 1).all()
    assert (m.loc[within, "key_contact_departed_90d"] == 1).all()
    expected = (
        m.assign(w=within.astype(float))
        .groupby(["account_id", "snapshot_date"])["w"]
        .sum()
        .rename("expected")
    )
    got = f.set_index(["account_id", "snapshot_date"])["champions_departed_90d"]
    joined = expected.to_frame().join(got)
    np.testing.assert_array_equal(joined["expected"].to_numpy(), joined["champions_departed_90d"].to_numpy())


def test_competitor_mentions_are_counted_and_score_low(sim) -> None:  # type: ignore[no-untyped-def]
    f, surveys = sim["features"], sim["surveys"]
    comments = surveys[surveys["comment"].notna()].copy()
    flags = theme_flags(comments["comment"], comments["comment"].map(detect_language))
    comp = comments[flags["theme_competitor"].to_numpy() == 1]
    assert len(comp) >= 3
    m = f[["account_id", "snapshot_date", "comments_theme_competitor_180d"]].merge(
        comp[["account_id", "submitted_at"]], on="account_id"
    )
    within = (m["submitted_at"] < m["snapshot_date"]) & (m["submitted_at"] >= m["snapshot_date"] - 180 * D)
    assert within.any()
    assert (m.loc[within, "comments_theme_competitor_180d"] >= 1).all()
    # Competitor mentions come with low NPS in the simulated company, and the learnt sentiment agrees.
    scored = comments.assign(competitor=flags["theme_competitor"].to_numpy())
    assert (
        scored.loc[scored["competitor"] == 1, "nps"].mean()
        < scored.loc[scored["competitor"] == 0, "nps"].mean()
    )
    with_comp = f["comments_theme_competitor_180d"] > 0
    assert (
        f.loc[with_comp, "comment_sentiment_min_180d"].mean()
        < f.loc[~with_comp, "comment_sentiment_min_180d"].mean()
    )


def test_contract_churns_agree_with_the_simulators_ground_truth(sim) -> None:  # type: ignore[no-untyped-def]
    """Churn derived from subscriptions = the simulator's churn events, bar those still in grace."""
    from churnguard import tables
    from features.snapshots import contract_churn_dates

    t = sim["t"]
    end = tables.data_end(t.validated)
    subs = tables.read_clean(t.validated, "subscriptions")
    mine = contract_churn_dates(subs, 30, end)
    truth = pd.read_parquet(t.truth / "churn_events.parquet")
    m = truth.merge(mine, on="account_id", how="left", suffixes=("_truth", "_mine"))
    found = m["churn_date_mine"].notna()
    assert (m.loc[found, "churn_date_mine"] == m.loc[found, "churn_date_truth"]).all()
    # Unconfirmed only when the grace period had not run out by the data end.
    assert (m.loc[~found, "churn_date_truth"] + 30 * D > end).all()
    assert found.mean() > 0.8
    assert set(mine["account_id"]) <= set(truth["account_id"])


def test_usage_history_matches_an_independent_recount(sim) -> None:  # type: ignore[no-untyped-def]
    """Older 30-day periods recounted from the events; NaN where the period began before the log."""
    f, events, users = sim["features"], sim["events"], sim["users"]
    log_start = events["timestamp"].min().normalize()
    for k in range(2, 6):
        recount = _window_counts(events, f, 30 * k, 30 * (k + 1)).to_numpy()
        observed = (f["snapshot_date"] - 30 * (k + 1) * D >= log_start).to_numpy()
        got = f[f"events_30d_lag{k}"].to_numpy()
        assert observed.any() and np.isnan(got[~observed]).all()
        np.testing.assert_array_equal(got[observed], recount[observed])
    # intensity of the last 30 days: ln((events + 0.5) / (enabled user-days / 30 + 0.5))
    m = f[["account_id", "snapshot_date"]].merge(users, on="account_id")
    t = m["snapshot_date"]
    m = m[m["created_at"] < t]
    t = m["snapshot_date"]
    gone = m["deactivated_at"].where(m["deactivated_at"] < t, t)
    start = np.maximum(m["created_at"], t - 30 * D)
    days = ((gone.clip(upper=t) - start) / D).clip(lower=0)
    user_days = days.groupby([m["account_id"], m["snapshot_date"]]).sum()
    idx = pd.MultiIndex.from_frame(f[["account_id", "snapshot_date"]])
    user_days = user_days.reindex(idx, fill_value=0.0).to_numpy()
    expected = np.where(user_days > 0, (f["events_30d"].to_numpy() + 0.5) / (user_days / 30 + 0.5), np.nan)
    np.testing.assert_allclose(f["usage_intensity_30d"].to_numpy(), expected, rtol=1e-9, atol=1e-9)
    assert f["usage_intensity_vs_usual_trend_30d_pct"].notna().mean() > 0.5
