"""Stage `report`: retention metrics, model monitoring (drift, backtest, retrain advice), HTML report.

Writes the report metrics (DVC metrics JSON), the monitoring JSON read by the service's
`GET /v1/monitoring`, and a self-contained HTML report. A missing score history or
model (first run) and a missing subscriptions table (activity definition) are stated
in the outputs, never a crash. Definitions: docs/retention.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from churnguard.errors import InputError
from churnguard.params import DEFAULT_PARAMS, Section, load_currency, load_section, read_params
from churnguard.stage import run_stage
from features import retention
from models import monitoring as mon

log = logging.getLogger(__name__)

KEYS = ["account_id", "snapshot_date"]
# Columns of the features table that are never model inputs, used when no model is present.
_NOT_FEATURES = {"account_id", "snapshot_date", "health_tier", "is_scoring_date", "label", "label_observable"}


class RetrainParams(Section):
    """When the report recommends retraining."""

    max_psi_share: Annotated[float, Field(ge=0, le=1)] = 0.2
    min_backtest_auc: Annotated[float, Field(ge=0, le=1)] = 0.7
    max_backtest_ece: Annotated[float, Field(ge=0, le=1)] = 0.1
    max_score_psi: Annotated[float, Field(ge=0)] = 0.25


class ReportParams(Section):
    """params.yaml `report` section."""

    start: str | None = None  # first month reported; null = the month of the first usage event
    acquisition_cost: float | dict[str, float] | None = None
    max_lifetime_years: Annotated[float, Field(gt=0)] = 10.0
    max_cohort_age_months: Annotated[int, Field(ge=1)] = 24
    psi_bands: tuple[float, float] = (0.1, 0.25)
    psi_bins: Annotated[int, Field(ge=2)] = 10
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    max_missing_rate_change: Annotated[float, Field(ge=0, le=1)] = 0.1
    backtest_min_positives: Annotated[int, Field(ge=1)] = 5
    retrain: RetrainParams = RetrainParams()

    def thresholds(self) -> mon.DriftThresholds:
        return mon.DriftThresholds(
            psi_bands=self.psi_bands,
            alpha=self.alpha,
            n_bins=self.psi_bins,
            max_missing_rate_change=self.max_missing_rate_change,
            max_psi_share=self.retrain.max_psi_share,
            max_score_psi=self.retrain.max_score_psi,
            min_backtest_auc=self.retrain.min_backtest_auc,
            max_backtest_ece=self.retrain.max_backtest_ece,
            min_backtest_positives=self.backtest_min_positives,
        )


class _Context(Section):
    """The other sections the report needs: churn definition and the train/test split."""

    definition: str = "contract"
    grace_days: int = 30
    horizon_days: int = 90
    lead_days: int = 0
    test_months: int = 6
    valid_months: int = 3


# ---------------------------------------------------------------------------- reading


def _read_table(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def _read_data_end(validated: Path) -> pd.Timestamp:
    path = validated / "validation_report.json"
    if not path.exists():
        raise InputError(f"{path}: validation report not found (run the validate stage first)")
    report = json.loads(path.read_text(encoding="utf-8"))
    if "data_end" not in report:
        raise InputError(f"{path}: no 'data_end' field")
    ts = pd.Timestamp(report["data_end"])
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _first_event(validated: Path) -> pd.Timestamp | None:
    """The first usage event's time: where the observed window starts (None without events)."""
    folder = validated / "usage_events"
    parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not parts and (validated / "usage_events.parquet").exists():
        parts = [validated / "usage_events.parquet"]
    if not parts:
        return None
    import duckdb

    con = duckdb.connect()
    try:
        row = con.execute("SELECT min(timestamp) FROM read_parquet(?)", [[str(p) for p in parts]]).fetchone()
    finally:
        con.close()
    return pd.Timestamp(row[0]) if row and row[0] is not None else None


def _window_start(validated: Path, params: ReportParams) -> pd.Timestamp | None:
    if params.start is not None:
        try:
            return pd.Timestamp(params.start)
        except ValueError as exc:
            raise InputError(f"params.yaml: report.start: not a date: {params.start!r}") from exc
    return _first_event(validated)


def _require(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")


def _load_model(path: Path) -> tuple[Any | None, str]:
    """The model bundle, or None with the reason (first run, or no model stage)."""
    if not path.exists():
        return None, f"no model at {path}"
    try:
        from models.bundle import ModelBundle

        return ModelBundle.load(path), f"model {path}"
    except Exception as exc:  # a model that does not load must not stop the retention report
        log.warning("could not load the model at %s: %s", path, exc)
        return None, f"the model at {path} could not be loaded ({type(exc).__name__}: {exc})"


# ---------------------------------------------------------------------------- monitoring


def _split_labels(snapshots: pd.DataFrame, ctx: _Context, bundle: Any | None) -> tuple[pd.Series, str]:
    """'train' / 'valid' / 'test' per labelled snapshot date, indexed by date, and where it came from.

    The model's own split (its `meta['split_dates']`) when it has one: a model kept from an
    earlier run was trained on its months, not today's. Else `models.split` on the snapshots.
    """
    from models.split import split_by_snapshot

    own = getattr(bundle, "meta", {}).get("split_dates") if bundle is not None else None
    if isinstance(own, dict) and own.get("train"):
        pairs = [(pd.Timestamp(d), part) for part, dates in own.items() for d in dates]
        split = pd.Series([p for _, p in pairs], index=pd.DatetimeIndex([d for d, _ in pairs]))
        return split.sort_index(), "the model's own training months (bundle metadata)"

    dates = pd.Series(
        np.sort(snapshots.loc[snapshots["label_observable"].astype(bool), "snapshot_date"].unique())
    )
    labels = split_by_snapshot(dates, ctx.test_months, ctx.valid_months)
    return (
        pd.Series(labels.to_numpy(), index=pd.DatetimeIndex(dates)),
        "training months by models.split.split_by_snapshot (params split)",
    )


def _feature_names(features: pd.DataFrame, bundle: Any | None) -> list[str]:
    if bundle is not None:
        return [n for n in bundle.feature_names if n in features.columns]
    return [c for c in features.columns if c not in _NOT_FEATURES]


def _model_input(bundle: Any, rows: pd.DataFrame) -> pd.DataFrame:
    cols = {n: rows[n] if n in rows.columns else np.nan for n in bundle.feature_names}
    return pd.DataFrame(cols, index=rows.index)


def build_monitoring(
    *,
    snapshots: pd.DataFrame,
    features: pd.DataFrame,
    history: pd.DataFrame | None,
    bundle: Any | None,
    model_note: str,
    ctx: _Context,
    params: ReportParams,
    churns: pd.DataFrame | None = None,
    data_end: pd.Timestamp | None = None,
) -> dict[str, Any]:
    """Drift (features, missing rates, scores), backtest and the retrain recommendation."""
    t = params.thresholds()
    notes: list[str] = []
    if bundle is None:
        notes.append(
            f"No model: {model_note}. Drift uses every feature column; backtests use score history only."
        )
    try:
        split, split_source = _split_labels(snapshots, ctx, bundle)
    except InputError as exc:  # too little labelled history: retention still reported
        split, split_source = pd.Series(dtype="str", index=pd.DatetimeIndex([])), "none"
        notes.append(f"Drift unavailable (no training months): {exc}")
    train_dates = pd.DatetimeIndex(split.index[split == "train"])
    # train + valid are in-sample (fitted, early-stopped, calibrated on); unknown split: all labelled dates
    in_sample_dates = (
        pd.DatetimeIndex(split.index[split != "test"])
        if len(split)
        else pd.DatetimeIndex(snapshots["snapshot_date"].unique())
    )
    rows = features
    if "segment" not in features.columns and "segment" in snapshots.columns:
        rows = features.merge(snapshots[[*KEYS, "segment"]], on=KEYS, how="left")
    latest_date = snapshots["snapshot_date"].max()
    reference = rows[rows["snapshot_date"].isin(train_dates)]
    current = rows[rows["snapshot_date"] == latest_date]
    names = _feature_names(features, bundle)

    drift = mon.feature_drift(reference, current, names, t)
    seg_drift = mon.segment_feature_drift(reference, current, names, "segment", t)

    score: dict[str, Any] | None = None
    if bundle is not None and len(reference) and len(current):
        ref_p = bundle.predict_proba(_model_input(bundle, reference))
        cur_p = bundle.predict_proba(_model_input(bundle, current))
        score = {"source": "model predictions on training-month rows vs the latest snapshot"}
        score.update(mon.compare_distributions(ref_p, cur_p, t))
    elif history is not None and history["snapshot_date"].nunique() >= 2:
        first, last = history["snapshot_date"].min(), history["snapshot_date"].max()
        score = {"source": f"score history: {first.date()} vs {last.date()}"}
        score.update(
            mon.compare_distributions(
                history.loc[history["snapshot_date"] == first, "risk"].to_numpy(dtype=float),
                history.loc[history["snapshot_date"] == last, "risk"].to_numpy(dtype=float),
                t,
            )
        )
    else:
        notes.append(
            "Score drift unavailable: no model and fewer than two scoring runs in the score history."
        )

    labels = snapshots.loc[snapshots["label_observable"].astype(bool), [*KEYS, "label"]]
    end = pd.Timestamp(data_end) if data_end is not None else pd.Timestamp(snapshots["snapshot_date"].max())
    preds, source = _past_predictions(
        history, labels, features, bundle, in_sample_dates, split, churns, end, ctx
    )
    bt = (
        mon.backtest(preds, t.min_backtest_positives)
        if preds is not None
        else mon.backtest(pd.DataFrame(columns=["snapshot_date", "risk", "label"]), t.min_backtest_positives)
    )
    if preds is None:
        notes.append(source)
    retrain, reasons = mon.recommend_retrain(drift, score, bt, t)
    scored = bt.dropna(subset=["roc_auc"])
    return {
        "reference": {
            "snapshot_dates": [str(d.date()) for d in train_dates],
            "rows": len(reference),
            "description": split_source,
        },
        "current": {"snapshot_date": str(pd.Timestamp(latest_date).date()), "rows": len(current)},
        "model": model_note,
        "thresholds": {
            "psi_bands": list(t.psi_bands),
            "alpha": t.alpha,
            "psi_bins": t.n_bins,
            "max_missing_rate_change": t.max_missing_rate_change,
            "max_psi_share": t.max_psi_share,
            "max_score_psi": t.max_score_psi,
            "min_backtest_auc": t.min_backtest_auc,
            "max_backtest_ece": t.max_backtest_ece,
        },
        "summary": {
            "features": len(drift),
            "features_moderate": int((drift["band"] == mon.BAND_MODERATE).sum()) if len(drift) else 0,
            "features_significant": int((drift["band"] == mon.BAND_SIGNIFICANT).sum()) if len(drift) else 0,
            "features_drifted": int(drift["drifted"].sum()) if len(drift) else 0,
            "features_drifted_share": float(drift["drifted"].mean()) if len(drift) else None,
            "features_missing_drifted": int(drift["missing_drifted"].sum()) if len(drift) else 0,
            "score_psi": score.get("psi") if score else None,
            "latest_backtest_date": str(scored["snapshot_date"].iloc[-1].date()) if len(scored) else None,
            "latest_backtest_roc_auc": float(scored["roc_auc"].iloc[-1]) if len(scored) else None,
            "latest_backtest_ece": float(scored["ece"].iloc[-1]) if len(scored) else None,
            "latest_backtest_top_decile_capture": float(scored["top_decile_capture"].iloc[-1])
            if len(scored)
            else None,
        },
        "retrain": {"recommended": retrain, "reasons": reasons},
        "feature_drift": _records(drift),
        "segment_feature_drift": _records(seg_drift),
        "score_drift": score,
        "backtest": {"source": source if preds is not None else None, "by_date": _records(bt)},
        "notes": notes,
    }


def _past_predictions(
    history: pd.DataFrame | None,
    labels: pd.DataFrame,
    features: pd.DataFrame,
    bundle: Any | None,
    in_sample_dates: pd.DatetimeIndex,
    split: pd.Series,
    churns: pd.DataFrame | None,
    data_end: pd.Timestamp,
    ctx: _Context,
) -> tuple[pd.DataFrame | None, str]:
    """Past predictions with realised labels: score history first, else the model on test months."""
    if history is not None and len(history):
        h = history.sort_values("scored_at").drop_duplicates(KEYS, keep="last")
        joined = h.merge(labels, on=KEYS, how="inner")
        if churns is not None:  # runs whose date is not on the snapshot calendar
            rest = h.merge(labels[KEYS], on=KEYS, how="left", indicator=True)
            rest = rest[rest["_merge"] == "left_only"].drop(columns="_merge")
            extra = mon.label_past_predictions(
                rest, churns, data_end, ctx.horizon_days, ctx.grace_days, ctx.lead_days
            )
            joined = pd.concat([joined, extra.dropna(subset=["label"])], ignore_index=True)
        if len(joined):
            return joined[["snapshot_date", "risk", "label"]], "score history (predictions as served)"
    if bundle is None:
        return (
            None,
            "Backtest unavailable: no score history whose horizon has passed, and no model to rescore.",
        )
    past = labels[~labels["snapshot_date"].isin(in_sample_dates)].merge(features, on=KEYS, how="inner")
    if past.empty:
        return (
            None,
            "Backtest unavailable: no labelled snapshot after the model's training and validation months.",
        )
    risk = bundle.predict_proba(_model_input(bundle, past))
    preds = pd.DataFrame({"snapshot_date": past["snapshot_date"], "risk": risk, "label": past["label"]})
    test_dates = ", ".join(str(pd.Timestamp(d).date()) for d in sorted(past["snapshot_date"].unique()))
    return preds, (
        "the current model rescoring past snapshots outside its training and validation months "
        f"(out-of-sample dates: {test_dates}); no score history with an elapsed horizon yet"
    )


# ---------------------------------------------------------------------------- JSON


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_json_safe(r) for r in frame.to_dict(orient="records")]


def _keyed(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """{index: row} keeping each column's type (ints stay ints)."""
    records = frame.to_dict(orient="records")
    return {str(k): {str(c): v for c, v in r.items()} for k, r in zip(frame.index, records, strict=True)}


def _month_key(ts: Any) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m")


def _period_table(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    records = frame.to_dict(orient="records")  # keeps each column's type (counts stay ints)
    return {_month_key(i): _json_safe(r) for i, r in zip(frame.index, records, strict=True)}


def retention_json(
    res: retention.RetentionResult, clv: pd.DataFrame, data_end: pd.Timestamp, notes: list[str]
) -> dict[str, Any]:
    """The report metrics file: per month and overall, by segment, cohorts, CLV."""
    by_segment = {}
    if not res.by_segment_month.empty:
        for seg, part in res.by_segment_month.groupby(level="segment"):
            by_segment[str(seg)] = {
                "overall": res.overall_by_segment.get(str(seg), {}),
                "by_month": _period_table(part.droplevel("segment")),
            }
    cohorts: dict[str, Any] = {}
    if not res.cohorts_logo.empty:
        for name, table in (("logo", res.cohorts_logo), ("revenue", res.cohorts_revenue)):
            cohorts[name] = {
                _month_key(c): {str(a): _json_safe(v) for a, v in row.items() if pd.notna(v)}
                for c, row in table.iterrows()
            }
        cohorts["accounts"] = {_month_key(c): int(n) for c, n in res.cohort_sizes.items()}
    return _json_safe(
        {
            "definition": res.definition,
            "data_end": data_end.isoformat(),
            "period": "month",
            "overall": res.overall,
            "by_month": _period_table(res.by_month),
            "by_segment": by_segment,
            "renewal_by_billing_period": _keyed(res.renewals_by_billing),
            "cohorts": cohorts,
            "clv": _keyed(clv),
            "notes": notes,
        }
    )


# ---------------------------------------------------------------------------- stage


def run(
    *,
    validated: Path,
    snapshots: Path,
    features: Path,
    scores: Path,
    model: Path,
    metrics: Path,
    monitoring: Path,
    html: Path,
    params: ReportParams,
    ctx: _Context,
    currency: str,
) -> dict[str, Any]:
    """Compute retention and monitoring, write the metrics JSON, monitoring JSON and HTML."""
    data_end = _read_data_end(validated)
    accounts = _read_table(validated / "accounts.parquet")
    subs = _read_table(validated / "subscriptions.parquet")
    snaps = _read_table(snapshots)
    if snaps is None:
        raise InputError(f"{snapshots}: snapshot table not found (run the snapshots stage first)")
    _require(snaps, [*KEYS, "label", "label_observable"], snapshots)
    feats = _read_table(features)
    if feats is None:
        raise InputError(f"{features}: features table not found (run the features stage first)")
    _require(feats, KEYS, features)

    notes: list[str] = []
    if ctx.definition == "contract" and subs is not None and len(subs):
        _require(subs, ["account_id", "subscription_id", "start_date", "end_date", "mrr"], validated)
        window = _window_start(validated, params)
        res = retention.compute_contract_retention(
            subs, accounts, ctx.grace_days, data_end, params.max_cohort_age_months, window
        )
        if window is not None:
            notes.append(
                f"Months and cohorts from {window.strftime('%Y-%m')} "
                "(report.start; default: the month of the first usage event)."
            )
        clv = retention.customer_lifetime_value(
            subs, accounts, res, ctx.grace_days, data_end, params.acquisition_cost, params.max_lifetime_years
        )
    else:
        why = "no subscriptions table" if subs is None or not len(subs) else "definition: activity"
        notes.append(
            f"Activity definition ({why}): customers are the accounts in each snapshot; revenue "
            "metrics, renewal rate, cohorts and CLV are unavailable."
        )
        res = retention.compute_activity_retention(snaps, accounts)
        clv = pd.DataFrame()

    churns = None
    if ctx.definition == "contract" and subs is not None and len(subs):
        churns = retention.derive_churn_events(subs, ctx.grace_days, data_end)
    history = _read_table(scores / "history.parquet")
    if history is None:
        notes.append(
            f"No score history at {scores / 'history.parquet'} (first run): backtests use the model."
        )
    bundle, model_note = _load_model(model)
    monitoring_doc = build_monitoring(
        snapshots=snaps,
        features=feats,
        history=history,
        bundle=bundle,
        model_note=model_note,
        ctx=ctx,
        params=params,
        churns=churns,
        data_end=data_end,
    )
    report_doc = retention_json(res, clv, data_end, notes)
    report_doc["monitoring"] = {
        "retrain_recommended": monitoring_doc["retrain"]["recommended"],
        **monitoring_doc["summary"],
    }

    from features.report_html import render_report

    page = render_report(res, clv, report_doc, monitoring_doc, currency)
    for path in (metrics, monitoring, html):
        path.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps(report_doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    monitoring.write_text(
        json.dumps(_json_safe(monitoring_doc), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    html.write_text(page, encoding="utf-8")
    o = report_doc["overall"]
    log.info(
        "report: %d months, logo retention %s, NRR %s, renewal %s; retrain recommended: %s",
        o.get("months"),
        o.get("logo_retention_rate"),
        o.get("net_revenue_retention"),
        o.get("renewal_rate"),
        monitoring_doc["retrain"]["recommended"],
    )
    return report_doc


def load_context(path: Path) -> _Context:
    """The churn definition and split sizes from the snapshots and split sections."""
    raw = read_params(path)
    snap, split = raw.get("snapshots") or {}, raw.get("split") or {}
    values = {
        "definition": snap.get("definition", "contract"),
        "grace_days": snap.get("grace_days", 30),
        "horizon_days": snap.get("horizon_days", 90),
        "lead_days": snap.get("lead_days", 0),
        "test_months": split.get("test_months", 6),
        "valid_months": split.get("valid_months", 3),
    }
    return _Context.model_validate(values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--validated", type=Path, required=True)
    parser.add_argument("--snapshots", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--scores", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument(
        "--monitoring", type=Path, default=None, help="default: monitoring.json next to --metrics"
    )
    parser.add_argument("--html", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = load_section("report", ReportParams, args.params)
    run(
        validated=args.validated,
        snapshots=args.snapshots,
        features=args.features,
        scores=args.scores,
        model=args.model,
        metrics=args.metrics,
        monitoring=args.monitoring or args.metrics.parent / "monitoring.json",
        html=args.html,
        params=params,
        ctx=load_context(args.params),
        currency=load_currency(args.params),
    )


if __name__ == "__main__":
    run_stage(main)
