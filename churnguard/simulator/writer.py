"""Writing the company's tables (clean Parquet, or dirty files) and the truth folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

EVENTS_DIR = "usage_events"


def reset_dir(path: Path) -> None:
    """Empty (or create) an output folder this stage owns."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def _to_arrow(df: pd.DataFrame) -> pa.Table:
    """Arrow table with microsecond timestamps (UTC when zone-aware), no pandas index."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type):
            fields.append(pa.field(f.name, pa.timestamp("us", tz=f.type.tz)))
        else:
            fields.append(f)
    return table.cast(pa.schema(fields)).replace_schema_metadata(None)


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    pq.write_table(_to_arrow(df), path, compression="zstd")


def write_table(table: pa.Table, path: Path) -> None:
    pq.write_table(table.replace_schema_metadata(None), path, compression="snappy")


def part_path(out: Path, index: int) -> Path:
    return out / EVENTS_DIR / f"part-{index:05d}.parquet"


def write_json(obj: object, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_marker(path: Path, text: str) -> None:
    reset_dir(path)
    (path / "SKIPPED.txt").write_text(text + "\n", encoding="utf-8")
