"""Stage `snapshots`: snapshot calendar, eligibility, churn labels and censoring.

Reads the validated tables and writes one row per (account_id, snapshot_date) with the
label and the contract facts later stages need (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import duckdb
import pandas as pd

from churnguard import tables
from churnguard.errors import InputError
from churnguard.params import DEFAULT_PARAMS, load_section
from churnguard.stage import run_stage
from features.snapshots import SnapshotParams, build_snapshots

log = logging.getLogger(__name__)


def read_clean(validated: Path, name: str) -> pd.DataFrame | None:
    """A clean table from the validated folder, or None when the (optional) table is absent."""
    return tables.read_clean(validated, name)


def events_glob(validated: Path) -> str:
    """The glob of the validated usage-event Parquet parts (error when there are none)."""
    folder = validated / tables.EVENTS_DIR
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        raise InputError(f"{folder}: no usage_events Parquet parts in the validated folder")
    return tables.events_glob(validated)


def read_data_end(validated: Path) -> pd.Timestamp:
    """`data_end` from validation_report.json, as a naive UTC timestamp."""
    ts = pd.Timestamp(tables.data_end(validated))
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _scan_activity(glob: str) -> tuple[pd.Timestamp, pd.DataFrame]:
    """First event time and the distinct (account_id, day) pairs with activity (streamed in DuckDB)."""
    con = duckdb.connect()
    try:
        src = f"read_parquet('{glob}')"
        first = con.execute(f"SELECT min(timestamp) FROM {src}").fetchone()
        days = con.execute(
            f"SELECT DISTINCT account_id, CAST(CAST(timestamp AS DATE) AS TIMESTAMP) AS day FROM {src}"
        ).df()
    finally:
        con.close()
    if first is None or first[0] is None:
        raise InputError(f"{glob}: the usage_events table is empty")
    return pd.Timestamp(first[0]), days


def run(*, validated: Path, out: Path, params: SnapshotParams) -> pd.DataFrame:
    """Build the snapshot table from the validated folder and write it to `out`."""
    accounts = read_clean(validated, "accounts")
    if accounts is None:
        raise InputError(f"{validated}/accounts.parquet: required table not found")
    subscriptions = read_clean(validated, "subscriptions")
    data_end = read_data_end(validated)
    data_start, activity_days = _scan_activity(events_glob(validated))
    snaps = build_snapshots(accounts, subscriptions, activity_days, data_start, data_end, params)
    out.parent.mkdir(parents=True, exist_ok=True)
    snaps.to_parquet(out, index=False)
    labelled = snaps[snaps["label_observable"]]
    log.info(
        "snapshots: %d rows, %d dates (%s .. %s), %d labelled, churn rate %.3f",
        len(snaps),
        snaps["snapshot_date"].nunique(),
        snaps["snapshot_date"].min(),
        snaps["snapshot_date"].max(),
        len(labelled),
        float(labelled["label"].mean()) if len(labelled) else float("nan"),
    )
    return snaps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--validated", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = load_section("snapshots", SnapshotParams, args.params)
    run(validated=args.validated, out=args.out, params=params)


if __name__ == "__main__":
    run_stage(main)
