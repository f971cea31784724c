"""A small synthetic (features, snapshots) pair with known signal, for unit tests and benchmarks.

Not the simulator: just frames in the layout of `data/features.parquet` and
`data/snapshots.parquet`, with churn drawn from a logistic function of a few features
(falling usage, open high-severity bugs, a departed champion, low NPS, monthly billing)
so tests can check that the model finds real signal and respects its direction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def true_logit(frame: pd.DataFrame) -> np.ndarray:
    """The log-odds of churn that generated the labels."""
    nps = frame["nps_latest"].fillna(7.0).to_numpy()
    return (
        -2.6
        - 0.035 * frame["active_users_trend_30d_pct"].to_numpy()
        + 0.55 * frame["tickets_bug_high_open"].to_numpy()
        + 1.3 * frame["champion_departed_90d"].to_numpy()
        - 0.18 * (nps - 7.0)
        + 0.7 * (frame["billing_period"] == "monthly").to_numpy()
        - 0.02 * frame["active_users_30d"].to_numpy()
    )


def make_company(
    n_accounts: int = 400, n_months: int = 14, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, snapshots) for `n_accounts` x `n_months` monthly snapshots; last 3 months unlabelled."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2025-01-01", periods=n_months, freq="MS").astype("datetime64[us]")
    acc = np.array([f"acct-{i:05d}" for i in range(n_accounts)])
    n = n_accounts * n_months
    frame = pd.DataFrame(
        {
            "account_id": np.repeat(acc, n_months),
            "snapshot_date": np.tile(dates, n_accounts),
        }
    )
    seats = np.repeat(rng.integers(5, 120, n_accounts), n_months)
    frame["active_users_30d"] = np.maximum(0, seats * rng.uniform(0.2, 1.0, n)).round()
    frame["active_users_trend_30d_pct"] = np.clip(rng.normal(0, 25, n), -100, 200).round(1)
    frame["tickets_bug_high_open"] = rng.poisson(0.4, n).astype(float)
    frame["tickets_question_30d"] = rng.poisson(1.5, n).astype(float)
    frame["champion_departed_90d"] = (rng.uniform(size=n) < 0.08).astype(float)
    nps = rng.integers(0, 11, n).astype(float)
    nps[rng.uniform(size=n) < 0.3] = np.nan
    frame["nps_latest"] = nps
    frame["theme_competitor_90d"] = (rng.uniform(size=n) < 0.05).astype(float)
    frame["days_to_renewal"] = rng.integers(1, 365, n).astype(float)
    frame["billing_period"] = pd.array(
        np.repeat(rng.choice(["monthly", "annual"], n_accounts, p=[0.4, 0.6]), n_months), dtype="string"
    )
    frame["noise_7d"] = rng.normal(size=n)
    health = 70 + 0.3 * frame["active_users_trend_30d_pct"] - 8 * frame["tickets_bug_high_open"]
    frame["health_score"] = np.clip(health + rng.normal(0, 12, n), 0, 100).round(1)
    frame["health_tier"] = np.where(
        frame["health_score"] < 40, "red", np.where(frame["health_score"] < 70, "yellow", "green")
    )
    p = 1 / (1 + np.exp(-true_logit(frame)))
    label = (rng.uniform(size=n) < p).astype(float)
    observable = frame["snapshot_date"] < dates[-3]
    snapshots = frame[["account_id", "snapshot_date"]].copy()
    snapshots["label"] = np.where(observable, label, np.nan)
    snapshots["label_observable"] = observable.to_numpy()
    snapshots["arr"] = (seats * 600.0).astype(float)
    snapshots["mrr"] = snapshots["arr"] / 12
    snapshots["segment"] = np.where(seats > 60, "enterprise", "smb")
    snapshots["billing_period"] = frame["billing_period"].astype(object)
    snapshots["days_to_renewal"] = frame["days_to_renewal"]
    snapshots["renewal_date"] = frame["snapshot_date"] + pd.to_timedelta(frame["days_to_renewal"], unit="D")
    snapshots["is_scoring_date"] = (frame["snapshot_date"] == dates[-1]).to_numpy()
    snapshots["churn_date"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us]")
    snapshots["p_true"] = p
    return frame, snapshots


def fit_synthetic_bundle(
    n_accounts: int = 300, n_months: int = 14, seed: int = 0, search_trials: int = 1
) -> tuple[object, pd.DataFrame]:
    """(TrainResult, joined frame) of a quick model on `make_company` data, for tests and benchmarks.

    `make_company` draws each row's label on its own (no churn event labels two snapshot
    dates), so the label window passed to training is one month: nothing needs embargoing.
    """
    from models.bundle import select_features
    from models.config import LightGBMParams, SplitParams, TrainParams
    from models.train import join_snapshots, train_model

    features, snapshots = make_company(n_accounts, n_months, seed)
    frame = join_snapshots(features, snapshots)
    params = TrainParams(
        search_trials=search_trials, lightgbm=LightGBMParams(n_estimators=200, early_stopping_rounds=20)
    )
    result = train_model(
        frame, select_features(features), params, SplitParams(test_months=3, valid_months=2), trained_at="t",
        horizon_days=28,
    )  # fmt: skip
    return result, frame
