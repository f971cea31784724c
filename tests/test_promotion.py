"""Promotion gate: the champion is compared only on test months it saw no label of."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from models.config import GateParams
from models.registry import ComparisonWindow, champion_label_end, comparison_window, decide_promotion
from models.synthetic import make_company

TEST_DATES = ["2025-04-01", "2025-05-01", "2025-06-01", "2025-07-01"]
GATE = GateParams(metric="roc_auc", min_improvement=0.01, max_ece=0.05, min_compare_churners=20)
NEW = {"roc_auc": 0.80, "ece": 0.02, "n_rows": 4000.0, "churn_rate": 0.05}


def test_label_end_is_read_from_the_bundle_or_derived_conservatively() -> None:
    assert champion_label_end({"label_end": "2025-04-01"}, 90, 0) == pd.Timestamp("2025-04-01")
    legacy = {
        "split_dates": {
            "train": ["2024-10-01"],
            "valid": ["2025-01-01", "2025-03-01"],
            "test": ["2025-04-01"],
        },
        "label_window": {"horizon_days": 60, "lead_days": 10},
    }
    # every non-test date counts as seen; its own window, not today's
    assert champion_label_end(legacy, 90, 0) == pd.Timestamp("2025-03-01") + pd.Timedelta(days=70)
    no_window = {k: v for k, v in legacy.items() if k != "label_window"}
    assert champion_label_end(no_window, 90, 0) == pd.Timestamp("2025-03-01") + pd.Timedelta(days=90)
    assert champion_label_end({}, 90, 0) is None


def test_months_the_champion_saw_labels_of_are_excluded() -> None:
    w = comparison_window(pd.to_datetime(TEST_DATES), {"label_end": "2025-05-15"}, 90, 0)
    assert w.dates == ("2025-06-01", "2025-07-01") and w.excluded == ("2025-04-01", "2025-05-01")
    # a window starting exactly at the label end is out-of-sample (window ends are exclusive)
    assert comparison_window(TEST_DATES, {"label_end": "2025-04-01"}, 90, 0).excluded == ()
    # lead days move the label window: t + lead must reach the champion's label end
    assert comparison_window(TEST_DATES, {"label_end": "2025-05-15"}, 90, 20).dates[0] == "2025-05-01"
    unknown = comparison_window(TEST_DATES, {}, 90, 0)
    assert unknown.dates == tuple(TEST_DATES) and "unknown" in unknown.note


def test_champion_compared_on_the_fair_months_only() -> None:
    window = ComparisonWindow(("2025-06-01", "2025-07-01"), ("2025-04-01", "2025-05-01"), "2025-05-15")
    on_window = {"roc_auc": 0.78, "n_rows": 2000.0, "churn_rate": 0.05}
    d = decide_promotion(NEW, {"roc_auc": 0.775}, GATE, "3", new_on_window=on_window, window=window)
    # 0.78 on the window (not the 0.80 of the whole test window) vs 0.775 + 0.01
    assert (d.alias, d.new_value, d.compared_rows) == ("challenger", 0.78, 2000)
    assert d.excluded_dates == window.excluded and d.champion_label_end == "2025-05-15"
    assert "2 earlier month(s) excluded" in d.reason and "2025-06-01..2025-07-01" in d.reason
    better = decide_promotion(NEW, {"roc_auc": 0.76}, GATE, "3", new_on_window=on_window, window=window)
    assert better.promoted and better.alias == "champion"


@pytest.mark.parametrize(
    ("window", "rows"),
    [
        (ComparisonWindow((), tuple(TEST_DATES), "2025-09-01"), 0.0),  # every test month seen
        (ComparisonWindow(("2025-07-01",), tuple(TEST_DATES[:3]), "2025-06-15"), 200.0),  # 10 churners
    ],
)
def test_no_fair_window_follows_the_documented_rule(window: ComparisonWindow, rows: float) -> None:
    on_window = {"roc_auc": 0.99, "n_rows": rows, "churn_rate": 0.05} if rows else {"n_rows": 0.0}
    champion: dict[str, float] = {"roc_auc": 0.5} if rows else {}
    keep = decide_promotion(NEW, champion, GATE, "3", new_on_window=on_window, window=window)
    assert (keep.alias, keep.promoted) == ("challenger", False)
    assert "no fair comparison" in keep.reason and "keep_champion" in keep.reason
    promote_gate = GATE.model_copy(update={"no_fair_window": "promote"})
    promote = decide_promotion(NEW, champion, promote_gate, "3", new_on_window=on_window, window=window)
    assert promote.promoted and "no_fair_window: promote" in promote.reason
    # the calibration bound still applies first
    bad = decide_promotion(
        {**NEW, "ece": 0.2}, champion, promote_gate, "3", new_on_window=on_window, window=window
    )
    assert not bad.promoted and "max_ece" in bad.reason


def test_train_stage_excludes_months_the_champion_was_fitted_on(tmp_path: Path, monkeypatch) -> None:
    """A champion trained with 3 test months, a challenger with 5: its first 2 are the champion's."""
    from pipeline import train

    features, snapshots = make_company(300, 14, seed=4)
    features.to_parquet(tmp_path / "features.parquet")
    snapshots.drop(columns="p_true").to_parquet(tmp_path / "snapshots.parquet")
    (tmp_path / "report.json").write_text("{}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    argv = [
        "--features", str(tmp_path / "features.parquet"), "--snapshots", str(tmp_path / "snapshots.parquet"),
        "--validation-report", str(tmp_path / "report.json"), "--model-out", str(tmp_path / "model"),
        "--summary", str(tmp_path / "summary.json"), "--params", str(tmp_path / "params.yaml"),
    ]  # fmt: skip

    def run(test_months: int, valid_months: int) -> dict:
        params = {
            "split": {"test_months": test_months, "valid_months": valid_months},
            "snapshots": {"horizon_days": 28},  # make_company labels each row on its own
            "train": {"search_trials": 1, "lightgbm": {"n_estimators": 60, "early_stopping_rounds": 10},
                      "gate": {"max_ece": 0.5, "min_compare_churners": 5}},
        }  # fmt: skip
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        train.main(argv)
        return json.loads((tmp_path / "summary.json").read_text())

    first = run(3, 2)
    assert first["alias"] == "champion"
    second = run(5, 2)
    gate = second["gate"]
    seen = set(first["split_dates"]["train"]) | set(first["split_dates"]["valid"])
    assert set(gate["excluded_dates"]) == seen & set(second["split_dates"]["test"]) != set()
    assert list(gate["compared_dates"]) == first["split_dates"]["test"]
    assert gate["champion_label_end"] == (
        pd.Timestamp(first["split_dates"]["valid"][-1]) + pd.Timedelta(days=28)
    ).strftime("%Y-%m-%d")
    assert 0 < gate["compared_rows"] < second["rows"]["test"]
    assert "excluded" in gate["reason"]
