"""Stage `train`: LightGBM + calibration + baselines, tracked in MLflow, behind a promotion gate.

    python -m pipeline.train --features F --snapshots S --validation-report R \
        --model-out artifacts/model --summary artifacts/train_summary.json [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from churnguard.params import DEFAULT_PARAMS, load_section
from churnguard.stage import run_stage
from features.snapshots import SnapshotParams
from models.bundle import select_features
from models.config import SplitParams, TrainParams
from models.explain import mean_abs_shap
from models.plots import CURVES, beeswarm_png, curves_png, importance_png
from models.registry import (
    apply_decision,
    comparison_window,
    current_champion,
    decide_promotion,
    example_frame,
    file_md5,
    git_commit,
    log_pyfunc,
    save_pyfunc,
    tracking_uri,
)
from models.split import EMBARGO, TEST, TRAIN, VALID
from models.train import LABEL, TrainResult, join_snapshots, score_all, train_model

log = logging.getLogger(__name__)


def _flatten(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(key, v))
        else:
            out[key] = v
    return out


def _log_artifacts(result: TrainResult, frame: pd.DataFrame, validation_report: Path, tmp: Path) -> None:
    """Plots, SHAP summary, feature importance, search trials and the validation report."""
    bundle = result.bundle
    test = frame.loc[(result.parts == TEST).fillna(False).astype(bool)]
    if len(test) and test[LABEL].nunique() == 2:
        y = test[LABEL].to_numpy(dtype=float)
        scores = {"model": bundle.predict_proba(test)}
        scores.update({n: b.predict_proba(test) for n, b in bundle.baselines.items()})
        for key, (fn, x, yname, title) in CURVES.items():
            curves = {n: fn(y, p) for n, p in scores.items()}
            mlflow.log_artifact(str(curves_png(curves, x, yname, title, tmp / f"{key}.png")), "plots")
    sample = test if len(test) else frame.loc[(result.parts == TRAIN).fillna(False).astype(bool)]
    contrib = bundle.contributions(sample)
    shap_global = mean_abs_shap(contrib, bundle.feature_names)
    mlflow.log_dict({str(k): float(v) for k, v in shap_global.items()}, "shap/mean_abs_shap.json")
    beeswarm_png(contrib[:, :-1], bundle.encode(sample), bundle.feature_names, tmp / "shap_summary.png")
    mlflow.log_artifact(str(tmp / "shap_summary.png"), "shap")
    gain = pd.Series(
        bundle.booster.feature_importance("gain"), index=bundle.feature_names, name="gain"
    ).sort_values(ascending=False)
    mlflow.log_dict({str(k): float(v) for k, v in gain.items()}, "feature_importance/gain.json")
    importance_png(gain, "Feature importance (gain)", tmp / "feature_importance.png")
    mlflow.log_artifact(str(tmp / "feature_importance.png"), "feature_importance")
    mlflow.log_dict({"trials": result.trials, "best_params": result.best_params}, "search/trials.json")
    if validation_report.is_file():
        mlflow.log_artifact(str(validation_report), "data")


def run(
    *,
    features_path: Path,
    snapshots_path: Path,
    validation_report: Path,
    model_out: Path,
    summary_path: Path,
    params: TrainParams,
    split: SplitParams,
    snapshots: SnapshotParams | None = None,
    top_k: int | None = None,
) -> dict[str, Any]:
    """Train, log to MLflow, register, apply the gate; write the local model and summary.

    `snapshots` gives the label window (horizon_days, lead_days) used to purge training
    rows whose labels overlap the validation / test months (defaults when None).
    """
    window = snapshots or SnapshotParams()
    features = pd.read_parquet(features_path)
    frame = join_snapshots(features, pd.read_parquet(snapshots_path))
    spec = select_features(features, params.max_categories)
    log.info("training on %d feature columns (%d categorical)", len(spec.names), len(spec.categorical))
    trained_at = datetime.now(UTC).isoformat(timespec="seconds")
    result = train_model(
        frame, spec, params, split, trained_at=trained_at, top_k=top_k,
        horizon_days=window.horizon_days, lead_days=window.lead_days,
    )  # fmt: skip
    bundle = result.bundle
    example = example_frame(bundle, frame.loc[(result.parts == TRAIN).fillna(False).astype(bool)])
    save_pyfunc(bundle, model_out, example)

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mlflow.set_experiment(params.experiment)
    data_version = {
        "features_md5": file_md5(features_path),
        "snapshots_md5": file_md5(snapshots_path),
        "validation_report_md5": file_md5(validation_report),
    }
    test_mask = (result.parts == TEST).fillna(False).astype(bool)
    with mlflow.start_run() as active, tempfile.TemporaryDirectory() as tmpdir:
        mlflow.log_params(_flatten("train", params.model_dump(mode="json")))
        mlflow.log_params(_flatten("split", split.model_dump()))
        mlflow.log_params({f"best.{k}": v for k, v in result.best_params.items()})
        mlflow.log_params({f"purge.{k}": v for k, v in result.purge.items()})
        mlflow.log_params({f"calibration.{k}": v for k, v in result.calibration.items()})
        mlflow.log_params({"n_features": len(spec.names), "best_iteration": result.best_iteration})
        mlflow.log_metric("search.best_valid_roc_auc", result.best_valid_roc_auc)
        mlflow.set_tags({"git_commit": git_commit(), "bundle_version": bundle.version,
                         **{f"data.{k}": str(v) for k, v in data_version.items()}})  # fmt: skip
        for part, by_scorer in result.metrics.items():
            for scorer, ms in by_scorer.items():
                mlflow.log_metrics({f"{part}.{scorer}.{k}": v for k, v in ms.items() if pd.notna(v)})
        _log_artifacts(result, frame, validation_report, Path(tmpdir))
        champion = current_champion(client, params.model_name)
        model_uri, version = log_pyfunc(bundle, example, params.model_name)
        champ_metrics, new_on_window, window_used = None, None, None
        if champion is not None:
            # Compare only on the test months the champion saw no label of: where it was
            # fitted, early-stopped or calibrated on their churn, its figures are in-sample.
            window_used = comparison_window(
                frame.loc[test_mask, "snapshot_date"].unique(), champion[1].meta,
                window.horizon_days, window.lead_days,
            )  # fmt: skip
            dates = pd.to_datetime(pd.Series(window_used.dates, dtype="object"))
            rows = frame.loc[test_mask & frame["snapshot_date"].isin(dates)]
            new_on_window = score_all(bundle, rows, top_k=top_k, baselines=False)["model"]
            # The champion may use other features: absent ones are scored as missing.
            columns = list(dict.fromkeys([*frame.columns, *champion[1].feature_names]))
            try:
                champ_rows = rows.reindex(columns=columns)
                champ_metrics = score_all(champion[1], champ_rows, top_k=top_k, baselines=False)["model"]
            except Exception:  # an unreadable old champion must not block a new model
                log.exception("champion v%s cannot be scored on this test window", champion[0])
                champ_metrics = {}
        decision = decide_promotion(
            result.metrics.get(TEST, {}).get("model", {}), champ_metrics, params.gate,
            champion[0] if champion else None, new_on_window=new_on_window, window=window_used,
        )  # fmt: skip
        apply_decision(client, params.model_name, version, decision)
        mlflow.set_tags({"gate.alias": decision.alias, "gate.reason": decision.reason})
        mlflow.log_dict(decision.to_dict(), "gate/decision.json")
        log.info("model v%s -> %s (%s)", version, decision.alias, decision.reason)
        summary = {
            "run_id": active.info.run_id,
            "experiment_id": active.info.experiment_id,
            "tracking_uri": uri,
            "model_name": params.model_name,
            "model_uri": model_uri,
            "model_version": version,
            "bundle_version": bundle.version,
            "trained_at": trained_at,
            "alias": decision.alias,
            "promoted": decision.promoted,
            "gate": decision.to_dict(),
            "split_dates": result.split_dates,
            "rows": {p: int((result.parts == p).sum()) for p in (TRAIN, VALID, EMBARGO, TEST)},
            "purge": result.purge,
            "calibration": result.calibration,
            "best_valid_roc_auc": result.best_valid_roc_auc,
            "n_features": len(spec.names),
            "best_params": result.best_params,
            "best_iteration": result.best_iteration,
            "metrics": result.metrics,
            "data_version": data_version,
        }
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--snapshots", type=Path, required=True)
    parser.add_argument("--validation-report", type=Path, required=True)
    parser.add_argument("--model-out", type=Path, required=True)
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = run(
        features_path=args.features,
        snapshots_path=args.snapshots,
        validation_report=args.validation_report,
        model_out=args.model_out,
        summary_path=args.summary,
        params=load_section("train", TrainParams, args.params),
        split=load_section("split", SplitParams, args.params),
        snapshots=load_section("snapshots", SnapshotParams, args.params),
    )
    print(f"trained model v{summary['model_version']} ({summary['bundle_version']}): {summary['alias']} — "
          f"{summary['gate']['reason']}")  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
