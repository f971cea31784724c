"""The model bundle: LightGBM booster + calibrator + feature list, as one object.

Evaluate, explain, score and serving all use `ModelBundle`: `predict_proba` is the
served (calibrated) probability, `contributions` the raw TreeSHAP values in log-odds
(last column = bias). On disk a bundle is a folder (`booster.txt`, `bundle.json`,
`baselines.pkl`) that is also the artifact of an MLflow pyfunc model, so
`mlflow.pyfunc.load_model` and `ModelBundle.load` read the same files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml

from churnguard.errors import InputError
from models import treeshap
from models.calibration import Calibrator

log = logging.getLogger(__name__)

KEYS = ("account_id", "snapshot_date")
# Never features: keys, the label and anything only known after the snapshot date.
LEAKY_COLUMNS = frozenset({"label", "label_observable", "churn_date", "p_churn_horizon"})
NON_FEATURES = frozenset({*KEYS, "health_tier", "is_scoring_date"})
BUNDLE_ARTIFACT = "bundle"
# One thread per predict call: requests are parallel at the process level, and OpenMP
# threads only spin on a busy 2-core machine (measured: 1 thread is as fast or faster).
PREDICT_THREADS = 1
# SHAP contributions of a large batch are split over the cores (the kernel drops the GIL).
CONTRIB_THREADS = max(1, min(2, os.cpu_count() or 1))
ShapMethod = Literal["auto", "lightgbm"]


@dataclass(frozen=True)
class FeatureSpec:
    """The model's input columns, in order, and the known categories of categorical ones."""

    names: tuple[str, ...]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @cached_property
    def codes(self) -> dict[str, dict[str, float]]:
        """category -> code lookups (missing or unknown values map to NaN)."""
        return {k: {v: float(i) for i, v in enumerate(vals)} for k, vals in self.categories.items()}

    @property
    def categorical(self) -> list[str]:
        return [n for n in self.names if n in self.categories]

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "categories": {k: list(v) for k, v in self.categories.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(
            names=tuple(d["names"]),
            categories={k: tuple(v) for k, v in d.get("categories", {}).items()},
        )


def select_features(features: pd.DataFrame, max_categories: int = 50) -> FeatureSpec:
    """Derive the feature list from the data: numeric/bool columns and low-cardinality strings.

    Keys, `health_tier` (a banding of `health_score`) and datetime columns are skipped;
    a label-like column in the features table is a leak upstream and stops the run.
    """
    leaky = sorted(LEAKY_COLUMNS & set(features.columns))
    if leaky:
        raise InputError(f"features table: column(s) {leaky} must never be features (leakage)")
    names: list[str] = []
    categories: dict[str, tuple[str, ...]] = {}
    for col in features.columns:
        if col in NON_FEATURES:
            continue
        s = features[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            names.append(col)
        elif pd.api.types.is_datetime64_any_dtype(s):
            log.info("skipping datetime column %s", col)
        else:
            values = sorted(str(v) for v in s.dropna().unique())
            if len(values) > max_categories:
                log.warning("skipping text column %s: %d distinct values", col, len(values))
                continue
            names.append(col)
            categories[col] = tuple(values)
    if not names:
        raise InputError("features table: no usable feature columns")
    return FeatureSpec(names=tuple(names), categories=categories)


def encode_features(X: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """A float matrix in `spec.names` order; categories become codes (unknown -> NaN)."""
    missing = [n for n in spec.names if n not in X.columns]
    if missing:
        raise InputError(
            f"feature rows: missing column(s) {missing[:10]}{' ...' if len(missing) > 10 else ''}"
        )
    out = np.empty((len(X), len(spec.names)), dtype=float)
    numeric = [j for j, n in enumerate(spec.names) if n not in spec.categories]
    cols = [spec.names[j] for j in numeric]
    block = X[cols]
    if all(pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t) for t in block.dtypes):
        out[:, numeric] = block.to_numpy(dtype=float, na_value=np.nan)
    else:  # the slow path names the offending column
        for j, name in zip(numeric, cols, strict=True):
            try:
                out[:, j] = pd.to_numeric(X[name], errors="raise").astype(float).to_numpy(na_value=np.nan)
            except (TypeError, ValueError) as exc:
                raise InputError(f"feature rows: column {name!r} must be numeric") from exc
    for j, name in enumerate(spec.names):
        if name in spec.categories:
            lookup = spec.codes[name]
            out[:, j] = [lookup.get(v if isinstance(v, str) else str(v), np.nan) for v in X[name].tolist()]
    return out


class ModelBundle:
    """A calibrated LightGBM churn model with its feature list and metadata."""

    def __init__(
        self,
        booster: lgb.Booster,
        calibrator: Calibrator,
        spec: FeatureSpec,
        *,
        trained_at: str,
        metrics: dict[str, float] | None = None,
        meta: dict[str, Any] | None = None,
        baselines: dict[str, Any] | None = None,
        version: str | None = None,
    ) -> None:
        self.booster = booster
        self.calibrator = calibrator
        self.spec = spec
        self.trained_at = trained_at
        self.metrics: dict[str, float] = dict(metrics or {})
        self.meta: dict[str, Any] = dict(meta or {})
        self.baselines: dict[str, Any] = dict(baselines or {})
        self.version = version or self.content_hash

    @property
    def feature_names(self) -> list[str]:
        return list(self.spec.names)

    @property
    def content_hash(self) -> str:
        """A short hash of what determines predictions (trees, calibrator, features)."""
        h = hashlib.sha256(self.booster.model_to_string().encode())
        h.update(json.dumps([self.calibrator.to_dict(), self.spec.to_dict()], sort_keys=True).encode())
        return "sha-" + h.hexdigest()[:12]

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        return encode_features(X, self.spec)

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated LightGBM probability."""
        return np.asarray(self.booster.predict(self.encode(X), num_threads=PREDICT_THREADS), dtype=float)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated P(churn within the horizon), one per row."""
        return self.calibrator.transform(self.predict_raw(X))

    @cached_property
    def feature_reference(self) -> dict[str, float]:
        """A typical value per numeric feature: the training median (all accounts, train months).

        Read from the logistic baseline's median imputer; empty when the bundle has none.
        Reasons compare an account's value with it when nothing better is at hand.
        """
        base = self.baselines.get("logistic")
        try:
            imputer: Any = base.pipeline.steps[0][1]  # type: ignore[union-attr]
            stats = np.asarray(imputer.statistics_, dtype=np.float64)
        except (AttributeError, IndexError, TypeError, ValueError):
            return {}
        out: dict[str, float] = {}
        k = 0
        for name in self.spec.names:
            if name in self.spec.categories:
                k += len(self.spec.categories[name])
                continue
            if k < len(stats) and np.isfinite(stats[k]):
                out[name] = float(stats[k])
            k += 1
        return out if k == len(stats) else {}

    @cached_property
    def shap_tables(self) -> treeshap.TreeTables | None:
        """Precomputed exact TreeSHAP tables (None: this model needs LightGBM's own TreeSHAP)."""
        tables = treeshap.build_tables(self.booster)
        if tables is None:
            log.info("model %s: using LightGBM pred_contrib for SHAP values", self.version)
        return tables

    def warm_up(self) -> None:
        """Build the SHAP tables and compile the kernel now, not on the first request."""
        tables = self.shap_tables
        if tables is not None:
            treeshap.contributions(tables, np.zeros((1, len(self.spec.names))))

    def contributions(
        self, X: pd.DataFrame, *, method: ShapMethod = "auto", threads: int | None = None
    ) -> np.ndarray:
        """Exact path-dependent TreeSHAP values in log-odds, shape (n, n_features + 1); last = bias.

        `auto` uses the table-driven kernel of `models.treeshap` (same values as LightGBM's
        `pred_contrib=True`, about 5x cheaper) when the model allows it, else LightGBM;
        `lightgbm` forces LightGBM. `threads` defaults to the cores, used for batches of
        at least 256 rows.
        """
        X_enc = self.encode(X)
        n_threads = threads if threads is not None else CONTRIB_THREADS
        tables = self.shap_tables if method == "auto" else None
        if tables is not None:
            return treeshap.contributions(tables, X_enc, threads=n_threads)
        return np.asarray(
            self.booster.predict(X_enc, pred_contrib=True, num_threads=PREDICT_THREADS), dtype=float
        )

    # --- persistence -------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write the bundle folder (the pyfunc model's artifact)."""
        path.mkdir(parents=True, exist_ok=True)
        (path / "booster.txt").write_text(self.booster.model_to_string(), encoding="utf-8")
        doc = {
            "spec": self.spec.to_dict(),
            "calibrator": self.calibrator.to_dict(),
            "trained_at": self.trained_at,
            "metrics": self.metrics,
            "meta": self.meta,
        }
        (path / "bundle.json").write_text(json.dumps(doc, indent=2, sort_keys=True, default=str), "utf-8")
        with (path / "baselines.pkl").open("wb") as fh:
            pickle.dump(self.baselines, fh)
        return path

    @classmethod
    def load_bundle_dir(cls, path: Path, version: str | None = None) -> ModelBundle:
        doc = json.loads((path / "bundle.json").read_text(encoding="utf-8"))
        booster = lgb.Booster(model_str=(path / "booster.txt").read_text(encoding="utf-8"))
        baselines: dict[str, Any] = {}
        if (path / "baselines.pkl").exists():
            with (path / "baselines.pkl").open("rb") as fh:
                baselines = pickle.load(fh)  # written by our own train stage
        return cls(
            booster,
            Calibrator.from_dict(doc["calibrator"]),
            FeatureSpec.from_dict(doc["spec"]),
            trained_at=doc["trained_at"],
            metrics=doc.get("metrics", {}),
            meta=doc.get("meta", {}),
            baselines=baselines,
            version=version,
        )

    @classmethod
    def load(cls, path: Path) -> ModelBundle:
        """Load from an MLflow pyfunc directory (e.g. `artifacts/model`) or a bare bundle folder."""
        path = Path(path)
        if (path / "bundle.json").exists():
            return cls.load_bundle_dir(path)
        mlmodel = path / "MLmodel"
        if not mlmodel.exists():
            raise InputError(f"{path}: not a model directory (no MLmodel or bundle.json)")
        conf = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
        artifacts = conf.get("flavors", {}).get("python_function", {}).get("artifacts", {})
        rel = artifacts.get(BUNDLE_ARTIFACT, {}).get("path")
        if rel is None:
            raise InputError(f"{mlmodel}: no '{BUNDLE_ARTIFACT}' artifact; not a churnguard model")
        return cls.load_bundle_dir(path / rel)


def load_from_registry(tracking_uri: str, name: str = "churnguard", alias: str = "champion") -> ModelBundle:
    """Load the registered model version that holds `alias` (version = registry version)."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    mv = client.get_model_version_by_alias(name, alias)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}"))
    bundle = ModelBundle.load(local)
    bundle.version = str(mv.version)
    return bundle
