"""Curve data for DVC plots (ROC, precision-recall, calibration, gains) and the PNG figures.

Curve functions are pure (arrays in, small frames out, at most ~200 points each); the
`*_png` functions draw with matplotlib's Agg backend into a given path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

MAX_POINTS = 200


def _thin(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) <= MAX_POINTS:
        return frame.reset_index(drop=True)
    idx = np.unique(np.linspace(0, len(frame) - 1, MAX_POINTS).round().astype(int))
    return frame.iloc[idx].reset_index(drop=True)


def roc_points(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    fpr, tpr, _ = roc_curve(y, p)
    return _thin(pd.DataFrame({"fpr": fpr, "tpr": tpr}))


def pr_points(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    precision, recall, _ = precision_recall_curve(y, p)
    return _thin(pd.DataFrame({"recall": recall[::-1], "precision": precision[::-1]}))


def calibration_points(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed churn rate per equal-width probability bin."""
    bins = np.minimum((np.asarray(p) * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "p": p, "y": y})
    g = frame.groupby("bin", sort=True).agg(
        predicted=("p", "mean"), observed=("y", "mean"), rows=("y", "size")
    )
    return g.reset_index(drop=True)


def gains_points(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """Cumulative share of churners caught vs share of accounts contacted, highest risk first."""
    order = np.argsort(-np.asarray(p), kind="stable")
    caught = np.cumsum(np.asarray(y, dtype=float)[order])
    total = caught[-1] if len(caught) and caught[-1] > 0 else 1.0
    share = np.arange(1, len(order) + 1) / max(len(order), 1)
    frame = pd.DataFrame({"population": share, "gain": caught / total})
    frame["lift"] = frame["gain"] / frame["population"]
    return _thin(pd.concat([pd.DataFrame({"population": [0.0], "gain": [0.0], "lift": [np.nan]}), frame]))


CURVES = {
    "roc": (roc_points, "fpr", "tpr", "ROC (test months)"),
    "pr": (pr_points, "recall", "precision", "Precision-recall (test months)"),
    "calibration": (calibration_points, "predicted", "observed", "Calibration (test months)"),
    "gains": (gains_points, "population", "gain", "Cumulative gains (test months)"),
}


def curves_png(curves: dict[str, pd.DataFrame], x: str, y: str, title: str, path: Path) -> Path:
    """One line per scorer; a diagonal for reference."""
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=100)
    ax.plot([0, 1], [0, 1], color="#bbbbbb", linestyle="--", linewidth=1)
    for name, frame in curves.items():
        ax.plot(frame[x], frame[y], label=name, marker="o" if len(frame) <= 12 else None, markersize=3)
    ax.set(xlabel=x, ylabel=y, title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def importance_png(values: pd.Series, title: str, path: Path, top: int = 20) -> Path:
    """Horizontal bar chart of the largest values (e.g. mean |SHAP| or gain)."""
    s = values.sort_values(ascending=False).head(top)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(s) + 1.2), dpi=100)
    ax.barh(s.index.astype(str), s.to_numpy(), color="#3b6ea8")
    ax.set(title=title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def beeswarm_png(
    shap_values: np.ndarray, values: np.ndarray, names: list[str], path: Path, top: int = 15, seed: int = 0
) -> Path:
    """SHAP beeswarm: one row per top feature, points = accounts, colour = feature value rank."""
    order = np.argsort(-np.abs(shap_values).mean(axis=0))[:top][::-1]
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(order) + 1.5), dpi=100)
    for row, j in enumerate(order):
        v = values[:, j]
        rank = pd.Series(v).rank(pct=True).to_numpy()
        jitter = rng.uniform(-0.3, 0.3, size=len(v))
        ax.scatter(
            shap_values[:, j], row + jitter, c=np.nan_to_num(rank, nan=0.5), cmap="coolwarm", s=6, alpha=0.7
        )
    ax.axvline(0, color="#888888", linewidth=0.8)
    ax.set_yticks(range(len(order)), [names[j] for j in order])
    ax.set(xlabel="SHAP value (log-odds of churn); colour: feature value low→high", title="SHAP summary")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
