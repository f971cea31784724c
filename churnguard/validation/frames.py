"""Validate one in-memory table: raw frame in, clean frame + quarantine frame + counts out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from churnguard.contract import Table, clean_dtypes
from churnguard.validation.encoding import repair_text
from churnguard.validation.rules import (
    META_COLUMNS,
    RuleContext,
    add_counts,
    check_invariant,
    classify_sql,
    clean_select,
    counts_sql,
    empty_report,
    out_of_order_sql,
    quarantine_select,
)


@dataclass(frozen=True)
class TableResult:
    """The outcome of validating one table."""

    clean: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict


def run_sql(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Execute a statement to completion (DuckDB 2 keeps a pending result otherwise)."""
    con.execute(sql).fetchall()


def connect(memory_limit: str | None = None, temp_directory: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that reads and writes timestamps as UTC wall time."""
    con = duckdb.connect()
    run_sql(con, "SET TimeZone = 'UTC'")
    # Row order is carried explicitly (_src_file, _src_row), so DuckDB may write in parallel.
    run_sql(con, "SET preserve_insertion_order = false")
    if memory_limit:
        run_sql(con, f"SET memory_limit = '{memory_limit}'")
    if temp_directory is not None:
        run_sql(con, f"SET temp_directory = '{temp_directory.as_posix()}'")
    return con


def repair_text_columns(raw: pd.DataFrame, table: Table) -> pd.DataFrame:
    """Undo mojibake in the table's free-text columns; flags repaired rows in `_enc_repaired`.

    Returns a new frame; the input is not modified.
    """
    out = raw.copy()
    flags = np.asarray(out["_enc_repaired"], dtype=bool).copy() if "_enc_repaired" in out else None
    if flags is None:
        flags = np.zeros(len(out), dtype=bool)
    for col in table.columns:
        if col.kind != "text" or col.name not in out.columns:
            continue
        values = out[col.name].tolist()
        fixed: list[object] = []
        for i, value in enumerate(values):
            if isinstance(value, bytes):
                from churnguard.validation.encoding import decode_bytes

                text, repaired = decode_bytes(value)
            elif isinstance(value, str):
                text, repaired = repair_text(value)
            else:
                text, repaired = value, False
            fixed.append(text)
            if repaired:
                flags[i] = True
        if values:
            out[col.name] = pd.Series(fixed, index=out.index, dtype="str")
    out["_enc_repaired"] = flags
    return out


def with_meta(raw: pd.DataFrame, source_file: str) -> pd.DataFrame:
    """Add provenance columns (`_src_file`, 0-based `_src_row`, `_enc_repaired`) when absent."""
    out = raw.copy()
    if "_src_file" not in out:
        out["_src_file"] = source_file
    if "_src_row" not in out:
        out["_src_row"] = np.arange(len(out), dtype=np.int64)
    if "_enc_repaired" not in out:
        out["_enc_repaired"] = False
    return out


def coerce_clean(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """Give a clean table the dtypes of `contract.clean_dtypes` (a new frame)."""
    dtypes: dict[str, Any] = clean_dtypes(table)
    out = frame.copy()
    for name, dtype in dtypes.items():
        if name in out.columns and str(out[name].dtype) != dtype:
            out[name] = out[name].astype(dtype)
    return out


def user_accounts_frame(users: pd.DataFrame) -> pd.DataFrame:
    """The relation `RuleContext.user_accounts` expects (`id`, `account_id`), from clean users."""
    return pd.DataFrame(
        {"id": users["user_id"].astype("str"), "account_id": users["account_id"].astype("str")}
    ).drop_duplicates("id")


def validate_frame(
    raw: pd.DataFrame,
    table: Table,
    *,
    future_cutoff: pd.Timestamp | None,
    references: dict[str, pd.Series] | None = None,
    user_accounts: pd.DataFrame | None = None,
    source_file: str = "frame",
) -> TableResult:
    """Apply the contract's rules to one table held in memory.

    `references` maps a referenced table name ('accounts', 'users') to its clean ids;
    a reference not given is not checked. `user_accounts` (the clean users' `user_id`,
    `account_id`) also checks that a row's user belongs to the row's account.
    `future_cutoff` is exclusive.
    """
    src = repair_text_columns(with_meta(raw, source_file), table)
    con = connect()
    try:
        con.register("src", src)
        refs: dict[str, str] = {}
        for name, ids in (references or {}).items():
            con.register(f"_ids_{name}", pd.DataFrame({"id": pd.Series(ids, dtype="str").dropna().unique()}))
            refs[name] = f"(SELECT DISTINCT id FROM _ids_{name})"
        pairs = None
        if user_accounts is not None:
            con.register("_user_accounts", user_accounts_frame(user_accounts))
            pairs = "_user_accounts"
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE src)").fetchall())
        ctx = RuleContext(future_cutoff=future_cutoff, references=refs, user_accounts=pairs)
        run_sql(con, f"CREATE TEMP TABLE res AS {classify_sql(table, 'src', types, ctx)}")
        clean = con.sql(
            f"SELECT {clean_select(table)} FROM res WHERE reason IS NULL ORDER BY _src_file, _src_row"
        ).df()
        originals = [c for c in types if c not in META_COLUMNS]
        quarantine = con.sql(
            f"SELECT {quarantine_select(originals)} FROM res WHERE reason IS NOT NULL "
            "ORDER BY source_file, source_row"
        ).df()
        late = con.execute(out_of_order_sql(table, "res")).fetchall()[0][0]
        report = add_counts(empty_report(), con.execute(counts_sql("res")).fetchall(), late)
    finally:
        con.close()
    check_invariant(table.name, report)
    if report["rows_in"] != len(raw):
        raise RuntimeError(f"{table.name}: {len(raw)} rows read but {report['rows_in']} classified")
    return TableResult(clean=coerce_clean(clean, table), quarantine=quarantine, report=report)
