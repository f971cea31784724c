"""Explain stage: SHAP contributions, global importance, per-account reasons and playbooks."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models import treeshap
from models.bundle import ModelBundle
from models.explain import EXPLANATION_COLUMNS, mean_abs_shap
from models.reasons import explain_rows
from models.registry import save_pyfunc
from models.synthetic import fit_synthetic_bundle, make_company


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline import explain

    root = tmp_path_factory.mktemp("explain")
    result, _ = fit_synthetic_bundle(300, 14, seed=4)
    features, snapshots = make_company(300, 14, seed=4)
    features.to_parquet(root / "features.parquet")
    snapshots.to_parquet(root / "snapshots.parquet")
    save_pyfunc(result.bundle, root / "model", features.head(3))
    (root / "params.yaml").write_text("explain: {top_reasons: 3, language: en}\n")
    explain.main([
        "--model", str(root / "model"), "--features", str(root / "features.parquet"),
        "--snapshots", str(root / "snapshots.parquet"), "--out", str(root / "explanations.parquet"),
        "--global-metrics", str(root / "shap_global.json"), "--plots", str(root / "plots"),
        "--params", str(root / "params.yaml"),
    ])  # fmt: skip
    return root


def test_contributions_add_up_to_the_raw_log_odds() -> None:
    result, frame = fit_synthetic_bundle(200, 12, seed=2)
    bundle = result.bundle
    rows = frame.head(50)
    contrib = bundle.contributions(rows)
    assert contrib.shape == (50, len(bundle.feature_names) + 1)
    margin = bundle.booster.predict(bundle.encode(rows), raw_score=True)
    np.testing.assert_allclose(contrib.sum(axis=1), margin, rtol=1e-6, atol=1e-9)


def test_lightgbm_contributions_match_shap_treeexplainer() -> None:
    shap = pytest.importorskip("shap")
    result, frame = fit_synthetic_bundle(200, 12, seed=2)
    bundle = result.bundle
    X = bundle.encode(frame.head(40))
    ours = bundle.contributions(frame.head(40))[:, :-1]
    theirs = shap.TreeExplainer(bundle.booster).shap_values(X)
    theirs = theirs[1] if isinstance(theirs, list) else theirs
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_explanations_cover_scoring_date_accounts_only(explained: Path) -> None:
    e = pd.read_parquet(explained / "explanations.parquet")
    assert list(e.columns) == EXPLANATION_COLUMNS
    assert e["snapshot_date"].nunique() == 1 and e["snapshot_date"].iloc[0] == pd.Timestamp("2026-02-01")
    assert e["account_id"].nunique() > 250
    assert e.groupby("account_id")["rank"].max().max() == 3
    assert (e["shap"] > 0).all()
    ranked = e.sort_values(["account_id", "rank"])
    assert (ranked.groupby("account_id")["shap"].diff().dropna() <= 0).all()
    assert e["reason_text"].str.len().min() > 5 and e["playbook_action"].notna().all()
    trend = e.loc[e["feature"] == "active_users_trend_30d_pct", "reason_text"]
    assert trend.str.contains(r"active users (?:fell|rose) \d+% in the last 30 days", regex=True).all()


def test_global_shap_metrics_and_plots(explained: Path) -> None:
    doc = json.loads((explained / "shap_global.json").read_text())
    shap_values = doc["mean_abs_shap"]
    assert list(shap_values.values()) == sorted(shap_values.values(), reverse=True)
    # the synthetic churn is driven by usage trend and champion loss, not by noise
    top = list(shap_values)[:4]
    assert "active_users_trend_30d_pct" in top and "noise_7d" not in top[:2]
    assert doc["n_rows"] == 300 and doc["rows_per_second"] > 0
    assert (explained / "plots" / "shap_summary.png").stat().st_size > 5000


def test_explain_rows_interface_and_japanese(explained: Path) -> None:
    bundle = ModelBundle.load(explained / "model")
    X = pd.read_parquet(explained / "features.parquet").tail(5)[bundle.feature_names]
    en = explain_rows(bundle, X, top_n=2)
    ja = explain_rows(bundle, X, top_n=2, language="ja")
    assert len(en) == 5 and all(len(r) <= 2 for r in en)
    assert [r.feature for rs in en for r in rs] == [r.feature for rs in ja for r in rs]
    assert any(
        any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in r.text)
        for rs in ja
        for r in rs
    )


def test_mean_abs_shap_ignores_bias() -> None:
    s = mean_abs_shap(np.array([[1.0, -3.0, 100.0], [-1.0, 1.0, 100.0]]), ["a", "b"])
    assert s.to_dict() == {"b": 2.0, "a": 1.0}


@pytest.mark.slow
def test_tiny_company_explanations(tiny_explained) -> None:
    t = tiny_explained
    e = pd.read_parquet(t.explanations)
    snaps = pd.read_parquet(t.snapshots)
    scoring = snaps.loc[snaps["is_scoring_date"], "account_id"]
    assert set(e["account_id"]) <= set(scoring) and e["account_id"].nunique() >= 0.9 * len(scoring)
    assert not e["reason_text"].str.contains(r"\{|\}|nan", regex=True).any()
    assert e["reason_family"].nunique() >= 4
    doc = json.loads((t.metrics / "shap_global.json").read_text())
    assert len(doc["mean_abs_shap"]) == len(ModelBundle.load(t.model).feature_names)


def _booster(X: np.ndarray, y: np.ndarray, **params: object) -> lgb.Booster:
    base = {"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 5, "seed": 1}
    return lgb.train({**base, **params}, lgb.Dataset(X, y, categorical_feature=[3]), num_boost_round=40)


def _data(n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    X[:, 3] = rng.integers(0, 6, n)  # a categorical code
    X[rng.random(n) < 0.15, 0] = np.nan  # missing values (NaN branch)
    X[rng.random(n) < 0.3, 1] = 0.0  # many zeros
    logit = X[:, 1] - np.nan_to_num(X[:, 0]) + (X[:, 3] == 2) + 0.5 * X[:, 2] * X[:, 4]
    return X, (logit + rng.normal(size=n) > 0).astype(float)


@pytest.mark.parametrize(
    "params",
    [
        {"num_leaves": 15, "max_depth": 6},
        {"num_leaves": 7, "max_depth": 3, "learning_rate": 0.3},
        {"num_leaves": 31, "max_depth": -1, "zero_as_missing": True},
        {"num_leaves": 15, "max_depth": 6, "use_missing": False},
    ],
)
def test_table_treeshap_equals_lightgbm_pred_contrib(params: dict[str, object]) -> None:
    X, y = _data()
    booster = _booster(X, y, **params)
    tables = treeshap.build_tables(booster)
    assert tables is not None
    rows = np.vstack([X[:300], [[np.nan, 0.0, 0.0, -1.0, np.nan], [1e9, -1e9, np.nan, 99.0, 0.0]]])
    expected = booster.predict(rows, pred_contrib=True)
    np.testing.assert_allclose(treeshap.contributions(tables, rows), expected, atol=1e-9)
    np.testing.assert_allclose(treeshap.contributions(tables, rows, threads=2), expected, atol=1e-9)


@pytest.mark.parametrize(
    ("table_bits", "budget", "leaves"),
    [
        (0, 1 << 23, 31),
        (4, 1 << 23, 31),
        (12, 1 << 23, 31),
        (12, 1 << 23, 7),
        (12, 20_000, 15),
        (30, 1 << 23, 15),
    ],
)
def test_subtree_tables_equal_lightgbm(
    monkeypatch: pytest.MonkeyPatch, table_bits: int, budget: int, leaves: int
) -> None:
    """Subtree tables (none, small cuts, the default, whole trees, a budget that runs out) stay exact."""
    monkeypatch.setattr(treeshap, "MAX_TABLE_BITS", table_bits)
    monkeypatch.setattr(treeshap, "TABLE_BUDGET", budget)
    X, y = _data()
    booster = _booster(X, y, num_leaves=leaves, max_depth=6)
    tables = treeshap.build_tables(booster)
    assert tables is not None
    n_leaves = len(tables.leaf_slot_start) - 1
    covered = n_leaves - len(tables.rest_leaf)
    assert (covered == 0) == (table_bits == 0)
    if table_bits == 30:  # every tree is one table
        assert len(tables.rest_leaf) == 0 and len(tables.entry_lo) == len(tables.tree_entry_start) - 1
    if budget < 1e6:
        assert 0 < len(tables.rest_leaf) < n_leaves and tables.entry_table.size <= budget
    rows = np.vstack([X[:300], [[np.nan, 0.0, 0.0, -1.0, np.nan], [1e9, -1e9, np.nan, 99.0, 0.0]]])
    expected = booster.predict(rows, pred_contrib=True)
    np.testing.assert_allclose(treeshap.contributions(tables, rows), expected, atol=1e-9)
    np.testing.assert_allclose(treeshap.contributions(tables, rows, threads=2), expected, atol=1e-9)


def test_deep_paths_fall_back_to_lightgbm(monkeypatch: pytest.MonkeyPatch) -> None:
    result, frame = fit_synthetic_bundle(200, 12, seed=2)
    monkeypatch.setattr(treeshap, "MAX_PATH_FEATURES", 2)  # every real path is longer
    assert treeshap.build_tables(result.bundle.booster) is None
    bundle = ModelBundle(result.bundle.booster, result.bundle.calibrator, result.bundle.spec, trained_at="t")
    rows = frame.head(20)
    assert bundle.shap_tables is None
    expected = bundle.booster.predict(bundle.encode(rows), pred_contrib=True)
    np.testing.assert_allclose(bundle.contributions(rows), expected)


def test_bundle_contributions_same_with_either_method() -> None:
    result, frame = fit_synthetic_bundle(200, 12, seed=2)
    bundle = result.bundle
    rows = frame.head(300)
    assert bundle.shap_tables is not None
    np.testing.assert_allclose(
        bundle.contributions(rows), bundle.contributions(rows, method="lightgbm"), atol=1e-9
    )
