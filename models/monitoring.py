"""Model monitoring: feature, missing-rate and score drift; backtests; a retrain recommendation.

Drift compares a *reference* sample (the model's training months) with a *current* one
(the latest snapshot). PSI alone over-fires on small samples: its expected value under
no drift is about (k - 1) (1/n_ref + 1/n_cur) for k bins, so a 40-account segment shows
PSI > 0.25 from noise alone. A feature therefore counts as drifted only when its PSI is
past a band *and* a chi-square test of homogeneity on the same binned counts rejects "same
distribution" at `alpha`. docs/retention.md defines every number here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score

BAND_STABLE = "stable"
BAND_MODERATE = "moderate"
BAND_SIGNIFICANT = "significant"
_EPS = 1e-4


@dataclass(frozen=True)
class DriftThresholds:
    """Thresholds for drift flags and the retrain recommendation (params `report`)."""

    psi_bands: tuple[float, float] = (0.1, 0.25)
    alpha: float = 0.01
    n_bins: int = 10
    max_missing_rate_change: float = 0.1
    max_psi_share: float = 0.2
    max_score_psi: float = 0.25
    min_backtest_auc: float = 0.7
    max_backtest_ece: float = 0.1
    min_backtest_positives: int = 5


def _bin_edges(reference: np.ndarray, n_bins: int) -> np.ndarray | None:
    """Quantile edges from the reference; None means 'bin by distinct value' (few values)."""
    uniq = np.unique(reference)
    if len(uniq) <= n_bins:
        return None
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return edges


def binned_counts(
    reference: np.ndarray, current: np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of non-missing values per bin, bins fixed on the reference sample."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if len(ref) == 0:
        return np.zeros(0), np.zeros(0)
    edges = _bin_edges(ref, n_bins)
    if edges is None:
        values = np.unique(np.concatenate([ref, cur]))
        ref_idx, cur_idx = np.searchsorted(values, ref), np.searchsorted(values, cur)
        k = len(values)
    else:
        ref_idx = np.searchsorted(edges, ref, side="right")
        cur_idx = np.searchsorted(edges, cur, side="right")
        k = len(edges) + 1
    return np.bincount(ref_idx, minlength=k).astype(float), np.bincount(cur_idx, minlength=k).astype(float)


def population_stability_index(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """PSI = sum (a - e) ln(a / e) over bins of proportions (empty bins floored at 1e-4)."""
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return float("nan")
    e = np.maximum(ref_counts / ref_counts.sum(), _EPS)
    a = np.maximum(cur_counts / cur_counts.sum(), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def homogeneity_pvalue(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Chi-square test that both samples come from the same binned distribution."""
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def psi_null_expected(n_bins: int, n_ref: float, n_cur: float) -> float:
    """Approximate expected PSI under no drift: (k - 1)(1/n_ref + 1/n_cur)."""
    if n_ref <= 0 or n_cur <= 0:
        return float("nan")
    return float(max(n_bins - 1, 0) * (1.0 / n_ref + 1.0 / n_cur))


def psi_band(psi: float, bands: Sequence[float] = (0.1, 0.25)) -> str:
    """'stable' below the first band, 'moderate' between, 'significant' from the second."""
    if not np.isfinite(psi) or psi < bands[0]:
        return BAND_STABLE
    return BAND_MODERATE if psi < bands[1] else BAND_SIGNIFICANT


def _missing_pvalue(miss_ref: int, n_ref: int, miss_cur: int, n_cur: int) -> float:
    table = np.array([[miss_ref, n_ref - miss_ref], [miss_cur, n_cur - miss_cur]], dtype=float)
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def compare_distributions(
    reference: np.ndarray, current: np.ndarray, thresholds: DriftThresholds = DriftThresholds()
) -> dict[str, float | int | str | bool]:
    """PSI, band, chi-square p-value, null PSI and missing-rate change of one variable."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    rc, cc = binned_counts(ref, cur, thresholds.n_bins)
    psi = population_stability_index(rc, cc)
    p = homogeneity_pvalue(rc, cc)
    band = psi_band(psi, thresholds.psi_bands)
    miss_ref, miss_cur = int((~np.isfinite(ref)).sum()), int((~np.isfinite(cur)).sum())
    rate_ref = miss_ref / len(ref) if len(ref) else float("nan")
    rate_cur = miss_cur / len(cur) if len(cur) else float("nan")
    p_miss = _missing_pvalue(miss_ref, len(ref), miss_cur, len(cur))
    change = rate_cur - rate_ref
    return {
        "psi": psi,
        "band": band,
        "p_value": p,
        "drifted": bool(band != BAND_STABLE and p < thresholds.alpha),
        "psi_null_expected": psi_null_expected(len(rc), rc.sum(), cc.sum()),
        "n_ref": len(ref),
        "n_cur": len(cur),
        "missing_rate_ref": rate_ref,
        "missing_rate_cur": rate_cur,
        "missing_rate_change": change,
        "missing_p_value": p_miss,
        "missing_drifted": bool(
            np.isfinite(change)
            and abs(change) > thresholds.max_missing_rate_change
            and p_miss < thresholds.alpha
        ),
    }


def _as_numbers(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Numeric/bool columns as floats; categorical ones as codes over both samples' values."""
    if pd.api.types.is_bool_dtype(reference) or pd.api.types.is_numeric_dtype(reference):
        return (
            pd.to_numeric(reference, errors="coerce").to_numpy(dtype=float, na_value=np.nan),
            pd.to_numeric(current, errors="coerce").to_numpy(dtype=float, na_value=np.nan),
        )
    values = sorted({str(v) for v in pd.concat([reference, current]).dropna().unique()})
    codes = {v: float(i) for i, v in enumerate(values)}

    def encode(s: pd.Series) -> np.ndarray:
        return s.map(lambda v: np.nan if pd.isna(v) else codes[str(v)]).to_numpy(dtype=float, na_value=np.nan)

    return encode(reference), encode(current)


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    thresholds: DriftThresholds = DriftThresholds(),
) -> pd.DataFrame:
    """One row per feature: PSI, band, test, missing-rate drift. Sorted by PSI, largest first."""
    rows = []
    for name in features:
        ref, cur = _as_numbers(reference[name], current[name])
        rows.append({"feature": name, **compare_distributions(ref, cur, thresholds)})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.sort_values("psi", ascending=False, na_position="last").reset_index(drop=True)


def segment_feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    segment_col: str = "segment",
    thresholds: DriftThresholds = DriftThresholds(),
) -> pd.DataFrame:
    """feature_drift within each segment present in both samples (column `segment` added)."""
    parts = []
    if segment_col not in reference.columns or segment_col not in current.columns:
        return pd.DataFrame()
    for seg in sorted(set(reference[segment_col].dropna()) & set(current[segment_col].dropna())):
        ref = reference[reference[segment_col] == seg]
        cur = current[current[segment_col] == seg]
        parts.append(feature_drift(ref, cur, features, thresholds).assign(segment=str(seg)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE: sum over equal-width probability bins of (bin share) x |mean p - churn rate|."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(idx):
        m = idx == b
        total += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(total)


def top_decile_capture(y: np.ndarray, p: np.ndarray) -> float:
    """Share of all churners found in the top 10% of accounts by risk (ceil, at least one)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if y.sum() == 0:
        return float("nan")
    k = max(1, int(np.ceil(0.1 * len(y))))
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].sum() / y.sum())


def label_past_predictions(
    predictions: pd.DataFrame,
    churns: pd.DataFrame,
    data_end: pd.Timestamp,
    horizon_days: int,
    grace_days: int,
    lead_days: int = 0,
) -> pd.DataFrame:
    """Realised labels for past predictions (account_id, snapshot_date) from churn dates.

    The snapshot labels' rule: label 1 when a churn falls in [t + lead, t + lead + horizon);
    known (else NaN) once t + lead + horizon + grace <= data_end. For scoring runs whose date
    is not on the snapshot calendar.
    """
    lead, horizon = pd.Timedelta(days=lead_days), pd.Timedelta(days=horizon_days)
    keys = predictions[["account_id", "snapshot_date"]].drop_duplicates()
    pairs = keys.merge(churns[["account_id", "churn_date"]], on="account_id")
    hit = (pairs["churn_date"] >= pairs["snapshot_date"] + lead) & (
        pairs["churn_date"] < pairs["snapshot_date"] + lead + horizon
    )
    churned = pairs.loc[hit, ["account_id", "snapshot_date"]].drop_duplicates().assign(_hit=1.0)
    out = predictions.merge(churned, on=["account_id", "snapshot_date"], how="left")
    known = out["snapshot_date"] + lead + horizon + pd.Timedelta(days=grace_days) <= pd.Timestamp(data_end)
    out["label"] = np.where(known, out["_hit"].fillna(0.0), np.nan)
    return out.drop(columns="_hit")


def backtest(predictions: pd.DataFrame, min_positives: int = 5) -> pd.DataFrame:
    """Realised performance per snapshot date of past predictions (risk) against labels.

    `predictions`: snapshot_date, risk, label (0/1; rows with no observable label dropped).
    ROC-AUC is NaN when a date has fewer than `min_positives` churners or no non-churners.
    """
    df = predictions.dropna(subset=["risk", "label"])
    rows = []
    for date, part in df.groupby("snapshot_date", sort=True):
        y, p = part["label"].to_numpy(dtype=float), part["risk"].to_numpy(dtype=float)
        pos = int(y.sum())
        enough = pos >= min_positives and pos < len(y)
        rows.append(
            {
                "snapshot_date": pd.Timestamp(str(date)),
                "n": len(y),
                "positives": pos,
                "churn_rate": float(y.mean()),
                "mean_risk": float(p.mean()),
                "roc_auc": float(roc_auc_score(y, p)) if enough else float("nan"),
                "ece": expected_calibration_error(y, p),
                "top_decile_capture": top_decile_capture(y, p),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "snapshot_date",
            "n",
            "positives",
            "churn_rate",
            "mean_risk",
            "roc_auc",
            "ece",
            "top_decile_capture",
        ],
    )


def recommend_retrain(
    drift: pd.DataFrame,
    score: dict[str, float | int | str | bool] | None,
    backtests: pd.DataFrame,
    thresholds: DriftThresholds = DriftThresholds(),
) -> tuple[bool, list[str]]:
    """Whether to retrain, with every reason that crossed a threshold (plain sentences)."""
    reasons: list[str] = []
    if not drift.empty:
        significant = drift[(drift["band"] == BAND_SIGNIFICANT) & (drift["p_value"] < thresholds.alpha)]
        share = len(significant) / len(drift)
        if share > thresholds.max_psi_share:
            names = ", ".join(significant["feature"].head(5))
            reasons.append(
                f"{len(significant)} of {len(drift)} features ({share:.0%}) drifted significantly "
                f"(PSI >= {thresholds.psi_bands[1]} and p < {thresholds.alpha}), above the "
                f"{thresholds.max_psi_share:.0%} limit: {names}"
            )
        missing = drift[drift["missing_drifted"]]
        if len(missing) and len(missing) / len(drift) > thresholds.max_psi_share:
            reasons.append(
                f"missing-value rate changed by more than {thresholds.max_missing_rate_change:.0%} "
                f"in {len(missing)} features: {', '.join(missing['feature'].head(5))}"
            )
    if score is not None:
        psi = float(score.get("psi", float("nan")))
        if (
            np.isfinite(psi)
            and psi >= thresholds.max_score_psi
            and float(score["p_value"]) < thresholds.alpha
        ):
            reasons.append(f"score distribution drifted: PSI {psi:.3f} >= {thresholds.max_score_psi}")
    latest = backtests.dropna(subset=["roc_auc"]).tail(1) if not backtests.empty else backtests
    if latest is not None and len(latest):
        row = latest.iloc[0]
        day = pd.to_datetime(str(row["snapshot_date"])).date()
        if row["roc_auc"] < thresholds.min_backtest_auc:
            reasons.append(
                f"realised ROC-AUC {row['roc_auc']:.3f} on the {day} predictions is below "
                f"{thresholds.min_backtest_auc}"
            )
        if np.isfinite(row["ece"]) and row["ece"] > thresholds.max_backtest_ece:
            reasons.append(
                f"realised calibration error {row['ece']:.3f} on the {day} predictions is above "
                f"{thresholds.max_backtest_ece}"
            )
    return bool(reasons), reasons
