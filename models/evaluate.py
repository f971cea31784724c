"""Evaluation on the test months: the model against its baselines, the oracle, and by segment.

Pure: takes the joined frame (features + labels, `models.train.join_snapshots`) and the
bundle; returns the metrics dict written as DVC metrics and the curve data for DVC plots.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from models.bundle import KEYS, ModelBundle
from models.metrics import classification_metrics, ranking_auc
from models.plots import CURVES
from models.train import ARR, LABEL, SEGMENT

log = logging.getLogger(__name__)

ORACLE_COLUMN = "p_churn_horizon"


def scorer_probabilities(bundle: ModelBundle, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Calibrated probabilities of the model and of each baseline stored with it."""
    out = {"model": bundle.predict_proba(rows)}
    out.update({name: b.predict_proba(rows) for name, b in bundle.baselines.items()})
    return out


def evaluate_test(
    bundle: ModelBundle, test: pd.DataFrame, top_k: int, oracle: pd.DataFrame | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, pd.DataFrame]]]:
    """(metrics, curves) for the test rows; curves[curve][scorer] is a small frame."""
    if test.empty:
        raise ValueError("no labelled test rows to evaluate")
    y = test[LABEL].to_numpy(dtype=float)
    arr = test[ARR].to_numpy(dtype=float) if ARR in test else None
    dates = test["snapshot_date"].to_numpy()
    probs = scorer_probabilities(bundle, test)
    per_scorer = {n: classification_metrics(y, p, arr, dates, top_k) for n, p in probs.items()}
    metrics: dict[str, Any] = {"test": dict(per_scorer["model"])}
    metrics["test"]["n_dates"] = float(len(np.unique(dates)))
    metrics["baselines"] = {n: m for n, m in per_scorer.items() if n != "model"}
    if oracle is not None:
        joined = test[list(KEYS)].merge(oracle[[*KEYS, ORACLE_COLUMN]], on=list(KEYS), how="left")
        have = joined[ORACLE_COLUMN].notna().to_numpy()
        metrics["test"]["oracle_coverage"] = float(have.mean())
        if have.any():
            metrics["test"]["oracle_roc_auc"] = ranking_auc(
                y[have], joined.loc[have, ORACLE_COLUMN].to_numpy()
            )
            metrics["test"]["roc_auc_on_oracle_rows"] = ranking_auc(y[have], probs["model"][have])
    if SEGMENT in test:
        by_segment: dict[str, dict[str, float]] = {}
        for seg, idx in test.groupby(test[SEGMENT].astype(str), sort=True).indices.items():
            m = classification_metrics(y[idx], probs["model"][idx], None if arr is None else arr[idx])
            m.pop("recall_top_decile", None)
            by_segment[str(seg)] = m
        metrics["test"]["by_segment"] = by_segment
    curves: dict[str, dict[str, pd.DataFrame]] = {}
    if len(np.unique(y)) == 2:
        for key, (fn, *_rest) in CURVES.items():
            curves[key] = {n: fn(y, p) for n, p in probs.items()}
    return metrics, curves
