"""Stage `evaluate`: test-month metrics for the model and its baselines, DVC metrics and plots.

    python -m pipeline.evaluate --model artifacts/model --features F --snapshots S \
        --sim-truth data/sim_truth --metrics metrics/evaluate.json --plots plots [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard.errors import InputError
from churnguard.params import DEFAULT_PARAMS, load_section
from churnguard.stage import run_stage
from models.bundle import ModelBundle
from models.config import EvaluateParams, SplitParams
from models.evaluate import evaluate_test
from models.plots import CURVES, curves_png
from models.split import TEST
from models.train import assign_parts, join_snapshots

log = logging.getLogger(__name__)


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf become null, numbers rounded for stable diffs."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else round(obj, 6)
    return obj


def run(
    *,
    model: Path,
    features_path: Path,
    snapshots_path: Path,
    sim_truth: Path | None,
    metrics_path: Path,
    plots_dir: Path,
    params: EvaluateParams,
    split: SplitParams,
) -> dict[str, Any]:
    """Score the test months; write the metrics JSON, curve JSONs and PNGs."""
    bundle = ModelBundle.load(model)
    frame = join_snapshots(pd.read_parquet(features_path), pd.read_parquet(snapshots_path))
    parts = assign_parts(frame, split)
    test = frame.loc[(parts == TEST).fillna(False).astype(bool)]
    if test.empty:
        raise InputError(f"{snapshots_path}: no labelled rows in the test months")
    trained_test = bundle.meta.get("split_dates", {}).get("test")
    current = sorted(str(d.date()) for d in pd.to_datetime(test["snapshot_date"]).unique())
    if trained_test is not None and trained_test != current:
        # Another split could put rows the model was fitted or calibrated on into "test".
        raise InputError(
            f"{snapshots_path}: test months {current} differ from the model's own split "
            f"{trained_test}; retrain (dvc repro train) before evaluating"
        )
    oracle = None
    if sim_truth is not None and (sim_truth / "oracle.parquet").is_file():
        oracle = pd.read_parquet(sim_truth / "oracle.parquet")
    metrics, curves = evaluate_test(bundle, test, params.top_k, oracle)
    metrics["model"] = {"version": bundle.version, "n_features": len(bundle.feature_names)}
    # Model and baselines were fitted on the same purged rows (models.split.purge_overlapping);
    # `embargo` rows (label windows reaching the test months) were never used at all.
    purged = bundle.meta.get("purged")
    if purged is not None:
        metrics["model"].update({f"purged_{k}_rows": int(v) for k, v in purged.items()})
    calibration = bundle.meta.get("calibration")
    if calibration is not None:
        metrics["model"]["calibration_rows"] = int(calibration["rows"])
        metrics["model"]["calibration_fitted_on"] = str(calibration["fitted_on"])
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(_clean(metrics), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    plots_dir.mkdir(parents=True, exist_ok=True)
    for key, by_scorer in curves.items():
        _, x, y, title = CURVES[key]
        for scorer, points in by_scorer.items():
            records = _clean({"rows": points.to_dict(orient="records")})["rows"]
            (plots_dir / f"{key}_{scorer}.json").write_text(json.dumps(records), encoding="utf-8")
        curves_png(by_scorer, x, y, title, plots_dir / f"{key}.png")
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.evaluate", description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--snapshots", type=Path, required=True)
    parser.add_argument("--sim-truth", type=Path, default=None)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = run(
        model=args.model,
        features_path=args.features,
        snapshots_path=args.snapshots,
        sim_truth=args.sim_truth,
        metrics_path=args.metrics,
        plots_dir=args.plots,
        params=load_section("evaluate", EvaluateParams, args.params),
        split=load_section("split", SplitParams, args.params),
    )
    t = metrics["test"]
    base = ", ".join(f"{n} {m.get('roc_auc', float('nan')):.3f}" for n, m in metrics["baselines"].items())
    oracle = f", oracle {t['oracle_roc_auc']:.3f}" if "oracle_roc_auc" in t else ""
    auc, ece = t.get("roc_auc", float("nan")), t.get("ece", float("nan"))
    print(f"test roc_auc {auc:.3f} (baselines: {base}{oracle}), ece {ece:.3f}")


if __name__ == "__main__":
    run_stage(main)
