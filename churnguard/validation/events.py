"""Validate the usage-event log without holding it in memory.

Pass 1 copies the input parts (Parquet read by DuckDB; CSV decoded in chunks) into
Parquet buckets by a hash of account_id, with provenance columns. Every rule that
compares rows (duplicates, time order, per account) stays inside one bucket, so pass 2
classifies one bucket at a time with the same SQL as the small tables and writes one
clean part per bucket, sorted by account_id and timestamp. Peak memory is set by the
bucket size (`chunk_rows`), not by the size of the log.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churnguard.contract import TABLES
from churnguard.validation.frames import run_sql
from churnguard.validation.inputs import (
    column_renames,
    iter_csv_chunks,
    parquet_columns,
    parquet_rows,
    relative,
)
from churnguard.validation.rules import (
    META_COLUMNS,
    RuleContext,
    add_counts,
    check_invariant,
    check_required_columns,
    classify_sql,
    clean_select,
    counts_sql,
    empty_report,
    out_of_order_sql,
    quarantine_select,
    quote,
)

log = logging.getLogger(__name__)
EVENTS = TABLES["usage_events"]


@dataclass(frozen=True)
class StagedEvents:
    """The bucketed copy of the event log made by pass 1."""

    buckets: list[Path]  # one folder per bucket, possibly empty
    rows: int
    columns: dict[str, str]  # original column -> DuckDB type


def _path_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + p.as_posix().replace("'", "''") + "'" for p in paths) + "]"


def stage_events(
    con: duckdb.DuckDBPyConnection, files: list[Path], root: Path, work: Path, chunk_rows: int
) -> StagedEvents:
    """Pass 1: copy the event parts into hash buckets of about `chunk_rows` rows each."""
    parquet = [p for p in files if p.suffix.lower() == ".parquet"]
    csvs = [p for p in files if p.suffix.lower() == ".csv"]
    # Parts sharing a header spelling are read together; renames bring them to the contract.
    groups: dict[tuple[tuple[str, str], ...], list[Path]] = {}
    for path in parquet:
        names = parquet_columns(path)
        mapping = column_renames(names, EVENTS, str(path))
        check_required_columns(EVENTS, [mapping.get(c, c) for c in names], str(path))
        groups.setdefault(tuple(sorted(mapping.items())), []).append(path)
    csv_dir = work / "csv_parts"
    csv_parts: list[Path] = []
    for i, path in enumerate(csvs):
        for j, chunk in enumerate(iter_csv_chunks(path, chunk_rows=max(chunk_rows // 4, 1))):
            chunk = chunk.rename(columns=column_renames(list(chunk.columns), EVENTS, str(path)))
            if j == 0:
                check_required_columns(EVENTS, list(chunk.columns), str(path))
            chunk = chunk.assign(_src_file=relative(path, root))
            csv_dir.mkdir(parents=True, exist_ok=True)
            part = csv_dir / f"{i:05d}-{j:05d}.parquet"
            pq.write_table(pa.Table.from_pandas(chunk, preserve_index=False), part)
            csv_parts.append(part)
    rows = sum(parquet_rows(p) for p in parquet) + sum(parquet_rows(p) for p in csv_parts)
    n_buckets = max(1, math.ceil(rows / max(chunk_rows, 1)))
    prefix = root.as_posix().rstrip("/") + "/"
    selects = []
    for renames, paths in groups.items():
        renamed = ", ".join(f"{quote(old)} AS {quote(new)}" for old, new in renames)
        star = f"* EXCLUDE (filename, file_row_number{''.join(', ' + quote(o) for o, _ in renames)})"
        selects.append(
            f"SELECT {star}, {renamed + ', ' if renamed else ''}"
            f"CASE WHEN starts_with(filename, '{prefix}') THEN filename[{len(prefix) + 1}:] "
            f"ELSE filename END AS _src_file, CAST(file_row_number AS BIGINT) AS _src_row, "
            f"FALSE AS _enc_repaired FROM read_parquet({_path_list(paths)}, union_by_name = true, "
            f"filename = true, file_row_number = true)"
        )
    if csv_parts:
        selects.append(f"SELECT * FROM read_parquet({_path_list(csv_parts)}, union_by_name = true)")
    run_sql(con, f"CREATE OR REPLACE TEMP VIEW events_src AS {' UNION ALL BY NAME '.join(selects)}")
    describe = con.execute("SELECT column_name, column_type FROM (DESCRIBE events_src)").fetchall()
    columns = {name: typ for name, typ in describe if name not in META_COLUMNS}
    bucket_dir = work / "buckets"
    # A partitioned write buffers up to this many rows per open bucket: keep it small so
    # the buffers stay bounded when the log (and so the number of buckets) grows.
    run_sql(con, "SET partitioned_write_flush_threshold = 65536")
    account = f"trim(CAST({quote('account_id')} AS VARCHAR))"
    run_sql(
        con,
        f"COPY (SELECT *, CAST(hash(coalesce({account}, '')) % {n_buckets} AS BIGINT) AS _bucket "
        f"FROM events_src) TO '{bucket_dir.as_posix()}' "
        "(FORMAT parquet, PARTITION_BY (_bucket), OVERWRITE_OR_IGNORE true, COMPRESSION lz4_raw)",
    )
    run_sql(con, "DROP VIEW events_src")
    shutil.rmtree(csv_dir, ignore_errors=True)
    buckets = [bucket_dir / f"_bucket={b}" for b in range(n_buckets)]
    log.info("usage_events: %d rows in %d file(s) staged into %d bucket(s)", rows, len(files), n_buckets)
    return StagedEvents(buckets=buckets, rows=rows, columns=columns)


def bucket_relation(bucket: Path, columns: dict[str, str]) -> str:
    """A relation over one bucket's files with the staged columns (bucket column dropped)."""
    cols = ", ".join(quote(c) for c in [*columns, *META_COLUMNS])
    return f"(SELECT {cols} FROM read_parquet('{bucket.as_posix()}/*.parquet', hive_partitioning = false))"


def staged_relation(staged: StagedEvents) -> str:
    """A relation over all buckets (for the data-end inference)."""
    cols = ", ".join(quote(c) for c in [*staged.columns, *META_COLUMNS])
    root = staged.buckets[0].parent.as_posix()
    return f"(SELECT {cols} FROM read_parquet('{root}/*/*.parquet', hive_partitioning = false))"


def validate_events(
    con: duckdb.DuckDBPyConnection,
    staged: StagedEvents,
    out_dir: Path,
    quarantine_path: Path,
    work: Path,
    ctx: RuleContext,
) -> dict:
    """Pass 2: classify each bucket, write clean parts and the quarantine; return the report."""
    events_dir = out_dir / "usage_events"
    events_dir.mkdir(parents=True, exist_ok=True)
    q_dir = work / "quarantine_parts"
    q_dir.mkdir(parents=True, exist_ok=True)
    types = {**staged.columns, "_src_file": "VARCHAR", "_src_row": "BIGINT", "_enc_repaired": "BOOLEAN"}
    originals = list(staged.columns)
    report = empty_report()
    written = 0
    for b, bucket in enumerate(staged.buckets):
        if not bucket.is_dir():
            continue
        sql = classify_sql(EVENTS, bucket_relation(bucket, staged.columns), types, ctx)
        run_sql(con, f"CREATE OR REPLACE TEMP TABLE ev_res AS {sql}")
        counts = con.execute(counts_sql("ev_res")).fetchall()
        late = con.execute(out_of_order_sql(EVENTS, "ev_res")).fetchall()[0][0]
        report = add_counts(report, counts, late)
        clean_n = sum(int(n) for reason, n, *_ in counts if reason is None)
        if clean_n:
            run_sql(
                con,
                f"COPY (SELECT {clean_select(EVENTS)} FROM ev_res WHERE reason IS NULL "
                f"ORDER BY v_account_id, v_timestamp, _src_file, _src_row) "
                f"TO '{(events_dir / f'part-{b:05d}.parquet').as_posix()}' (FORMAT parquet)",
            )
            written += 1
        if clean_n < sum(int(n) for _, n, *_ in counts):
            run_sql(
                con,
                f"COPY (SELECT {quarantine_select(originals)} FROM ev_res WHERE reason IS NOT NULL) "
                f"TO '{(q_dir / f'q-{b:05d}.parquet').as_posix()}' (FORMAT parquet)",
            )
        run_sql(con, "DROP TABLE ev_res")
    if written == 0:
        # Keep the glob readable: an empty part with the clean schema.
        _write_empty_events(events_dir / "part-00000.parquet")
    _merge_quarantine(con, q_dir, quarantine_path, originals)
    check_invariant("usage_events", report)
    if report["rows_in"] != staged.rows:
        raise RuntimeError(f"usage_events: {staged.rows} rows read but {report['rows_in']} classified")
    return report


def _write_empty_events(path: Path) -> None:
    schema = pa.schema(
        [
            ("account_id", pa.string()),
            ("user_id", pa.string()),
            ("timestamp", pa.timestamp("us")),
            ("event", pa.string()),
            ("quantity", pa.float64()),
            ("event_id", pa.string()),
        ]
    )
    pq.write_table(schema.empty_table(), path)


def _merge_quarantine(
    con: duckdb.DuckDBPyConnection, q_dir: Path, target: Path, originals: list[str]
) -> None:
    parts = sorted(q_dir.glob("q-*.parquet"))
    if parts:
        run_sql(
            con,
            f"COPY (SELECT * FROM read_parquet({_path_list(parts)}) ORDER BY source_file, source_row) "
            f"TO '{target.as_posix()}' (FORMAT parquet)",
        )
    else:
        empty = pd.DataFrame(
            {c: pd.Series([], dtype="str") for c in [*originals, "reason", "source_file"]}
            | {"source_row": pd.Series([], dtype="int64")}
        )
        empty.to_parquet(target, index=False)
