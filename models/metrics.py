"""Evaluation metrics for churn scores: ranking, probability quality and CS-team usefulness.

All functions are pure: they take labels, scores and (optionally) ARR and snapshot dates
and return plain floats, so the same numbers are computed in train (for the promotion
gate) and evaluate (for the DVC metrics file).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

TOP_DECILE = 0.1


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE with equal-width probability bins: sum over bins of share * |churn rate - mean p|."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        m = bins == b
        total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


def top_fraction_mask(score: np.ndarray, fraction: float = TOP_DECILE) -> np.ndarray:
    """Boolean mask of the highest-scored `fraction` of rows (at least one; stable on ties)."""
    score = np.asarray(score, dtype=float)
    k = max(1, math.ceil(len(score) * fraction))
    order = np.argsort(-score, kind="stable")
    mask = np.zeros(len(score), dtype=bool)
    mask[order[:k]] = True
    return mask


def precision_at_k_per_date(y: np.ndarray, score: np.ndarray, dates: np.ndarray, k: int) -> float:
    """Mean over snapshot dates of the churn rate among the k highest-risk accounts of that date."""
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "s": score, "d": dates})
    per_date = [g.nlargest(k, "s")["y"].mean() for _, g in frame.groupby("d", sort=True)]
    return float(np.mean(per_date)) if per_date else float("nan")


def classification_metrics(
    y: np.ndarray,
    p: np.ndarray,
    arr: np.ndarray | None = None,
    dates: np.ndarray | None = None,
    top_k: int | None = None,
) -> dict[str, float]:
    """All test metrics for one scorer. `p` must be a probability for the log loss/Brier/ECE.

    Top-decile lift and recall rank by risk; `arr_capture_top_decile` ranks by expected
    ARR lost (p x ARR), the order of the CS at-risk list.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    out: dict[str, float] = {"n_rows": float(len(y)), "churn_rate": float(y.mean()) if len(y) else math.nan}
    if len(np.unique(y)) < 2:
        return out
    top = top_fraction_mask(p)
    base = y.mean()
    out.update(
        roc_auc=float(roc_auc_score(y, p)),
        pr_auc=float(average_precision_score(y, p)),
        log_loss=float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
        brier=float(brier_score_loss(y, p)),
        ece=expected_calibration_error(y, p),
        lift_top_decile=float(y[top].mean() / base),
        recall_top_decile=float(y[top].sum() / y.sum()),
    )
    if arr is not None:
        # The CS at-risk list is ranked by expected ARR lost (risk x ARR): the share of
        # churned ARR in its top decile is what the team can actually save. The same share
        # when ranking by risk alone is reported next to it.
        arr = np.nan_to_num(np.asarray(arr, dtype=float))
        churned_arr = (arr * y).sum()
        if churned_arr > 0:
            by_value = top_fraction_mask(p * arr)
            out["arr_capture_top_decile"] = float((arr * y)[by_value].sum() / churned_arr)
            out["arr_capture_top_decile_by_risk"] = float((arr * y)[top].sum() / churned_arr)
    if dates is not None and top_k:
        out["precision_at_k"] = precision_at_k_per_date(y, p, dates, top_k)
    return out


def ranking_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC, NaN when only one class is present."""
    y = np.asarray(y, dtype=float)
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else math.nan
