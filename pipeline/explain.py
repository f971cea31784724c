"""Stage `explain`: SHAP contributions, global importance and per-account reasons with playbooks.

    python -m pipeline.explain --model artifacts/model --features F --snapshots S \
        --out data/explanations.parquet --global-metrics metrics/shap_global.json \
        --plots plots_explain [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard.errors import InputError
from churnguard.params import DEFAULT_PARAMS, load_section
from churnguard.stage import run_stage
from models.bundle import ModelBundle
from models.config import ExplainParams
from models.explain import explanations_frame, mean_abs_shap
from models.plots import beeswarm_png, importance_png
from models.reasons import load_playbooks, reasons_from_contributions
from models.train import SCORING, join_snapshots

log = logging.getLogger(__name__)


def run(
    *,
    model: Path,
    features_path: Path,
    snapshots_path: Path,
    out: Path,
    global_metrics: Path,
    plots_dir: Path,
    params: ExplainParams,
) -> dict[str, Any]:
    """Explain the scoring-date rows; write explanations, global SHAP metrics and plots."""
    bundle = ModelBundle.load(model)
    frame = join_snapshots(pd.read_parquet(features_path), pd.read_parquet(snapshots_path))
    rows = frame.loc[frame[SCORING]].reset_index(drop=True)
    if rows.empty:
        raise InputError(f"{snapshots_path}: no rows with is_scoring_date")
    start = time.perf_counter()
    contrib = bundle.contributions(rows)
    reasons = reasons_from_contributions(
        rows,
        bundle.feature_names,
        contrib,
        top_n=params.top_reasons,
        language=params.language,
        reference=bundle.feature_reference,
    )
    elapsed = time.perf_counter() - start
    explanations = explanations_frame(rows, reasons)
    out.parent.mkdir(parents=True, exist_ok=True)
    explanations.to_parquet(out, index=False)
    shap_global = mean_abs_shap(contrib, bundle.feature_names)
    doc = {
        "n_rows": len(rows),
        "rows_per_second": round(len(rows) / elapsed, 1) if elapsed > 0 else None,
        "playbook_version": str(load_playbooks()["version"]),
        "mean_abs_shap": {str(k): round(float(v), 6) for k, v in shap_global.items()},
        "reason_families": {str(k): int(v) for k, v in explanations["reason_family"].value_counts().items()},
    }
    global_metrics.parent.mkdir(parents=True, exist_ok=True)
    global_metrics.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    plots_dir.mkdir(parents=True, exist_ok=True)
    beeswarm_png(contrib[:, :-1], bundle.encode(rows), bundle.feature_names, plots_dir / "shap_summary.png")
    importance_png(shap_global, "Mean |SHAP| (scoring date)", plots_dir / "shap_importance.png")
    log.info("explained %d accounts in %.2fs", len(rows), elapsed)
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.explain", description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--snapshots", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--global-metrics", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    doc = run(
        model=args.model,
        features_path=args.features,
        snapshots_path=args.snapshots,
        out=args.out,
        global_metrics=args.global_metrics,
        plots_dir=args.plots,
        params=load_section("explain", ExplainParams, args.params),
    )
    top = ", ".join(list(doc["mean_abs_shap"])[:3])
    print(f"explained {doc['n_rows']} accounts; top features: {top}")


if __name__ == "__main__":
    run_stage(main)
