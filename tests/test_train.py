"""Training: feature selection, calibration, the split, determinism, leakage, the gate, the stage."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from churnguard.errors import InputError
from models.bundle import ModelBundle, encode_features, load_from_registry, select_features
from models.calibration import fit_calibrator
from models.config import GateParams, LightGBMParams, SplitParams, TrainParams
from models.metrics import expected_calibration_error
from models.registry import decide_promotion
from models.synthetic import make_company
from models.train import (
    LABEL,
    canonical_order,
    crossfit_scores,
    join_snapshots,
    lightgbm_params,
    train_model,
)

SPLIT = SplitParams(test_months=3, valid_months=2)
FAST = TrainParams(search_trials=1, lightgbm=LightGBMParams(n_estimators=150, early_stopping_rounds=15))


@pytest.fixture(scope="module")
def company() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_company(300, 14, seed=1)


def _train(features: pd.DataFrame, snapshots: pd.DataFrame, params: TrainParams = FAST):
    frame = join_snapshots(features, snapshots)
    return train_model(frame, select_features(features), params, SPLIT, trained_at="t", top_k=10), frame


def test_select_features_derives_columns_from_data() -> None:
    f = pd.DataFrame(
        {
            "account_id": ["a", "b"],
            "snapshot_date": pd.to_datetime(["2025-01-01", "2025-01-01"]),
            "x_30d": [1.0, 2.0],
            "flag": [True, False],
            "plan": ["pro", None],
            "health_tier": ["red", "green"],
            "renewal_date": pd.to_datetime(["2025-03-01", "2025-04-01"]),
        }
    )
    spec = select_features(f)
    assert spec.names == ("x_30d", "flag", "plan")
    assert spec.categories == {"plan": ("pro",)}
    enc = encode_features(f.assign(plan=["pro", "enterprise"]), spec)
    assert enc[0, 2] == 0.0 and np.isnan(enc[1, 2])  # unknown category -> missing
    with pytest.raises(InputError, match="x_30d"):
        encode_features(f.drop(columns="x_30d"), spec)


@pytest.mark.parametrize("leak", ["label", "churn_date", "label_observable"])
def test_label_columns_in_features_stop_the_run(leak: str) -> None:
    f = pd.DataFrame(
        {"account_id": ["a"], "snapshot_date": pd.to_datetime(["2025-01-01"]), "x": [1.0], leak: [1]}
    )
    with pytest.raises(InputError, match="leakage"):
        select_features(f)


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_fixes_overconfident_scores_without_creating_ties(method: str) -> None:
    rng = np.random.default_rng(0)
    p_true = rng.uniform(0.01, 0.5, 5000)
    y = (rng.uniform(size=5000) < p_true).astype(float)
    raw = np.clip(p_true * 1.8, 0, 0.99)  # overconfident
    cal = fit_calibrator(raw, y, method)
    fixed = cal.transform(raw)
    assert expected_calibration_error(y, fixed) < expected_calibration_error(y, raw) / 2
    upper = raw > np.median(raw)  # where the at-risk list is drawn from: no new ties
    assert len(np.unique(fixed[upper])) == len(np.unique(raw[upper]))
    assert np.all(np.diff(cal.transform(np.linspace(0, 1, 101))) >= 0)


def test_split_is_by_date_and_metrics_only_on_test_rows(company) -> None:
    result, frame = _train(*company)
    dates = {k: pd.to_datetime(v) for k, v in result.split_dates.items()}
    assert dates["train"].max() < dates["valid"].min() and dates["valid"].max() < dates["test"].min()
    unlabelled = frame[LABEL].isna()
    assert result.parts[unlabelled].isna().all()
    n_test = int((result.parts == "test").sum())
    assert result.metrics["test"]["model"]["n_rows"] == n_test
    assert set(result.metrics["test"]) == {"model", "logistic", "health_score"}
    assert result.metrics["test"]["model"]["roc_auc"] > 0.7


def test_training_is_deterministic(company) -> None:
    a, frame = _train(*company)
    b, _ = _train(*company)
    assert a.bundle.version == b.bundle.version
    np.testing.assert_array_equal(a.bundle.predict_proba(frame), b.bundle.predict_proba(frame))


def test_test_month_labels_never_inform_training(company) -> None:
    features, snapshots = company
    base, _ = _train(features, snapshots)
    test_dates = pd.to_datetime(base.split_dates["test"])
    flipped = snapshots.copy()
    in_test = flipped["snapshot_date"].isin(test_dates) & flipped["label_observable"]
    flipped.loc[in_test, "label"] = 1.0 - flipped.loc[in_test, "label"]
    other, _ = _train(features, flipped)
    assert other.bundle.version == base.bundle.version  # same trees, calibrator, features
    assert other.metrics["test"]["model"]["roc_auc"] != base.metrics["test"]["model"]["roc_auc"]


@pytest.mark.parametrize("refit", [True, False])
def test_no_fitted_row_has_a_label_window_reaching_a_later_part(company, refit: bool) -> None:
    params = FAST.model_copy(update={"refit_on_valid": refit})
    result, frame = _train(*company, params=params)
    assert result.fit_rows is not None
    fitted = pd.to_datetime(frame.loc[result.fit_rows, "snapshot_date"])
    window_end = fitted + pd.Timedelta(days=90)  # _train's horizon default, lead 0
    later = pd.to_datetime(result.split_dates["test" if refit else "valid"]).min()
    assert len(fitted) and (window_end <= later).all()
    assert not result.parts[result.fit_rows].isin(["test", "embargo"]).any()
    if not refit:
        assert (result.parts[result.fit_rows] == "train").all()
    # the last train months were purged, the months before test embargoed, and both recorded
    assert result.purge["train_rows_purged"] > 0 and result.bundle.meta["purged"]["train"] > 0
    assert result.purge["valid_rows_embargoed"] == int((result.parts == "embargo").sum()) > 0
    assert result.bundle.meta["purged"]["embargo"] == result.purge["valid_rows_embargoed"]
    assert int(result.fit_rows.sum()) == result.bundle.meta["fit_rows"]
    n_fit = result.purge["refit_rows_fitted" if refit else "train_rows_fitted"]
    assert n_fit == int(result.fit_rows.sum())


def test_validation_and_calibration_rows_never_see_a_test_month_churn(company) -> None:
    """Early stopping, the search and calibration use no row labelled by churn in the test months."""
    result, _ = _train(*company)
    dates = {p: pd.to_datetime(v) for p, v in result.split_dates.items()}
    first_test = dates["test"].min()
    assert (dates["valid"] + pd.Timedelta(days=90) <= first_test).all()
    assert (dates["embargo"] + pd.Timedelta(days=90) > first_test).all()
    assert dates["valid"].max() < dates["embargo"].min() and dates["embargo"].max() < first_test
    assert len(dates["valid"]) == SPLIT.valid_months  # the embargo does not eat validation months
    # the model saw no label window ending after the first test date
    assert pd.Timestamp(result.bundle.meta["label_end"]) <= first_test
    valid_rows = int((result.parts == "valid").sum())
    assert result.purge["valid_rows_used"] == valid_rows and result.purge["valid_rows_purged"] == 0
    # test and embargoed labels change nothing: same trees, calibrator, features
    features, snapshots = company
    flipped = snapshots.copy()
    hidden = flipped["snapshot_date"].isin([*dates["test"], *dates["embargo"]]) & flipped["label_observable"]
    flipped.loc[hidden, "label"] = 1.0 - flipped.loc[hidden, "label"]
    assert _train(features, flipped)[0].bundle.version == result.bundle.version


def test_refit_model_is_calibrated_on_cross_fitted_scores(company) -> None:
    result, _ = _train(*company)
    cal = result.bundle.meta["calibration"]
    assert cal["fitted_on"] == "crossfit" and cal["folds"] == 5
    assert cal["rows"] == result.purge["calibration_rows"] == result.bundle.meta["fit_rows"]
    no_refit, _ = _train(*company, params=FAST.model_copy(update={"refit_on_valid": False}))
    cal = no_refit.bundle.meta["calibration"]
    assert cal["fitted_on"] == "valid" and cal["rows"] == no_refit.purge["valid_rows_used"]


def test_cross_fitted_scores_of_an_account_ignore_its_own_labels(company) -> None:
    """Each account is scored by a booster that never saw its rows (out of fold)."""
    frame = canonical_order(join_snapshots(*company), select_features(company[0]))
    spec = select_features(company[0])
    rows = frame[LABEL].notna()
    params = lightgbm_params(FAST.lightgbm, 42, [0] * len(spec.names))
    base = crossfit_scores(frame, rows, spec, params, 0.01, 5)
    account = frame.loc[rows & (frame[LABEL] == 1), "account_id"].iloc[0]
    own = (frame.loc[rows, "account_id"] == account).to_numpy()
    flipped = frame.assign(**{LABEL: frame[LABEL].where(frame["account_id"] != account, 1 - frame[LABEL])})
    other = crossfit_scores(flipped, rows, spec, params, 0.01, 5)
    np.testing.assert_array_equal(other[own], base[own])
    assert not np.array_equal(other[~own], base[~own])  # the other folds' boosters did see it
    assert np.isfinite(base).all()


def test_purge_counts_follow_the_label_window(company) -> None:
    frame = join_snapshots(*company)
    spec = select_features(company[0])
    short = train_model(frame, spec, FAST, SPLIT, trained_at="t", horizon_days=28)
    long = train_model(frame, spec, FAST, SPLIT, trained_at="t", horizon_days=60, lead_days=30)
    assert short.purge["train_rows_purged"] < long.purge["train_rows_purged"]
    assert short.purge["valid_rows_embargoed"] == 0 < long.purge["valid_rows_embargoed"]
    assert long.purge["train_rows_purged"] == _train(*company)[0].purge["train_rows_purged"]


def test_too_few_months_for_the_embargo_names_split_and_window_params() -> None:
    features, snapshots = make_company(200, 9, seed=2)  # 6 labelled months: 3 test + 2 embargoed + 2 valid
    frame = join_snapshots(features, snapshots)
    with pytest.raises(InputError, match=r"split\.test_months.*horizon_days"):
        train_model(frame, select_features(features), FAST, SPLIT, trained_at="t")


def test_purge_leaving_no_training_rows_names_split_params() -> None:
    features, snapshots = make_company(200, 11, seed=2)  # 8 labelled months: 1 train month, purged
    frame = join_snapshots(features, snapshots)
    with pytest.raises(InputError, match=r"purging training rows.*split\.test_months"):
        train_model(frame, select_features(features), FAST, SPLIT, trained_at="t")


def test_validation_months_with_one_class_name_the_params(company) -> None:
    features, snapshots = company
    probe, _ = _train(features, snapshots)
    valid = snapshots["snapshot_date"].isin(pd.to_datetime(probe.split_dates["valid"]))
    frame = join_snapshots(features, snapshots.assign(label=snapshots["label"].mask(valid, 0.0)))
    with pytest.raises(InputError, match=r"validation months hold .* 1 class.*split\.valid_months"):
        train_model(frame, select_features(features), FAST, SPLIT, trained_at="t")


def test_search_is_recorded_and_uses_valid_months_only(company) -> None:
    params = FAST.model_copy(update={"search_trials": 3})
    result, _ = _train(*company, params=params)
    assert len(result.trials) == 3
    assert {"valid_roc_auc", "valid_log_loss", "num_leaves"} <= set(result.trials[0])
    best = max(result.trials, key=lambda t: (t["valid_roc_auc"], -t["valid_log_loss"]))
    assert result.best_params["num_leaves"] == best["num_leaves"]


def test_gate_needs_margin_and_calibration() -> None:
    gate = GateParams(metric="roc_auc", min_improvement=0.01, max_ece=0.05)
    assert decide_promotion({"roc_auc": 0.80, "ece": 0.02}, None, gate, None).alias == "champion"
    assert decide_promotion({"roc_auc": 0.80, "ece": 0.09}, None, gate, None).alias == "challenger"
    old = {"roc_auc": 0.795}
    d = decide_promotion({"roc_auc": 0.80, "ece": 0.02}, old, gate, "3")
    assert (d.alias, d.promoted, d.champion_version) == ("challenger", False, "3")
    assert "0.7950" in d.reason
    assert decide_promotion({"roc_auc": 0.81, "ece": 0.02}, old, gate, "3").promoted
    unscorable = decide_promotion({"roc_auc": 0.70, "ece": 0.02}, {}, gate, "3")
    assert unscorable.promoted and "cannot be scored" in unscorable.reason


def test_train_stage_logs_registers_and_gates(tmp_path: Path, company, monkeypatch) -> None:
    from pipeline import train

    features, snapshots = company
    features.to_parquet(tmp_path / "features.parquet")
    snapshots.drop(columns="p_true").to_parquet(tmp_path / "snapshots.parquet")
    (tmp_path / "report.json").write_text('{"data_end": "2026-02-01"}')
    params = {
        "split": {"test_months": 3, "valid_months": 2},
        "train": {"search_trials": 1, "lightgbm": {"n_estimators": 100, "early_stopping_rounds": 10},
                  "gate": {"metric": "roc_auc", "min_improvement": 0.002, "max_ece": 0.5}},
    }  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    argv = [
        "--features", str(tmp_path / "features.parquet"), "--snapshots", str(tmp_path / "snapshots.parquet"),
        "--validation-report", str(tmp_path / "report.json"), "--model-out", str(tmp_path / "model"),
        "--summary", str(tmp_path / "summary.json"), "--params", str(tmp_path / "params.yaml"),
    ]  # fmt: skip
    train.main(argv)
    first = json.loads((tmp_path / "summary.json").read_text())
    assert (first["alias"], first["model_version"]) == ("champion", "1")
    train.main(argv)  # same data and params: no improvement -> challenger
    second = json.loads((tmp_path / "summary.json").read_text())
    assert (second["alias"], second["promoted"]) == ("challenger", False)
    assert "champion v1" in second["gate"]["reason"]
    assert second["bundle_version"] == first["bundle_version"]
    assert second["purge"]["horizon_days"] == 90 and second["purge"]["train_rows_purged"] > 0
    assert second["purge"]["valid_rows_embargoed"] == second["rows"]["embargo"] > 0
    # the champion (v1) saw no label of the new test months: compared on all of them
    assert (
        second["gate"]["excluded_dates"] == []
        and second["gate"]["compared_dates"] == first["split_dates"]["test"]
    )

    run = mlflow.MlflowClient(uri).get_run(second["run_id"])
    assert run.data.tags["git_commit"] and run.data.tags["data.features_md5"]
    assert (
        "test.model.roc_auc" in run.data.metrics
        and "train.lightgbm.num_leaves" in run.data.params
        and "purge.train_rows_purged" in run.data.params
        and "purge.valid_rows_embargoed" in run.data.params
        and run.data.params["calibration.fitted_on"] == "crossfit"
        and "search.best_valid_roc_auc" in run.data.metrics
    )
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(second["run_id"])}
    assert {"plots", "shap", "feature_importance", "data", "gate", "search"} <= artifacts

    X = features.head(20)
    local = ModelBundle.load(tmp_path / "model")
    pyfunc = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    np.testing.assert_allclose(np.asarray(pyfunc.predict(X[local.feature_names])), local.predict_proba(X))
    champion = load_from_registry(uri)
    assert champion.version == "1"
    np.testing.assert_allclose(champion.predict_proba(X), local.predict_proba(X))


def test_tiny_company_refit_rows_end_before_the_test_months(tiny_model) -> None:
    """On the simulated tiny company: purge and embargo counts recomputed from the snapshots match."""
    t = tiny_model
    summary = json.loads(t.train_summary.read_text())
    window = yaml.safe_load(t.params.read_text())["snapshots"]
    days = pd.Timedelta(days=window["horizon_days"] + window["lead_days"])
    snaps = pd.read_parquet(t.snapshots)
    feats = pd.read_parquet(t.features, columns=["account_id", "snapshot_date"])
    rows = feats.merge(snaps, on=["account_id", "snapshot_date"])
    rows = rows[rows["label_observable"].astype(bool)]
    dates = {p: pd.to_datetime(v) for p, v in summary["split_dates"].items()}
    d = pd.to_datetime(rows["snapshot_date"])
    train, valid = d.isin(dates["train"]), d.isin(dates["valid"])
    first_valid, first_test = dates["valid"].min(), dates["test"].min()
    purge = summary["purge"]
    assert purge["train_rows_fitted"] == int((train & (d + days <= first_valid)).sum()) > 0
    assert purge["refit_rows_fitted"] == int(((train | valid) & (d + days <= first_test)).sum()) > 0
    assert purge["train_rows_purged"] == int(train.sum()) - purge["train_rows_fitted"] > 0
    assert purge["refit_rows_purged"] == int((train | valid).sum()) - purge["refit_rows_fitted"]
    # the rows before the test months whose window reaches them are embargoed: never used
    embargo = (d < first_test) & (d + days > first_test)
    assert purge["valid_rows_embargoed"] == int(embargo.sum()) == summary["rows"]["embargo"] > 0
    assert not (embargo & (train | valid)).any()
