"""Evaluation: hand-checked metric definitions and the evaluate stage's metrics/plots files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.metrics import (
    classification_metrics,
    expected_calibration_error,
    precision_at_k_per_date,
    top_fraction_mask,
)
from models.registry import save_pyfunc
from models.synthetic import fit_synthetic_bundle, make_company

DESIGN_KEYS = ["roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile", "arr_capture_top_decile"]


def test_ece_by_hand() -> None:
    # bin 0.1-0.2: p=0.15 x2, one churner -> |0.5-0.15| ; bin 0.8-0.9: p=0.85 x2, both churn -> 0.15
    y = np.array([1, 0, 1, 1])
    p = np.array([0.15, 0.15, 0.85, 0.85])
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.35 + 0.5 * 0.15)


def test_top_decile_lift_recall_and_arr_capture_by_hand() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1] * 2, dtype=float)  # 20 rows, 4 churners
    p = np.linspace(0.9, 0.05, 20)  # row 0 and 1 are the top decile (2 rows)
    arr = np.arange(1, 21, dtype=float)
    m = classification_metrics(y, p, arr)
    assert top_fraction_mask(p).sum() == 2
    assert m["lift_top_decile"] == pytest.approx((1 / 2) / (4 / 20))
    assert m["recall_top_decile"] == pytest.approx(1 / 4)
    churned_arr = arr[y == 1].sum()  # rows 0, 9, 10, 19 -> 1 + 10 + 11 + 20
    assert m["arr_capture_top_decile_by_risk"] == pytest.approx(1 / churned_arr)
    # ranked by expected ARR lost (p x arr): rows 9 and 10 (0.50 x 10 and 0.46 x 11) lead
    assert set(np.argsort(-(p * arr))[:2]) == {9, 10}
    assert m["arr_capture_top_decile"] == pytest.approx((10 + 11) / churned_arr)


def test_precision_at_k_is_per_snapshot_date() -> None:
    dates = np.array(["d1"] * 4 + ["d2"] * 4)
    y = np.array([1, 1, 0, 0, 0, 0, 1, 0], dtype=float)
    p = np.array([0.9, 0.8, 0.1, 0.2, 0.9, 0.8, 0.1, 0.2])
    assert precision_at_k_per_date(y, p, dates, k=2) == pytest.approx((1.0 + 0.0) / 2)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline import evaluate

    root = tmp_path_factory.mktemp("eval")
    result, _ = fit_synthetic_bundle(300, 14, seed=3)
    features, snapshots = make_company(300, 14, seed=3)
    features.to_parquet(root / "features.parquet")
    snapshots.drop(columns="p_true").to_parquet(root / "snapshots.parquet")
    (root / "truth").mkdir()
    oracle = snapshots[["account_id", "snapshot_date", "p_true"]].rename(
        columns={"p_true": "p_churn_horizon"}
    )
    oracle.to_parquet(root / "truth" / "oracle.parquet")
    save_pyfunc(result.bundle, root / "model", features[result.bundle.feature_names].head(3))
    (root / "params.yaml").write_text("split: {test_months: 3, valid_months: 2}\nevaluate: {top_k: 10}\n")
    evaluate.main([
        "--model", str(root / "model"), "--features", str(root / "features.parquet"),
        "--snapshots", str(root / "snapshots.parquet"), "--sim-truth", str(root / "truth"),
        "--metrics", str(root / "metrics" / "evaluate.json"), "--plots", str(root / "plots"),
        "--params", str(root / "params.yaml"),
    ])  # fmt: skip
    return root


def test_evaluate_writes_stable_metric_keys(evaluated: Path) -> None:
    m = json.loads((evaluated / "metrics" / "evaluate.json").read_text())
    for key in DESIGN_KEYS:
        assert isinstance(m["test"][key], float), key
    for name in ("health_score", "logistic"):
        assert {"roc_auc", "arr_capture_top_decile"} <= set(m["baselines"][name])
    assert {"recall_top_decile", "precision_at_k", "oracle_roc_auc", "by_segment"} <= set(m["test"])
    assert set(m["test"]["by_segment"]) == {"enterprise", "smb"}
    assert m["test"]["oracle_coverage"] == 1.0
    # the oracle knows the true probabilities: it ranks at least as well as the model, up to noise
    assert m["test"]["oracle_roc_auc"] > m["test"]["roc_auc"] - 0.02
    assert m["test"]["n_rows"] == 300 * 3  # only the three test months


def test_evaluate_writes_dvc_plots_and_pngs(evaluated: Path) -> None:
    plots = evaluated / "plots"
    for key in ("roc", "pr", "calibration", "gains"):
        assert (plots / f"{key}.png").stat().st_size > 1000
        for scorer in ("model", "logistic", "health_score"):
            records = json.loads((plots / f"{key}_{scorer}.json").read_text())
            assert 2 <= len(records) <= 201 and isinstance(records[0], dict)
    roc = pd.DataFrame(json.loads((plots / "roc_model.json").read_text()))
    assert roc["fpr"].is_monotonic_increasing and roc["tpr"].iloc[-1] == 1.0


def test_evaluate_without_oracle_omits_the_key(evaluated: Path, tmp_path: Path) -> None:
    from pipeline import evaluate

    out = tmp_path / "m.json"
    evaluate.main([
        "--model", str(evaluated / "model"), "--features", str(evaluated / "features.parquet"),
        "--snapshots", str(evaluated / "snapshots.parquet"), "--sim-truth", str(tmp_path / "none"),
        "--metrics", str(out), "--plots", str(tmp_path / "plots"), "--params", str(evaluated / "params.yaml"),
    ])  # fmt: skip
    assert "oracle_roc_auc" not in json.loads(out.read_text())["test"]


def test_evaluate_refuses_a_split_other_than_the_models(evaluated: Path, tmp_path: Path) -> None:
    """With other test months, "test" could hold rows the model was fitted or calibrated on."""
    from churnguard.errors import InputError
    from pipeline import evaluate

    params = tmp_path / "params.yaml"
    params.write_text("split: {test_months: 5, valid_months: 2}\nevaluate: {top_k: 10}\n")
    with pytest.raises(InputError, match="differ from the model's own split"):
        evaluate.main([
            "--model", str(evaluated / "model"), "--features", str(evaluated / "features.parquet"),
            "--snapshots", str(evaluated / "snapshots.parquet"), "--sim-truth", str(tmp_path / "none"),
            "--metrics", str(tmp_path / "m.json"), "--plots", str(tmp_path / "plots"),
            "--params", str(params),
        ])  # fmt: skip
