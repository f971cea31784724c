"""Benchmark: rows/s for calibrated predict, SHAP contributions and reasons, vs raw LightGBM predict.

    python bench/bench_explain.py [--model artifacts/model --features data/features.parquet] [--rows N]

SHAP is timed both ways in the same run: LightGBM's `pred_contrib=True` and the exact
table-driven kernel of `models.treeshap` (1 thread and the default threads); the two are
checked equal first. Each figure is the best of `--repeat` runs, with the process CPU time
(all threads) of that run, because other engineers load the machine.

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

from models.bundle import CONTRIB_THREADS, PREDICT_THREADS, ModelBundle
from models.reasons import explain_rows, reasons_from_contributions


def _rate(fn: Callable[[], object], rows: int, repeat: int = 3) -> tuple[float, float]:
    """(rows per wall second, CPU ms per 1,000 rows) of the fastest of `repeat` runs."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        wall = time.perf_counter() - start
        if wall < best:
            best, best_cpu = wall, time.process_time() - cpu
    return rows / best, best_cpu / rows * 1e6


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
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bundle, features, source = _load(args.model, args.features)
    rng = np.random.default_rng(0)
    X = features.iloc[rng.integers(0, len(features), args.rows)][bundle.feature_names].reset_index(drop=True)
    n = len(X)
    enc = bundle.encode(X)
    contrib = bundle.contributions(X)
    trees = bundle.booster.num_trees()
    print(f"model {bundle.version}: {trees} trees, {len(bundle.feature_names)} features; {source}; {n} rows")

    bundle.warm_up()
    exact = bundle.contributions(X.head(500), method="lightgbm")
    assert np.allclose(bundle.contributions(X.head(500)), exact, atol=1e-9), "kernel differs from LightGBM"
    kernel = "table kernel" if bundle.shap_tables is not None else "LightGBM fallback"
    r = args.repeat
    base, base_cpu = _rate(lambda: bundle.booster.predict(enc, num_threads=PREDICT_THREADS), n, r)
    figures = {
        "lightgbm predict (encoded matrix, baseline)": (base, base_cpu),
        "bundle.predict_proba (encode + predict + calibrate)": _rate(lambda: bundle.predict_proba(X), n, r),
        "SHAP: LightGBM pred_contrib, 1 thread": _rate(
            lambda: bundle.contributions(X, method="lightgbm"), n, r
        ),
        f"SHAP: {kernel}, 1 thread": _rate(lambda: bundle.contributions(X, threads=1), n, r),
        f"SHAP: {kernel}, {CONTRIB_THREADS} threads": _rate(lambda: bundle.contributions(X), n, r),
        "reasons from contributions (top 3, en)": _rate(
            lambda: reasons_from_contributions(
                X, bundle.feature_names, contrib, reference=bundle.feature_reference
            ),
            n,
            r,
        ),
        "explain_rows (SHAP + top-3 reasons, en)": _rate(lambda: explain_rows(bundle, X), n, r),
    }
    print(f"{'':55s} {'rows/s':>12}  {'x baseline':>10}  {'CPU ms/1k rows':>14}")
    for name, (rate, cpu) in figures.items():
        print(f"{name:55s} {rate:>12,.0f}  {rate / base:10.3f}  {cpu:14.1f}")
    one = X.iloc[[0]]
    print(f"single row p50: predict_proba {_p50_ms(lambda: bundle.predict_proba(one)):.2f} ms, "
          f"explain_rows {_p50_ms(lambda: explain_rows(bundle, one), n=50):.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
