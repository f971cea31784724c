"""Score stage: the current at-risk list for every account active at the data's end date.

Writes `latest.parquet`, `latest.csv` (for a spreadsheet) and appends to `history.parquet`
in the output folder. The latest files end with a `currency` column (`features.currency`:
the unit of `arr` and `expected_arr_lost`); the history holds no money, so no currency.
Files are written to a temporary name and renamed, so a service polling the folder never
reads half a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnguard.errors import InputError
from churnguard.params import DEFAULT_PARAMS, load_currency, load_section
from churnguard.scores import (
    TOP_REASONS,
    ScoreParams,
    append_history,
    build_scores,
    reasons_from_explanations,
    split_history,
)
from churnguard.stage import run_stage

log = logging.getLogger(__name__)

LATEST = "latest.parquet"
LATEST_CSV = "latest.csv"
HISTORY = "history.parquet"
FEAT_SUFFIX = "_feat"


def _read(path: Path, what: str) -> pd.DataFrame:
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    return pd.read_parquet(path)


def _require(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")


def scoring_rows(
    features: pd.DataFrame, snapshots: pd.DataFrame, accounts: pd.DataFrame | None
) -> pd.DataFrame:
    """Snapshot rows flagged `is_scoring_date`, joined with their features and account names."""
    snap = snapshots.loc[snapshots["is_scoring_date"].astype(bool)]
    # A column in both keeps the snapshot's value for display; the model reads `<name>_feat`.
    rows = snap.merge(
        features, on=["account_id", "snapshot_date"], how="left", validate="1:1", suffixes=("", FEAT_SUFFIX)
    )
    if accounts is not None and "name" in accounts.columns:
        names = accounts.loc[:, ["account_id", "name"]].drop_duplicates("account_id")
        rows = rows.merge(names, on="account_id", how="left", validate="m:1")
    if "segment" not in rows.columns and accounts is not None and "segment" in accounts.columns:
        rows = rows.merge(accounts.loc[:, ["account_id", "segment"]], on="account_id", how="left")
    return rows.reset_index(drop=True)


def model_inputs(rows: pd.DataFrame, feature_names: list[str], source: Path) -> pd.DataFrame:
    """The model's input columns as the features table holds them (the bundle encodes them)."""
    columns = {}
    for name in feature_names:
        col = name + FEAT_SUFFIX if name + FEAT_SUFFIX in rows.columns else name
        if col not in rows.columns:
            raise InputError(f"{source}: missing model feature column {name!r}")
        columns[name] = rows[col]
    return pd.DataFrame(columns, index=rows.index)


def load_bundle(path: Path) -> Any:
    """The model bundle (an MLflow pyfunc dir written by the train stage)."""
    from models.bundle import ModelBundle

    return ModelBundle.load(path)


def explain(bundle: Any, X: pd.DataFrame, top_n: int) -> list[list[Any]]:
    """Reasons for rows the explain stage did not cover."""
    from models.reasons import explain_rows

    return explain_rows(bundle, X, top_n=top_n)


def _fill_missing_reasons(
    bundle: Any, rows: pd.DataFrame, X: pd.DataFrame, reasons: dict[str, list[dict]]
) -> None:
    """Explain accounts the explain stage did not cover (e.g. explanations from another date)."""
    todo = [i for i, a in enumerate(rows["account_id"].astype(str)) if a not in reasons]
    if not todo:
        return
    log.info("explaining %d accounts missing from the explanations file", len(todo))
    for i, row_reasons in zip(todo, explain(bundle, X.iloc[todo], TOP_REASONS), strict=True):
        reasons[str(rows.at[i, "account_id"])] = [
            {
                "text": r.text,
                "family": r.family,
                "action": r.action,
                "playbook_id": r.playbook_id,
                "feature": r.feature,
                "value": None if r.value is None or not np.isfinite(r.value) else float(r.value),
                "shap": float(r.shap),
            }
            for r in row_reasons
        ]


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def run(
    *,
    model: Path,
    features: Path,
    snapshots: Path,
    explanations: Path,
    accounts: Path | None,
    out: Path,
    params: ScoreParams,
    currency: str,
    scored_at: pd.Timestamp | None = None,
) -> dict[str, Any]:
    """Score active accounts, write latest + CSV + history; return a summary."""
    feats = _read(features, "features")
    snaps = _read(snapshots, "snapshots")
    _require(snaps, ["account_id", "snapshot_date", "is_scoring_date", "arr"], snapshots)
    _require(feats, ["account_id", "snapshot_date"], features)
    accts = pd.read_parquet(accounts) if accounts is not None and accounts.exists() else None
    bundle = load_bundle(model)
    rows = scoring_rows(feats, snaps, accts)
    if rows.empty:
        raise InputError(f"{snapshots}: no rows with is_scoring_date — nothing to score")
    X = model_inputs(rows, list(bundle.feature_names), features)
    risk = np.asarray(bundle.predict_proba(X), dtype=float)

    exp = pd.read_parquet(explanations) if explanations.exists() else pd.DataFrame()
    if not exp.empty:
        exp = exp.loc[exp["snapshot_date"].isin(rows["snapshot_date"].unique())]
    reasons = reasons_from_explanations(exp)
    _fill_missing_reasons(bundle, rows, X, reasons)

    out.mkdir(parents=True, exist_ok=True)
    history_path = out / HISTORY
    history = pd.read_parquet(history_path) if history_path.exists() else None
    snapshot_date = pd.Timestamp(rows["snapshot_date"].max())
    kept = split_history(history, snapshot_date, bundle.version)
    now = scored_at if scored_at is not None else pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    latest = build_scores(
        rows,
        risk,
        reasons,
        kept,
        tiers=params.tiers,
        model_version=bundle.version,
        scored_at=now,
        currency=currency,
    )
    latest["scored_at"] = latest["scored_at"].astype("datetime64[us]")
    new_history = append_history(kept, latest)

    _write_atomic(out / LATEST, lambda p: latest.to_parquet(p, index=False))
    csv = latest.drop(columns=["reasons"])
    _write_atomic(out / LATEST_CSV, lambda p: csv.to_csv(p, index=False, encoding="utf-8-sig"))
    _write_atomic(history_path, lambda p: new_history.to_parquet(p, index=False))
    summary = {
        "accounts": len(latest),
        "snapshot_date": snapshot_date.date().isoformat(),
        "model_version": bundle.version,
        "high": int((latest["risk_tier"] == "high").sum()),
        "medium": int((latest["risk_tier"] == "medium").sum()),
        "expected_arr_lost": float(np.nansum(latest["expected_arr_lost"])),
        "currency": currency,
        "history_rows": len(new_history),
    }
    log.info("scored %s", json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--snapshots", type=Path, required=True)
    parser.add_argument("--explanations", type=Path, required=True)
    parser.add_argument("--accounts", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = load_section("score", ScoreParams, args.params)
    run(
        model=args.model,
        features=args.features,
        snapshots=args.snapshots,
        explanations=args.explanations,
        accounts=args.accounts,
        out=args.out,
        params=params,
        currency=load_currency(args.params),
    )


def read_scores(scores_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The latest scores and the score history written by `run` (history may be empty)."""
    latest_path = scores_dir / LATEST
    if not latest_path.exists():
        raise InputError(f"{latest_path}: no scores yet (run `dvc repro score`)")
    history_path = scores_dir / HISTORY
    history = pd.read_parquet(history_path) if history_path.exists() else pd.DataFrame()
    return pd.read_parquet(latest_path), history


if __name__ == "__main__":
    run_stage(main)
