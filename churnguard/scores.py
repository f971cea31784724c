"""The at-risk list: building it from model output, and filtering / sorting it.

Pure functions on frames and arrays, shared by the score stage, the `churn at-risk` /
`churn explain` commands and the API (which keeps the list as numpy columns so that a
filtered page costs no DataFrame per request).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from churnguard.errors import InputError
from churnguard.params import Section

TIERS: tuple[str, ...] = ("high", "medium", "low")
SORT_KEYS: tuple[str, ...] = (
    "expected_arr_lost",
    "risk",
    "arr",
    "days_to_renewal",
    "health_score",
    "risk_change",
)
SortKey = Literal["expected_arr_lost", "risk", "arr", "days_to_renewal", "health_score", "risk_change"]
HISTORY_COLUMNS: tuple[str, ...] = (
    "account_id",
    "snapshot_date",
    "scored_at",
    "risk",
    "risk_tier",
    "model_version",
)
TOP_REASONS = 3


class TierThresholds(Section):
    """Risk at or above `high` is high; at or above `medium` is medium; else low."""

    high: float = Field(default=0.3, gt=0.0, le=1.0)
    medium: float = Field(default=0.15, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> TierThresholds:
        if self.medium > self.high:
            raise ValueError("medium must be <= high")
        return self


class ScoreParams(Section):
    """The `score` section of params.yaml."""

    tiers: TierThresholds = TierThresholds()


def assign_tiers(risk: np.ndarray, tiers: TierThresholds) -> np.ndarray:
    """Risk tier per probability (`high`/`medium`/`low`)."""
    risk = np.asarray(risk, dtype=float)
    return np.where(risk >= tiers.high, "high", np.where(risk >= tiers.medium, "medium", "low"))


def health_component_columns(columns: Sequence[str]) -> list[str]:
    """The `health_<component>` columns (not the overall score or tier)."""
    return [c for c in columns if c.startswith("health_") and c not in ("health_score", "health_tier")]


def reasons_from_explanations(explanations: pd.DataFrame, top_n: int = TOP_REASONS) -> dict[str, list[dict]]:
    """Account -> its top reasons as dicts (text, family, action, feature, value, shap, playbook_id)."""
    if explanations.empty:
        return {}
    exp = explanations.sort_values(["account_id", "rank"])
    exp = exp[exp["rank"] <= top_n]
    out: dict[str, list[dict]] = {}
    has_pid = "playbook_id" in exp.columns
    row: dict[str, Any]
    for row in exp.to_dict(orient="records"):  # type: ignore[assignment]
        action, pid = row.get("playbook_action"), row.get("playbook_id") if has_pid else None
        out.setdefault(str(row["account_id"]), []).append(
            {
                "text": str(row["reason_text"]),
                "family": str(row["reason_family"]),
                "action": None if action is None or pd.isna(action) else str(action),
                "playbook_id": None if pid is None or pd.isna(pid) else str(pid),
                "feature": str(row["feature"]),
                "value": _finite_or_none(row.get("value")),
                "shap": float(row["shap"]),
            }
        )
    return out


def _finite_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def build_scores(
    scoring: pd.DataFrame,
    risk: np.ndarray,
    reasons: Mapping[str, list[dict]],
    previous: pd.DataFrame | None,
    *,
    tiers: TierThresholds,
    model_version: str,
    scored_at: pd.Timestamp,
    currency: str,
) -> pd.DataFrame:
    """The at-risk list, ranked by expected ARR lost.

    `scoring` holds one row per account active at the scoring date, with the snapshot
    columns (arr, segment, renewal_date, days_to_renewal, billing_period), `name`, and the
    health columns. `previous` is the score history without the rows this run replaces.
    `currency` (ISO 4217) is the unit of `arr` and `expected_arr_lost`: the last column.
    """
    if len(scoring) != len(risk):
        raise ValueError("one risk per scoring row expected")
    out = pd.DataFrame({"account_id": scoring["account_id"].astype(str).to_numpy()})
    for col in ("name", "segment"):
        out[col] = scoring[col].to_numpy() if col in scoring.columns else pd.NA
    out["snapshot_date"] = scoring["snapshot_date"].to_numpy()
    out["risk"] = np.asarray(risk, dtype=float)
    out["risk_tier"] = assign_tiers(out["risk"].to_numpy(), tiers)
    for col in ["health_score", "health_tier", *health_component_columns(list(scoring.columns))]:
        out[col] = scoring[col].to_numpy() if col in scoring.columns else np.nan
    arr = pd.to_numeric(scoring["arr"], errors="coerce").to_numpy(dtype=float) if "arr" in scoring else np.nan
    out["arr"] = arr
    out["expected_arr_lost"] = out["risk"] * out["arr"]
    for col in ("renewal_date", "days_to_renewal", "billing_period"):
        out[col] = scoring[col].to_numpy() if col in scoring.columns else pd.NA
    account_reasons = [reasons.get(a, []) for a in out["account_id"]]
    out["reasons"] = [json.dumps(r, ensure_ascii=False) for r in account_reasons]
    for i in range(TOP_REASONS):
        out[f"reason_{i + 1}"] = [r[i]["text"] if len(r) > i else None for r in account_reasons]
        out[f"action_{i + 1}"] = [r[i]["action"] if len(r) > i else None for r in account_reasons]
    out["risk_change"] = _risk_change(out, previous)
    out["model_version"] = model_version
    out["scored_at"] = scored_at
    out["currency"] = currency
    out = out.sort_values(["expected_arr_lost", "risk"], ascending=False, na_position="last", kind="stable")
    return out.reset_index(drop=True)


def _risk_change(latest: pd.DataFrame, previous: pd.DataFrame | None) -> np.ndarray:
    """Risk minus the account's most recent earlier risk in the history (NaN when none)."""
    if previous is None or previous.empty:
        return np.full(len(latest), np.nan)
    last = previous.sort_values(["snapshot_date", "scored_at"]).groupby("account_id", sort=False).tail(1)
    prior = dict(zip(last["account_id"].astype(str), last["risk"].astype(float), strict=True))
    before = np.array([prior.get(a, np.nan) for a in latest["account_id"]], dtype=float)
    return latest["risk"].to_numpy(dtype=float) - before


def split_history(
    history: pd.DataFrame | None, snapshot_date: pd.Timestamp, model_version: str
) -> pd.DataFrame:
    """The history without the rows a run for (snapshot_date, model_version) replaces."""
    if history is None or history.empty:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    same = (history["snapshot_date"] == snapshot_date) & (history["model_version"] == model_version)
    return history.loc[~same].reset_index(drop=True)


def append_history(kept: pd.DataFrame, latest: pd.DataFrame) -> pd.DataFrame:
    """The history with this run's rows appended (`kept` from `split_history`)."""
    rows = latest.loc[:, list(HISTORY_COLUMNS)]
    if kept.empty:
        return rows.reset_index(drop=True)
    merged = pd.concat([kept.loc[:, list(HISTORY_COLUMNS)], rows], ignore_index=True)
    return merged.sort_values(["account_id", "snapshot_date", "scored_at"], kind="stable").reset_index(
        drop=True
    )


@dataclass(frozen=True)
class AtRiskQuery:
    """Filters and order for the at-risk list (None = no filter)."""

    segment: str | None = None
    renewal_within_days: int | None = None
    min_risk: float | None = None
    tier: str | None = None
    sort: str = "expected_arr_lost"
    descending: bool = True

    def __post_init__(self) -> None:
        if self.sort not in SORT_KEYS:
            raise InputError(f"sort: unknown key {self.sort!r}; use one of {', '.join(SORT_KEYS)}")
        if self.tier is not None and self.tier not in TIERS:
            raise InputError(f"tier: unknown tier {self.tier!r}; use one of {', '.join(TIERS)}")
        if self.min_risk is not None and not 0.0 <= self.min_risk <= 1.0:
            raise InputError("min_risk: must be between 0 and 1")
        if self.renewal_within_days is not None and self.renewal_within_days < 0:
            raise InputError("renewal_within_days: must be >= 0")


def score_columns(scores: pd.DataFrame) -> dict[str, np.ndarray]:
    """The columns `select_at_risk` needs, as numpy arrays (computed once per scores file)."""
    cols: dict[str, np.ndarray] = {
        "segment": scores["segment"].astype("string").fillna("").str.lower().to_numpy(dtype=object),
        "risk_tier": scores["risk_tier"].astype(str).to_numpy(dtype=object),
    }
    for key in SORT_KEYS:
        cols[key] = pd.to_numeric(scores[key], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return cols


def select_at_risk(columns: Mapping[str, np.ndarray], query: AtRiskQuery) -> np.ndarray:
    """Row positions matching `query`, in its order (missing sort values last)."""
    n = len(columns["risk"])
    mask = np.ones(n, dtype=bool)
    if query.segment is not None:
        mask &= columns["segment"] == query.segment.lower()
    if query.tier is not None:
        mask &= columns["risk_tier"] == query.tier
    if query.min_risk is not None:
        mask &= columns["risk"] >= query.min_risk
    if query.renewal_within_days is not None:
        days = columns["days_to_renewal"]
        mask &= (days >= 0) & (days <= query.renewal_within_days)
    idx = np.flatnonzero(mask)
    key = columns[query.sort][idx]
    missing = np.isnan(key)
    filled = np.where(missing, 0.0, -key if query.descending else key)
    # lexsort: last key is primary; missing values after all present ones, ties by position.
    order = np.lexsort((idx, filled, missing))
    return idx[order]


def filter_at_risk(scores: pd.DataFrame, query: AtRiskQuery, top: int | None = None) -> pd.DataFrame:
    """The rows of a scores frame matching `query`, ordered, at most `top`."""
    idx = select_at_risk(score_columns(scores), query)
    if top is not None:
        idx = idx[:top]
    return scores.iloc[idx].reset_index(drop=True)


def to_records(scores: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: reasons parsed, dates as ISO strings, NaN as None."""
    out = []
    plain = [c for c in scores.columns if c.startswith(("reason_", "action_"))]
    for rec in scores.drop(columns=plain).to_dict(orient="records"):
        row: dict[str, Any] = {}
        for key, v in rec.items():
            k = str(key)
            if k == "reasons":
                row[k] = json.loads(v) if isinstance(v, str) else []
            elif isinstance(v, pd.Timestamp):
                row[k] = v.isoformat()
            elif v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and not np.isfinite(v)):
                row[k] = None
            elif isinstance(v, np.generic):
                row[k] = v.item()
            else:
                row[k] = v
        out.append(row)
    return out
