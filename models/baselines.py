"""Baselines trained alongside the model on the same rows: health score alone, and logistic regression.

Both expose `predict_proba(X)` over the same feature frame as the model bundle, so
evaluate can score all three on identical test rows. They are pickled into the bundle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from models.bundle import FeatureSpec, encode_features

HEALTH_COLUMN = "health_score"


class HealthScoreBaseline:
    """Risk from the rule-based health score alone (lower health -> higher risk), Platt-scaled."""

    def __init__(self, column: str = HEALTH_COLUMN) -> None:
        self.column = column
        self.model = LogisticRegression(C=1e6, max_iter=1000)
        self.fill = 0.0

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> HealthScoreBaseline:
        h = pd.to_numeric(X[self.column], errors="coerce").astype(float)
        self.fill = float(h.median()) if h.notna().any() else 0.0
        self.model.fit(h.fillna(self.fill).to_numpy().reshape(-1, 1), np.asarray(y, dtype=int))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        h = pd.to_numeric(X[self.column], errors="coerce").astype(float).fillna(self.fill)
        return self.model.predict_proba(h.to_numpy().reshape(-1, 1))[:, 1]


def _one_hot(X: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Numeric features as-is; each categorical expanded to one column per known category."""
    enc = encode_features(X, spec)
    blocks: list[np.ndarray] = []
    for j, name in enumerate(spec.names):
        col = enc[:, j]
        if name in spec.categories:
            cats = np.arange(len(spec.categories[name]))
            blocks.append((col[:, None] == cats[None, :]).astype(float))
        else:
            blocks.append(col[:, None])
    return np.hstack(blocks) if blocks else np.empty((len(X), 0))


class LogisticBaseline:
    """L2-regularised logistic regression on standardised, median-imputed features."""

    def __init__(self, spec: FeatureSpec, c: float = 0.5, seed: int = 42) -> None:
        self.spec = spec
        self.pipeline: Pipeline = make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=c, max_iter=5000, random_state=seed),
        )

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> LogisticBaseline:
        self.pipeline.fit(_one_hot(X, self.spec), np.asarray(y, dtype=int))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(_one_hot(X, self.spec))[:, 1]


def fit_baselines(
    X: pd.DataFrame, y: np.ndarray, spec: FeatureSpec, c: float, seed: int
) -> dict[str, HealthScoreBaseline | LogisticBaseline]:
    """Fit both baselines on the training rows (health score only when the column exists)."""
    out: dict[str, HealthScoreBaseline | LogisticBaseline] = {
        "logistic": LogisticBaseline(spec, c=c, seed=seed).fit(X, y)
    }
    if HEALTH_COLUMN in X.columns:
        out["health_score"] = HealthScoreBaseline().fit(X, y)
    return out
