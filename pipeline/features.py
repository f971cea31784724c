"""Stage `features`: point-in-time features, the health score and the text model.

Reads the validated tables and the snapshots, fits the feature stage's only learnt
parts (core events when inferred, the comment sentiment model) on the training months,
and writes the feature table, the versioned text-model artefact and a metrics file.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard.errors import InputError
from churnguard.params import DEFAULT_PARAMS, load_section
from churnguard.stage import run_stage
from features.build import FeatureParams, FittedState, build_features, describe, dumps, fit_feature_state
from features.engine import Engine
from features.health import HealthParams
from features.snapshots import SnapshotParams
from features.text import detect_language, evaluate_text_model
from features.usage import plan_event_batches, prepare_event_aggregates, raw_event_source
from models.split import SplitParams, train_cutoff
from pipeline.snapshots import events_glob, read_clean

log = logging.getLogger(__name__)

OPTIONAL = ("subscriptions", "users", "tickets", "surveys")


def read_tables(validated: Path) -> dict[str, pd.DataFrame | None]:
    """The clean tables (None for absent optional ones); accounts is required."""
    tables: dict[str, pd.DataFrame | None] = {"accounts": read_clean(validated, "accounts")}
    if tables["accounts"] is None:
        raise InputError(f"{validated}/accounts.parquet: required table not found")
    for name in OPTIONAL:
        tables[name] = read_clean(validated, name)
    return tables


def choose_cutoff(snaps: pd.DataFrame, split: SplitParams, embargo_days: int = 0) -> pd.Timestamp:
    """The train cut-off: the model's first validation snapshot date (models/split.py), with the
    same embargo (snapshots.lead_days + horizon_days) as the train stage."""
    labelled = snaps.loc[snaps["label_observable"], "snapshot_date"]
    try:
        return train_cutoff(labelled, split.test_months, split.valid_months, embargo_days)
    except InputError as exc:
        first = pd.Timestamp(snaps["snapshot_date"].min())
        log.warning("%s; fitting the text model only on data before the first snapshot %s", exc, first)
        return first


def text_metrics(state: FittedState, surveys: pd.DataFrame | None, cutoff: pd.Timestamp) -> dict[str, Any]:
    """Languages detected over all comments and the text model's held-out quality."""
    if surveys is None or "comment" not in surveys:
        return {"languages": {}, "text_model": {"fitted": False}}
    langs = surveys["comment"].map(detect_language).dropna().value_counts()
    after = surveys[surveys["submitted_at"] >= cutoff]
    nps = after["nps"] if "nps" in after else pd.Series(float("nan"), index=after.index)
    meta = state.text_model.metadata
    return {
        "languages": {str(k): int(v) for k, v in langs.items()},
        "text_model": {
            "fitted": state.text_model.fitted,
            "version": meta.get("version"),
            "fit_cutoff": meta.get("fit_cutoff"),
            "n_comments": meta.get("n_comments"),
            "heldout": evaluate_text_model(state.text_model, after["comment"], nps),
        },
    }


def run(
    *,
    validated: Path,
    snapshots: Path,
    out: Path,
    text_model: Path,
    metrics: Path,
    params: FeatureParams,
    health: HealthParams,
    split: SplitParams,
    embargo_days: int = 0,
) -> pd.DataFrame:
    """Build and write features, the text-model artefact and the metrics file.

    Fitted parts (core events, the text model) see data before the train cut-off only;
    `embargo_days` as in `models.train` so that the cut-off is the model's own.
    """
    snaps = pd.read_parquet(snapshots)
    tables = read_tables(validated)
    cutoff = choose_cutoff(snaps, split, embargo_days)
    engine = Engine(
        threads=params.engine.threads,
        memory_limit=params.engine.memory_limit,
        temp_directory=params.engine.temp_directory,
    )
    try:
        glob = events_glob(validated)
        files = sorted(str(p) for p in Path(glob).parent.glob(Path(glob).name))
        plan = plan_event_batches(engine, files, params.engine.batch_rows)
        if plan is None:
            prepare_event_aggregates(engine, engine.dialect.parquet(glob))
            state = fit_feature_state(engine, tables.get("surveys"), cutoff, params)
            features = build_features(engine, snaps, tables, params, health, state)
        else:
            log.info("usage features in %d account batch(es) over %d file(s)", len(plan), len(files))
            source = raw_event_source(engine.dialect.parquet(glob))
            state = fit_feature_state(engine, tables.get("surveys"), cutoff, params, source)
            batches = [(engine.dialect.parquet_files(fs), accounts) for fs, accounts in plan]
            features = build_features(engine, snaps, tables, params, health, state, batches)
    finally:
        engine.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    features.to_parquet(out, index=False)
    state.save(text_model)
    summary = describe(features)
    summary.update(text_metrics(state, tables.get("surveys"), cutoff))
    summary["core_events"] = state.core_events
    summary["core_events_source"] = state.info.get("core_events_source")
    summary["train_cutoff"] = cutoff.isoformat()
    summary["tables_present"] = sorted(k for k, v in tables.items() if v is not None)
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(dumps(summary), encoding="utf-8")
    log.info("features: %s", json.dumps({k: summary[k] for k in ("rows", "feature_count", "languages")}))
    return features


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--validated", type=Path, required=True)
    parser.add_argument("--snapshots", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--text-model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    window = load_section("snapshots", SnapshotParams, args.params)
    run(
        validated=args.validated,
        snapshots=args.snapshots,
        out=args.out,
        text_model=args.text_model,
        metrics=args.metrics,
        params=load_section("features", FeatureParams, args.params),
        health=load_section("health", HealthParams, args.params),
        split=load_section("split", SplitParams, args.params),
        embargo_days=window.lead_days + window.horizon_days,
    )


if __name__ == "__main__":
    run_stage(main)
