"""Find and read the input folder of the data contract (Parquet or CSV, any encoding)."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from churnguard.contract import TABLES, Table
from churnguard.errors import InputError
from churnguard.validation.encoding import decode_bytes
from churnguard.validation.rules import check_required_columns

SUFFIXES = (".parquet", ".csv")


def find_inputs(input_dir: Path) -> dict[str, list[Path]]:
    """Map each present table to its files (sorted); raise for a missing required table.

    A table is `<name>.parquet` or `<name>.csv`; the events may also be a folder
    `usage_events/` of Parquet or CSV parts (searched recursively).
    """
    if not input_dir.is_dir():
        raise InputError(f"{input_dir}: input folder not found")
    found: dict[str, list[Path]] = {}
    for name, table in TABLES.items():
        files = [
            input_dir / f"{name}{suffix}" for suffix in SUFFIXES if (input_dir / f"{name}{suffix}").is_file()
        ]
        folder = input_dir / name
        if folder.is_dir():
            parts = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if name != "usage_events":
                raise InputError(f"{folder}: only usage_events may be a folder of parts")
            if not parts:
                raise InputError(f"{folder}: folder holds no .parquet or .csv parts")
            files += parts
        if len(files) > 1 and name != "usage_events":
            raise InputError(f"{input_dir}: table {name!r} given twice: {', '.join(p.name for p in files)}")
        if len(files) > 1 and any(p.parent == input_dir for p in files):
            raise InputError(f"{input_dir}: usage_events given both as a file and as a folder")
        if files:
            found[name] = files
        elif table.required:
            raise InputError(
                f"{input_dir}: required table {name!r} not found (expected {name}.parquet or {name}.csv)"
            )
    return found


def column_renames(columns: list[str], table: Table, source: str) -> dict[str, str]:
    """Header spellings of contract columns to rename ('Account ID', ' account-id' ->
    'account_id'); InputError when two headers mean the same contract column."""
    wanted = set(table.column_names)
    renames: dict[str, str] = {}
    for name in columns:
        if name in wanted:
            continue
        canonical = re.sub(r"[\s\-]+", "_", name.strip().lower())
        if canonical in wanted:
            renames[name] = canonical
    targets = [*renames.values(), *(c for c in columns if c in wanted)]
    for target in set(targets):
        if targets.count(target) > 1:
            spellings = [c for c in columns if c == target or renames.get(c) == target]
            raise InputError(f"{source}: columns {spellings} all mean {target!r}; keep one")
    return renames


def fingerprint(path: Path, root: Path) -> dict[str, object]:
    """Size and SHA-256 of an input file, so a report names exactly what it validated."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"file": relative(path, root), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def relative(path: Path, root: Path) -> str:
    """The file's path relative to the input folder, as written in quarantine tables."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def parquet_columns(path: Path) -> list[str]:
    """Column names of a Parquet file; InputError when it cannot be read."""
    try:
        return list(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises several types for a corrupt or foreign file
        raise InputError(f"{path}: cannot be read as Parquet: {_one_line(exc)}") from None


def parquet_rows(path: Path) -> int:
    """Row count from a Parquet footer."""
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception as exc:
        raise InputError(f"{path}: cannot be read as Parquet: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _decoded_lines(fh: BinaryIO, state: dict[str, bool]) -> Iterator[str]:
    """Decode a file line by line; sets state['repaired'] when a line was not UTF-8."""
    first = True
    for raw in fh:
        text, repaired = decode_bytes(raw)
        if first:
            text = text.removeprefix("\ufeff")
            first = False
        if repaired:
            state["repaired"] = True
        yield text


def iter_csv_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Read a CSV as string columns in chunks, with `_src_row` (0-based data row) and
    `_enc_repaired` (a line of the row was not UTF-8 and was decoded by detection)."""
    state = {"repaired": False}
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {_one_line(exc)}") from None
    with fh:
        reader = csv.reader(_decoded_lines(fh, state))
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: empty file (no header row)") from None
        except csv.Error as exc:
            raise InputError(f"{path}: cannot be read as CSV: {_one_line(exc)}") from None
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise InputError(f"{path}: duplicate column names in the header")
        state["repaired"] = False
        start = 0
        rows: list[list[str | None]] = []
        flags: list[bool] = []
        width = len(header)
        try:
            for record in reader:
                if not record:
                    continue  # a blank line is not a row
                # A short row's missing cells are empty; extra cells are kept in `_extra`.
                cells: list[str | None] = list(record[:width]) + [None] * (width - len(record))
                extra = ",".join(record[width:]) if len(record) > width else None
                rows.append([*cells, extra])
                flags.append(state["repaired"])
                state["repaired"] = False
                if len(rows) >= chunk_rows:
                    yield _chunk(header, rows, flags, start)
                    start += len(rows)
                    rows, flags = [], []
        except csv.Error as exc:
            raise InputError(
                f"{path}: cannot be read as CSV near row {start + len(rows)}: {_one_line(exc)}"
            ) from None
        if rows or start == 0:
            yield _chunk(header, rows, flags, start)


def _chunk(header: list[str], rows: list[list[str | None]], flags: list[bool], start: int) -> pd.DataFrame:
    columns = [*header, "_extra"]
    frame = (
        pd.DataFrame(rows, columns=columns, dtype="str")
        if rows
        else pd.DataFrame({c: pd.Series([], dtype="str") for c in columns})
    )
    if frame["_extra"].isna().all():
        frame = frame.drop(columns="_extra")
    frame["_src_row"] = np.arange(start, start + len(rows), dtype=np.int64)
    frame["_enc_repaired"] = np.asarray(flags, dtype=bool)
    return frame


def read_table_file(path: Path, table: Table, root: Path) -> pd.DataFrame:
    """Read a small table's file (Parquet or CSV) with provenance columns; check columns."""
    if path.suffix.lower() == ".csv":
        frame = pd.concat(list(iter_csv_chunks(path, chunk_rows=1 << 62)), ignore_index=True)
    else:
        parquet_columns(path)
        try:
            frame = pq.read_table(path).to_pandas()
        except Exception as exc:
            raise InputError(f"{path}: cannot be read as Parquet: {_one_line(exc)}") from None
        frame["_src_row"] = np.arange(len(frame), dtype=np.int64)
    frame = frame.rename(columns=column_renames(list(frame.columns), table, str(path)))
    check_required_columns(table, list(frame.columns), str(path))
    frame["_src_file"] = relative(path, root)
    return frame
