"""Benchmark: rows/s for calibrated predict, SHAP contributions and reasons, vs raw LightGBM predict.

    python bench/bench_explain.py [--model artifacts/model --features data/features.parquet] [--rows N]

Uses the pipeline's model and features when they exist (the default company after
`dvc repro`), otherwise a model trained on a synthetic company. The baseline is the bare
`booster.predict` on an already-encoded matrix, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from models.bundle import PREDICT_THREADS, ModelBundle
from models.reasons import explain_rows


def _rate(fn: Callable[[], object], rows: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return rows / best


def _p50_ms(fn: Callable[[], object], n: int = 200) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _load(model: Path, features: Path) -> tuple[ModelBundle, pd.DataFrame, str]:
    if (model / "MLmodel").exists() and features.exists():
        return ModelBundle.load(model), pd.read_parquet(features), f"{model} on {features}"
    from models.synthetic import fit_synthetic_bundle

    result, frame = fit_synthetic_bundle(2000, 14, seed=0)
    return result.bundle, frame, "synthetic company (2000 accounts)"  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("artifacts/model"))
    parser.add_argument("--features", type=Path, default=Path("data/features.parquet"))
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    bundle, features, source = _load(args.model, args.features)
    rng = np.random.default_rng(0)
    X = features.iloc[rng.integers(0, len(features), args.rows)][bundle.feature_names].reset_index(drop=True)
    n = len(X)
    enc = bundle.encode(X)
    trees = bundle.booster.num_trees()
    print(f"model {bundle.version}: {trees} trees, {len(bundle.feature_names)} features; {source}; {n} rows")

    base = _rate(lambda: bundle.booster.predict(enc, num_threads=PREDICT_THREADS), n)
    figures = {
        "lightgbm predict (encoded matrix, baseline)": base,
        "bundle.predict_proba (encode + predict + calibrate)": _rate(lambda: bundle.predict_proba(X), n),
        "bundle.contributions (TreeSHAP via pred_contrib)": _rate(
            lambda: bundle.contributions(X), n, repeat=1
        ),
        "explain_rows (contributions + top-3 reasons, en)": _rate(
            lambda: explain_rows(bundle, X), n, repeat=1
        ),
    }
    for name, rate in figures.items():
        print(f"{name:55s} {rate:>12,.0f} rows/s   {rate / base:8.3f} x baseline")
    one = X.iloc[[0]]
    print(f"single row p50: predict_proba {_p50_ms(lambda: bundle.predict_proba(one)):.2f} ms, "
          f"explain_rows {_p50_ms(lambda: explain_rows(bundle, one), n=50):.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
