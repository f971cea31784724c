"""Readers of the validated tables, used by every stage after `validate`.

The validated folder holds `<table>.parquet` for each present small table,
`usage_events/part-*.parquet` (each part sorted by account_id, timestamp) and
`validation_report.json`. Clean dtypes: `churnguard.contract.clean_dtypes`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard.contract import TABLES, clean_dtypes
from churnguard.errors import InputError

REPORT_NAME = "validation_report.json"
EVENTS_DIR = "usage_events"


def read_clean(validated_dir: Path, name: str, columns: list[str] | None = None) -> pd.DataFrame | None:
    """A clean table with the contract's dtypes; None when an optional table is absent.

    `usage_events` is read whole (all parts): fine for small data, but heavy stages
    should query `events_glob` with DuckDB instead.
    """
    if name not in TABLES:
        raise KeyError(f"no table {name!r} in the data contract")
    validated_dir = Path(validated_dir)
    path = validated_dir / EVENTS_DIR if name == "usage_events" else validated_dir / f"{name}.parquet"
    if not path.exists():
        if TABLES[name].required:
            raise InputError(f"{path}: required clean table {name!r} not found; run the validate stage")
        return None
    frame = pd.read_parquet(path, columns=columns)
    dtypes: dict[str, Any] = clean_dtypes(TABLES[name])
    out = frame.copy()
    for col, dtype in dtypes.items():
        if col in out.columns and str(out[col].dtype) != dtype:
            out[col] = out[col].astype(dtype)
    return out


def events_glob(validated_dir: Path) -> str:
    """A glob of the clean event parts for DuckDB's `read_parquet`."""
    return (Path(validated_dir) / EVENTS_DIR / "*.parquet").as_posix()


def read_report(validated_dir: Path) -> dict[str, Any]:
    """The validation report (counts per table and reason, data end, inputs)."""
    path = Path(validated_dir) / REPORT_NAME
    if not path.exists():
        raise InputError(f"{path}: validation report not found; run the validate stage")
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def data_end(validated_dir: Path) -> pd.Timestamp:
    """The data's end ("as of") as a naive UTC timestamp, from the validation report."""
    return pd.Timestamp(read_report(validated_dir)["data_end"]).as_unit("us")
