"""Train the churn model: LightGBM with early stopping, a small search, calibration, baselines.

Everything here is pure: frames in, a `TrainResult` out. The split is by snapshot date
(`models.split`): the booster learns on the train months, early-stops and picks its
hyper-parameters on the validation months, and the test months are only ever scored.
The months whose label windows reach the test months are embargoed (never used), and
train rows whose window reaches the validation months are purged from fitting
(`models.split.purge_overlapping`). The served booster is calibrated on scores it did not
train on: without a refit, its validation scores; with the refit on train + valid,
cross-fitted scores of boosters of the same recipe (`crossfit_scores`).
Determinism: fixed seeds, `deterministic=True`, fixed thread count.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from churnguard.errors import InputError
from models.baselines import fit_baselines
from models.bundle import KEYS, FeatureSpec, ModelBundle, encode_features
from models.calibration import fit_calibrator
from models.config import LightGBMParams, SplitParams, TrainParams
from models.metrics import classification_metrics
from models.split import (
    EMBARGO,
    TEST,
    TRAIN,
    VALID,
    PurgedRows,
    label_window_end,
    purge_overlapping,
    split_by_snapshot,
)

log = logging.getLogger(__name__)

# Columns joined from snapshots for labels and evaluation; prefixed so they can never
# collide with (or be mistaken for) feature columns.
LABEL = "__label"
ARR = "__arr"
SEGMENT = "__segment"
SCORING = "__is_scoring_date"
PART = "__part"
SNAPSHOT_COLUMNS = {
    "label": LABEL,
    "arr": ARR,
    "segment": SEGMENT,
    "is_scoring_date": SCORING,
}

SEARCH_SPACE: dict[str, list[Any]] = {
    "num_leaves": [7, 15, 31],
    "min_child_samples": [20, 40, 80],
    "learning_rate": [0.03, 0.05, 0.1],
    "feature_fraction": [0.6, 0.8, 1.0],
    "lambda_l2": [0.0, 1.0, 5.0],
}


def join_snapshots(features: pd.DataFrame, snapshots: pd.DataFrame) -> pd.DataFrame:
    """Features with the label, ARR, segment and scoring flag of the same (account, date)."""
    need = ["label", "label_observable"]
    missing = [c for c in (*KEYS, *need) if c not in snapshots.columns]
    if missing:
        raise InputError(f"snapshots: missing column(s) {missing}")
    missing = [c for c in KEYS if c not in features.columns]
    if missing:
        raise InputError(f"features: missing key column(s) {missing}")
    snap = snapshots.loc[
        :, [*KEYS, *need, *(c for c in ("arr", "segment", "is_scoring_date") if c in snapshots)]
    ]
    snap = snap.rename(columns=SNAPSHOT_COLUMNS)
    snap[LABEL] = snap[LABEL].where(snap["label_observable"].astype(bool))
    snap = snap.drop(columns="label_observable")
    frame = features.merge(snap, on=list(KEYS), how="left", validate="one_to_one")
    if SCORING not in frame:
        last = frame["snapshot_date"].max()
        frame[SCORING] = frame["snapshot_date"] == last
    frame[SCORING] = frame[SCORING].fillna(False).astype(bool)
    return frame


def assign_parts(frame: pd.DataFrame, split: SplitParams, embargo_days: int = 0) -> pd.Series:
    """'train' / 'valid' / 'embargo' / 'test' for labelled rows, NA for unlabelled ones.

    `embargo_days` = snapshots.lead_days + horizon_days (0: no embargo; the test rows are
    the same either way).
    """
    labelled = frame[LABEL].notna()
    parts = pd.Series(pd.NA, index=frame.index, dtype="object")
    parts[labelled] = split_by_snapshot(
        frame.loc[labelled, "snapshot_date"], split.test_months, split.valid_months, embargo_days
    )
    return parts


def monotone_vector(spec: FeatureSpec, increasing: Sequence[str], decreasing: Sequence[str]) -> list[int]:
    """LightGBM monotone constraints from name patterns (categoricals are never constrained)."""
    out = []
    for name in spec.names:
        c = 0
        if name not in spec.categories:
            if any(re.search(p, name) for p in increasing):
                c = 1
            elif any(re.search(p, name) for p in decreasing):
                c = -1
        out.append(c)
    return out


def lightgbm_params(p: LightGBMParams, seed: int, monotone: list[int]) -> dict[str, Any]:
    """The booster parameters, made deterministic."""
    params: dict[str, Any] = {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": p.learning_rate,
        "num_leaves": p.num_leaves,
        "max_depth": p.max_depth,
        "min_child_samples": p.min_child_samples,
        "feature_fraction": p.feature_fraction,
        "bagging_fraction": p.bagging_fraction,
        "bagging_freq": p.bagging_freq,
        "lambda_l2": p.lambda_l2,
        "scale_pos_weight": p.scale_pos_weight,
        "num_threads": p.num_threads,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "feature_pre_filter": False,
        "verbosity": -1,
    }
    if any(monotone):
        params["monotone_constraints"] = monotone
        # "advanced" was seen to break monotonicity slightly (LightGBM 4.7): the behaviour
        # test on the served model catches it; "intermediate" holds and is nearly as flexible.
        params["monotone_constraints_method"] = "intermediate"
    return params


def search_candidates(base: LightGBMParams, trials: int, seed: int) -> list[LightGBMParams]:
    """The base parameters plus `trials - 1` distinct random draws from a small grid."""
    rng = np.random.default_rng(seed)
    out = [base]
    seen = {tuple(getattr(base, k) for k in SEARCH_SPACE)}
    attempts = 0
    while len(out) < trials and attempts < 200:
        attempts += 1
        draw = {k: v[int(rng.integers(len(v)))] for k, v in SEARCH_SPACE.items()}
        key = tuple(draw.values())
        if key in seen:
            continue
        seen.add(key)
        out.append(base.model_copy(update=draw))
    return out


def fit_booster(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    spec: FeatureSpec,
    params: dict[str, Any],
    n_estimators: int,
    early_stopping_rounds: int,
) -> lgb.Booster:
    """One LightGBM fit with early stopping; returns the booster cut at its best iteration."""
    cat_idx = [spec.names.index(c) for c in spec.categorical]
    names = list(spec.names)
    dtrain = lgb.Dataset(
        X_train, y_train, feature_name=names, categorical_feature=cat_idx, free_raw_data=False
    )
    dvalid = lgb.Dataset(X_valid, y_valid, reference=dtrain)
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=n_estimators,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def refit_booster(
    X: np.ndarray, y: np.ndarray, spec: FeatureSpec, params: dict[str, Any], rounds: int
) -> lgb.Booster:
    """A fixed-rounds LightGBM fit (no early stopping), e.g. on train + validation months."""
    cat_idx = [spec.names.index(c) for c in spec.categorical]
    data = lgb.Dataset(X, y, feature_name=list(spec.names), categorical_feature=cat_idx)
    return lgb.train(params, data, num_boost_round=rounds)


def crossfit_scores(
    frame: pd.DataFrame,
    rows: pd.Series,
    spec: FeatureSpec,
    params: dict[str, Any],
    rounds_per_row: float,
    folds: int,
) -> np.ndarray:
    """Out-of-sample raw scores for `rows`: each account fold is scored by a booster fitted,
    with the same parameters and rounds-per-row as the refit, on the other folds.

    Folds hold whole accounts (an account's churn labels its own rows only, so no label
    event is on both sides); accounts are dealt round-robin in order of first appearance
    in `frame`'s canonical (content) order, so the folds ignore account ids and row order.
    """
    sub = frame.loc[rows]
    codes, uniques = pd.factorize(sub["account_id"], sort=False)
    k = min(folds, len(uniques))
    if k < 2:
        raise InputError(
            f"train.calibration.crossfit_folds: {len(uniques)} account(s) in the refit rows; "
            "cross-fitting needs at least 2 (set train.refit_on_valid: false or provide more accounts)"
        )
    fold = codes % k
    X, y = encode_features(sub, spec), sub[LABEL].to_numpy(dtype=float)
    out = np.full(len(sub), np.nan)
    for f in range(k):
        held = fold == f
        if len(np.unique(y[~held])) < 2:
            raise InputError(
                f"train.calibration.crossfit_folds={folds}: a fold's training accounts hold one class; "
                "lower train.calibration.crossfit_folds"
            )
        rounds = max(1, round(rounds_per_row * int((~held).sum())))
        out[held] = refit_booster(X[~held], y[~held], spec, params, rounds).predict(X[held])
    return out


@dataclass
class TrainResult:
    """What training produced: the calibrated bundle and everything worth logging."""

    bundle: ModelBundle
    trials: list[dict[str, Any]]
    best_params: dict[str, Any]
    best_iteration: int
    metrics: dict[str, dict[str, dict[str, float]]]  # part -> scorer -> metric -> value
    split_dates: dict[str, list[str]]
    parts: pd.Series = field(repr=False)
    purge: dict[str, int] = field(default_factory=dict)
    fit_rows: pd.Series | None = field(default=None, repr=False)
    best_valid_roc_auc: float = float("nan")
    calibration: dict[str, Any] = field(default_factory=dict)


def canonical_order(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Rows sorted by date, label and feature values (index kept).

    Floating-point sums in LightGBM and the baselines depend on row order; sorting by
    content makes the trained model independent of the input's row order and account ids.
    """
    X = encode_features(frame, spec)
    keys = [np.nan_to_num(X[:, j], nan=np.inf) for j in range(X.shape[1] - 1, -1, -1)]
    label = frame[LABEL].to_numpy(dtype=float)
    dates = pd.to_datetime(frame["snapshot_date"]).to_numpy().astype("int64")
    return frame.iloc[np.lexsort([*keys, np.nan_to_num(label, nan=-1.0), dates])]


def _xy(frame: pd.DataFrame, mask: pd.Series, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    sub = frame.loc[mask]
    return encode_features(sub, spec), sub[LABEL].to_numpy(dtype=float)


def train_model(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    params: TrainParams,
    split: SplitParams,
    trained_at: str,
    top_k: int | None = None,
    *,
    horizon_days: int = 90,
    lead_days: int = 0,
) -> TrainResult:
    """Search, fit, calibrate and score on the split of `frame` (output of `join_snapshots`).

    `horizon_days` / `lead_days` are the label window of `snapshots.*` (defaults: the
    `SnapshotParams` defaults): the months whose windows reach the test months are
    embargoed, training rows whose window reaches the validation months and refit rows
    whose window reaches the test months are purged from fitting.
    """
    original_index = frame.index
    frame = canonical_order(frame, spec)
    parts = assign_parts(frame, split, embargo_days=lead_days + horizon_days)
    masks = {p: (parts == p).fillna(False).astype(bool) for p in (TRAIN, VALID, EMBARGO, TEST)}
    purged = purge_overlapping(frame["snapshot_date"], parts, horizon_days, lead_days)
    log.info(
        "label windows (horizon %d d, lead %d d): %d embargoed rows before the test months; purged "
        "%d of %d train rows, %d of %d validation rows, %d of %d refit rows",
        horizon_days, lead_days, int(masks[EMBARGO].sum()), purged.purged_train, int(masks[TRAIN].sum()),
        purged.purged_valid, int(masks[VALID].sum()), purged.purged_refit,
        int((masks[TRAIN] | masks[VALID]).sum()),
    )  # fmt: skip
    _check_classes(frame, purged, horizon_days, lead_days)
    X_tr, y_tr = _xy(frame, purged.train, spec)
    X_va, y_va = _xy(frame, purged.valid, spec)
    monotone = monotone_vector(spec, params.monotone_increasing, params.monotone_decreasing)
    from sklearn.metrics import log_loss, roc_auc_score

    trials: list[dict[str, Any]] = []
    best: tuple[float, float, int, lgb.Booster, LightGBMParams] | None = None
    for i, cand in enumerate(search_candidates(params.lightgbm, params.search_trials, params.seed)):
        booster = fit_booster(
            X_tr, y_tr, X_va, y_va, spec, lightgbm_params(cand, params.seed, monotone),
            cand.n_estimators, cand.early_stopping_rounds,
        )  # fmt: skip
        p_va = booster.predict(X_va)
        auc, ll = float(roc_auc_score(y_va, p_va)), float(log_loss(y_va, p_va, labels=[0, 1]))
        trials.append({"trial": i, **cand.model_dump(), "best_iteration": booster.num_trees(),
                       "valid_roc_auc": auc, "valid_log_loss": ll})  # fmt: skip
        log.info("trial %d: valid roc_auc=%.4f log_loss=%.4f trees=%d", i, auc, ll, booster.num_trees())
        if best is None or (auc, -ll) > (best[0], -best[1]):
            best = (auc, ll, i, booster, cand)
    assert best is not None
    best_auc, _, best_i, booster, best_cand = best
    cal = params.calibration
    fit_rows = purged.train
    if params.refit_on_valid:
        # The validation months are the most recent usable ones: refit on train + valid
        # (purged against the test months) with the early-stopped number of rounds scaled
        # to the larger set. Its scores are on another scale than the first booster's, so
        # it is calibrated on cross-fitted scores of boosters of the same recipe.
        fit_rows = purged.refit
        rounds_per_row = booster.num_trees() / len(y_tr)
        best_lgb = lightgbm_params(best_cand, params.seed, monotone)
        X_fit, y_fit = _xy(frame, fit_rows, spec)
        booster = refit_booster(X_fit, y_fit, spec, best_lgb, max(1, round(rounds_per_row * len(y_fit))))
        cal_rows = fit_rows
        cal_scores = crossfit_scores(frame, fit_rows, spec, best_lgb, rounds_per_row, cal.crossfit_folds)
        cal_y = y_fit
    else:
        cal_rows = purged.valid
        cal_scores, cal_y = np.asarray(booster.predict(X_va)), y_va
    calibrator = fit_calibrator(cal_scores, cal_y, cal.method, cal.min_block_rows, cal.min_block_share)
    baselines = fit_baselines(
        frame.loc[fit_rows],
        frame.loc[fit_rows, LABEL].to_numpy(dtype=float),
        spec,
        params.logistic_c,
        params.seed,
    )
    split_dates = {
        p: sorted(str(d.date()) for d in pd.to_datetime(frame.loc[m, "snapshot_date"]).unique())
        for p, m in masks.items()
        if p != EMBARGO or m.any()
    }
    # Latest churn date whose label this model saw (fitted, early-stopped, searched or
    # calibrated on): the promotion gate compares a champion only on test rows after it.
    seen = purged.train | purged.valid | fit_rows | cal_rows
    label_end = label_window_end(frame.loc[seen, "snapshot_date"], horizon_days, lead_days).max()
    calibration_meta = {
        "method": cal.method,
        "fitted_on": "crossfit" if params.refit_on_valid else "valid",
        "rows": int(cal_rows.sum()),
        "folds": min(cal.crossfit_folds, int(frame.loc[cal_rows, "account_id"].nunique()))
        if params.refit_on_valid
        else 0,
        "min_block_rows": cal.min_block_rows,
        "min_block_share": cal.min_block_share,
    }
    bundle = ModelBundle(
        booster,
        calibrator,
        spec,
        trained_at=trained_at,
        meta={
            "split": split.model_dump(),
            "split_dates": split_dates,
            "best_params": best_cand.model_dump(),
            "best_trial": best_i,
            "refit_on_valid": params.refit_on_valid,
            "fit_rows": int(fit_rows.sum()),
            "label_window": {"horizon_days": horizon_days, "lead_days": lead_days},
            "label_end": str(pd.Timestamp(label_end).date()),
            "purged": {
                "train": purged.purged_train,
                "valid": purged.purged_valid,
                "embargo": int(masks[EMBARGO].sum()),
                "refit": purged.purged_refit,
            },
            "calibration": calibration_meta,
            "monotone": {n: c for n, c in zip(spec.names, monotone, strict=True) if c},
        },
        baselines=baselines,
    )
    # After a refit the validation months are training rows: their scores are not reported.
    scored = {TEST: masks[TEST]} if params.refit_on_valid else {VALID: purged.valid, TEST: masks[TEST]}
    metrics = {p: score_all(bundle, frame.loc[m], top_k=top_k) for p, m in scored.items() if m.any()}
    bundle.metrics = {k: v for k, v in metrics.get(TEST, {}).get("model", {}).items()}
    return TrainResult(
        bundle=bundle,
        trials=trials,
        best_params=best_cand.model_dump(),
        best_iteration=booster.num_trees(),
        metrics=metrics,
        split_dates=split_dates,
        parts=parts.reindex(original_index),
        purge={
            "horizon_days": horizon_days,
            "lead_days": lead_days,
            "train_rows_purged": purged.purged_train,
            "refit_rows_purged": purged.purged_refit,
            "train_rows_fitted": int(purged.train.sum()),
            "refit_rows_fitted": int(purged.refit.sum()),
            "valid_rows_embargoed": int(masks[EMBARGO].sum()),
            "valid_rows_purged": purged.purged_valid,
            "valid_rows_used": int(purged.valid.sum()),
            "calibration_rows": int(cal_rows.sum()),
        },
        fit_rows=fit_rows.reindex(original_index).fillna(False).astype(bool),
        best_valid_roc_auc=best_auc,
        calibration=calibration_meta,
    )


def _check_classes(frame: pd.DataFrame, purged: PurgedRows, horizon_days: int, lead_days: int) -> None:
    """InputError when the rows left for validation or fitting hold one class (or none)."""
    window = f"snapshots.lead_days={lead_days} + horizon_days={horizon_days}"
    checks = (
        (purged.valid, "the validation months hold {n} usable row(s) with {k} class(es) once rows whose "
         f"label window ({window}) reaches the test months are embargoed; raise split.valid_months, "
         "lower split.test_months or snapshots.horizon_days, or provide more history"),
        (purged.train, f"after purging training rows whose label window ({window}) reaches the "
         "validation months, {n} training row(s) with {k} class(es) remain; lower split.test_months / "
         "split.valid_months or provide more history"),
    )  # fmt: skip
    for rows, message in checks:
        y = frame.loc[rows, LABEL]
        if y.nunique() < 2:
            raise InputError("split: " + message.format(n=len(y), k=y.nunique()))


def score_all(
    bundle: ModelBundle, rows: pd.DataFrame, top_k: int | None = None, baselines: bool = True
) -> dict[str, dict[str, float]]:
    """Metrics of the model (and each of its baselines) on the same labelled rows."""
    y = rows[LABEL].to_numpy(dtype=float)
    arr = rows[ARR].to_numpy(dtype=float) if ARR in rows else None
    dates = rows["snapshot_date"].to_numpy()
    out = {"model": classification_metrics(y, bundle.predict_proba(rows), arr, dates, top_k)}
    for name, baseline in bundle.baselines.items() if baselines else ():
        out[name] = classification_metrics(y, baseline.predict_proba(rows), arr, dates, top_k)
    return out
