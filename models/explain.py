"""Global and per-account explanation frames built from SHAP contributions and reasons."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from models.reasons import Reason

EXPLANATION_COLUMNS = [
    "account_id", "snapshot_date", "rank", "feature", "shap", "value",
    "reason_family", "reason_text", "playbook_id", "playbook_action",
]  # fmt: skip


def mean_abs_shap(contributions: np.ndarray, feature_names: Sequence[str]) -> pd.Series:
    """Mean |SHAP| per feature (bias column excluded), largest first."""
    values = np.abs(np.asarray(contributions)[:, : len(feature_names)]).mean(axis=0)
    return pd.Series(values, index=list(feature_names), name="mean_abs_shap").sort_values(ascending=False)


def explanations_frame(keys: pd.DataFrame, reasons: list[list[Reason]]) -> pd.DataFrame:
    """One row per (account, snapshot date, reason rank) in the explanations.parquet layout."""
    rows = []
    for (account_id, snapshot_date), rs in zip(
        keys[["account_id", "snapshot_date"]].itertuples(index=False, name=None), reasons, strict=True
    ):
        for rank, r in enumerate(rs, start=1):
            rows.append(
                (
                    account_id,
                    snapshot_date,
                    rank,
                    r.feature,
                    r.shap,
                    r.value,
                    r.family,
                    r.text,
                    r.playbook_id,
                    r.action,
                )
            )
    frame = pd.DataFrame(rows, columns=EXPLANATION_COLUMNS)
    frame["account_id"] = frame["account_id"].astype(str)
    frame["snapshot_date"] = pd.to_datetime(frame["snapshot_date"]).astype("datetime64[us]")
    frame["rank"] = frame["rank"].astype("int64")
    frame["shap"] = frame["shap"].astype(float)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    return frame
