"""Model behaviour: invariance, direction on the served model, minimum functionality."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from models.bundle import ModelBundle, select_features
from models.config import LightGBMParams, SplitParams, TrainParams
from models.registry import save_pyfunc
from models.synthetic import make_company
from models.train import SCORING, join_snapshots, train_model

SPLIT = SplitParams(test_months=3, valid_months=2)
PARAMS = TrainParams(search_trials=1, lightgbm=LightGBMParams(n_estimators=200, early_stopping_rounds=20))


@pytest.fixture(scope="module")
def synthetic(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ModelBundle, pd.DataFrame, pd.DataFrame, Path]:
    """A served (pyfunc-saved and reloaded) model on the synthetic company."""
    features, snapshots = make_company(400, 14, seed=5)
    frame = join_snapshots(features, snapshots)
    result = train_model(frame, select_features(features), PARAMS, SPLIT, trained_at="t")
    path = save_pyfunc(result.bundle, tmp_path_factory.mktemp("served") / "model", features.head(3))
    return ModelBundle.load(path), features, snapshots, path


def _shuffled(
    features: pd.DataFrame, snapshots: pd.DataFrame, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = features["account_id"].unique()
    rename = dict(zip(ids, [f"X{rng.integers(1e9)}-{i}" for i in rng.permutation(len(ids))], strict=True))
    f = features.sample(frac=1.0, random_state=seed).assign(account_id=lambda d: d["account_id"].map(rename))
    s = snapshots.sample(frac=1.0, random_state=seed + 1).assign(
        account_id=lambda d: d["account_id"].map(rename)
    )
    return f.reset_index(drop=True), s.reset_index(drop=True)


def test_predictions_ignore_row_order_and_account_ids(synthetic) -> None:
    bundle, features, _, _ = synthetic
    perm = np.random.default_rng(0).permutation(len(features))
    shuffled = features.iloc[perm].assign(account_id="someone-else")
    np.testing.assert_array_equal(bundle.predict_proba(shuffled), bundle.predict_proba(features)[perm])
    np.testing.assert_array_equal(bundle.contributions(shuffled), bundle.contributions(features)[perm])


def test_training_ignores_row_order_and_account_ids(synthetic) -> None:
    bundle, features, snapshots, _ = synthetic
    f2, s2 = _shuffled(features, snapshots, seed=11)
    result = train_model(join_snapshots(f2, s2), select_features(f2), PARAMS, SPLIT, trained_at="t")
    assert result.bundle.version == bundle.version


def _risk_as(
    bundle: ModelBundle, path: Path, rows: pd.DataFrame, column: str, values: list[float]
) -> np.ndarray:
    """Served risk (pyfunc) of `rows` with `column` set to each value: shape (len(values), n)."""
    served = mlflow.pyfunc.load_model(str(path))
    out = []
    for v in values:
        X = rows[bundle.feature_names].assign(**{column: float(v)})
        p = np.asarray(served.predict(X), dtype=float)
        np.testing.assert_allclose(p, bundle.predict_proba(X))
        out.append(p)
    return np.vstack(out)


def test_more_open_high_severity_bugs_never_lowers_risk(synthetic) -> None:
    bundle, features, _, path = synthetic
    rows = features.sample(300, random_state=0)
    risk = _risk_as(bundle, path, rows, "tickets_bug_high_open", [0, 1, 2, 3, 5, 8])
    assert np.all(np.diff(risk, axis=0) >= 0)
    assert (risk[-1] > risk[0]).mean() > 0.5  # and it does raise risk for most accounts


def test_collapsing_usage_and_departed_champion_is_top_decile(synthetic) -> None:
    bundle, features, snapshots, _ = synthetic
    frame = join_snapshots(features, snapshots)
    scoring = frame.loc[frame[SCORING]]
    risk = bundle.predict_proba(scoring)
    typical = scoring.iloc[[int(np.argsort(risk)[len(risk) // 2])]]  # the median-risk account
    at_risk = typical.assign(
        active_users_trend_30d_pct=-80.0, active_users_30d=2.0, champion_departed_90d=1.0
    )
    assert bundle.predict_proba(at_risk)[0] >= np.quantile(risk, 0.9)


# --- the same checks on the real tiny company's served model -----------------------------------
BUG_COLUMNS = ("bugs_high_open", "tickets_bug_high_open")


@pytest.mark.slow
def test_tiny_model_direction_and_invariance(tiny_model) -> None:
    t = tiny_model
    bundle = ModelBundle.load(t.model)
    features = pd.read_parquet(t.features)
    column = next((c for c in BUG_COLUMNS if c in bundle.feature_names), None)
    assert column is not None, "the simulated company has open high-severity bug counts"
    rows = features.sample(min(len(features), 300), random_state=0)
    risk = _risk_as(bundle, t.model, rows, column, [0, 1, 2, 4, 8])
    assert np.all(np.diff(risk, axis=0) >= 0)
    perm = np.random.default_rng(1).permutation(len(rows))
    np.testing.assert_array_equal(
        bundle.predict_proba(rows.iloc[perm].assign(account_id="x")), bundle.predict_proba(rows)[perm]
    )


def _collapse_in_raw_data(validated: Path, out: Path, account: str, t: pd.Timestamp) -> None:
    """A copy of the clean tables where `account`'s usage in the 30 days before `t` falls by 80 %
    (4 of every 5 events removed) and its champions leave 14 days before `t`.

    Made in the data, not in feature columns, so that every feature that reads usage or users
    moves together, as it would for a real account.
    """
    shutil.copytree(validated, out)
    left = t - pd.Timedelta(days=14)
    users = pd.read_parquet(out / "users.parquet")
    mine = (users["account_id"] == account) & (
        users["deactivated_at"].isna() | (users["deactivated_at"] >= t)
    )
    champions = mine & (users["role"] == "champion")
    if not champions.any():  # the account's longest-standing user becomes its champion
        champions = users.index == users.loc[mine, "created_at"].idxmin()
        users.loc[champions, "role"] = "champion"
    users.loc[champions, "deactivated_at"] = left
    users.to_parquet(out / "users.parquet", index=False)
    gone = set(users.loc[champions, "user_id"])
    for part in sorted((out / "usage_events").glob("*.parquet")):
        e = pd.read_parquet(part)
        recent = np.flatnonzero(
            (e["account_id"] == account)
            & (e["timestamp"] >= t - pd.Timedelta(days=30))
            & (e["timestamp"] < t)
        )
        after_leaving = np.flatnonzero(
            (e["account_id"] == account) & e["user_id"].isin(gone) & (e["timestamp"] >= left)
        )
        drop = np.union1d(np.setdiff1d(recent, recent[::5]), after_leaving)
        e.drop(index=e.index[drop]).to_parquet(part, index=False)


@pytest.mark.slow
def test_collapsing_usage_and_departed_champion_is_top_decile_on_the_default_company(
    default_model, tmp_path
) -> None:
    """An ordinary account whose usage collapses and whose champion leaves lands in the top decile
    (issue 4's acceptance case, on the default simulated company)."""
    from pipeline import features as features_stage

    t = default_model
    bundle = ModelBundle.load(t.model)
    features = pd.read_parquet(t.features)
    when = features["snapshot_date"].max()
    current = features.loc[features["snapshot_date"] == when].reset_index(drop=True)
    risk = bundle.predict_proba(current)
    # The median-risk account among those whose contract can end within the label window (an
    # annual contract renewing next year cannot churn in it, whatever its usage does).
    horizon = yaml.safe_load(t.params.read_text(encoding="utf-8"))["snapshots"]["horizon_days"]
    can_end = np.flatnonzero(current["days_to_renewal"].to_numpy() <= horizon)
    account = str(current.loc[can_end[np.argsort(risk[can_end])[len(can_end) // 2]], "account_id"])

    _collapse_in_raw_data(t.validated, tmp_path / "validated", account, pd.Timestamp(when))
    features_stage.main(
        [
            "--validated", str(tmp_path / "validated"),
            "--snapshots", str(t.snapshots),
            "--out", str(tmp_path / "features.parquet"),
            "--text-model", str(tmp_path / "text_model"),
            "--metrics", str(tmp_path / "features.json"),
            "--params", str(t.params),
        ]
    )  # fmt: skip
    after = pd.read_parquet(tmp_path / "features.parquet")
    after = after.loc[after["snapshot_date"] == when].reset_index(drop=True)
    others = after["account_id"] != account
    pd.testing.assert_frame_equal(  # only the changed account moves
        after.loc[others].reset_index(drop=True),
        current.loc[current["account_id"] != account].reset_index(drop=True),
    )
    collapsed = after.loc[~others]
    assert collapsed["champions_departed_90d"].iloc[0] >= 1
    assert bundle.predict_proba(collapsed)[0] >= np.quantile(risk, 0.9)
