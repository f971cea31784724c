"""The validation rules of the data contract, as one SQL query per table.

The same query classifies a three-row frame in a unit test and a bucket of millions of
events read from Parquet, so small tables and the streamed event log obey one
implementation. Input: a relation with the table's columns in any types (strings from
CSV, typed Parquet columns) plus `_src_file`, `_src_row` and `_enc_repaired`. Output:
one row per input row with the clean typed values (`v_<col>`), the original values as
strings (`o_<col>`), the quarantine `reason` (NULL when clean, else the first reason in
`QUARANTINE_REASONS` order the row fails) and one flag per repair code.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from churnguard.contract import (
    FALSE_TOKENS,
    MISSING_TOKENS,
    QUARANTINE_REASONS,
    REPAIR_CODES,
    TRUE_TOKENS,
    Column,
    Table,
)
from churnguard.errors import InputError

_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                  "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "REAL")  # fmt: skip
_SQL_TYPES = {
    "id": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "float": "DOUBLE",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    "category": "VARCHAR",
    "text": "VARCHAR",
}
META_COLUMNS = ("_src_file", "_src_row", "_enc_repaired")


@dataclass(frozen=True)
class RuleContext:
    """What the rules need besides the rows: the future cut-off and the reference tables."""

    future_cutoff: pd.Timestamp | None  # exclusive: a timestamp >= this is in the future
    references: dict[str, str]  # referenced table name -> SQL relation with one `id` column
    # SQL relation (`id`, `account_id`) of the clean users: when given, it is the `users`
    # reference, and a row whose user belongs to another account is `user_account_mismatch`.
    user_accounts: str | None = None


def quote(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in_list(expr: str, values: tuple[str, ...]) -> str:
    """`expr` is one of `values` (a scalar list lookup: DuckDB plans `IN (...)` as a join)."""
    return "list_contains([" + ", ".join(_lit(v) for v in values) + f"], {expr})"


def _is_numeric(sql_type: str) -> bool:
    return sql_type.upper().startswith(_NUMERIC_TYPES) or sql_type.upper().startswith("DECIMAL")


def _is_string(sql_type: str) -> bool:
    return sql_type.upper() in ("VARCHAR", "BLOB") or sql_type.upper().startswith("VARCHAR")


def check_required_columns(table: Table, columns: list[str], source: str) -> None:
    """Raise InputError naming the file and the first missing required column."""
    missing = [c for c in table.required_columns if c not in columns]
    if missing:
        raise InputError(f"{source}: missing required column {missing[0]!r} of table {table.name!r}")


def _trimmed(col: Column, sql_type: str) -> str:
    """The value as a trimmed string, NULL for empty / missing tokens.

    A typed timestamp or number column is passed through as it is: only its NULLs
    matter, and casting millions of values to text and back is the slow path.
    """
    ref = quote(col.name)
    typed_ts = col.kind == "timestamp" and (
        sql_type.upper().startswith("TIMESTAMP") or sql_type.upper() == "DATE"
    )
    typed_num = col.kind in ("float", "int") and _is_numeric(sql_type)
    if typed_ts or typed_num:
        return ref
    as_text = ref if _is_string(sql_type) else f"CAST({ref} AS VARCHAR)"
    longest = max(len(t) for t in MISSING_TOKENS)
    return (
        f"CASE WHEN length(trim({as_text})) <= {longest} "
        f"AND {_in_list(f'lower(trim({as_text}))', MISSING_TOKENS)} THEN NULL ELSE trim({as_text}) END"
    )


def _parse(col: Column, sql_type: str, s: str) -> str:
    """The parse of one column: typed timestamp / double / bool / canonical category."""
    ref = quote(col.name)
    upper = sql_type.upper()
    if col.kind == "timestamp":
        if upper.startswith("TIMESTAMP") or upper == "DATE":
            return f"CAST({ref} AS TIMESTAMP)"  # session time zone is UTC
        # 'Z' (UTC) strings take the cheaper zone-less parse; offsets go through TIMESTAMPTZ.
        return (
            f"CASE WHEN {s}[-1] = 'Z' THEN try_cast({s} AS TIMESTAMP) "
            f"ELSE CAST(try_cast({s} AS TIMESTAMPTZ) AS TIMESTAMP) END"
        )
    if col.kind in ("float", "int"):
        return f"CAST({ref} AS DOUBLE)" if _is_numeric(upper) else f"try_cast({s} AS DOUBLE)"
    if col.kind == "bool":
        if upper == "BOOLEAN":
            return ref
        return (
            f"CASE WHEN {_in_list(f'lower({s})', TRUE_TOKENS)} THEN TRUE "
            f"WHEN {_in_list(f'lower({s})', FALSE_TOKENS)} THEN FALSE END"
        )
    if col.kind == "category":
        if col.case == "upper":
            return f"upper({s})"
        # The regexp is the costly part: skip it for values already in canonical form.
        return (
            f"CASE WHEN {s} = lower({s}) AND NOT contains({s}, ' ') AND NOT contains({s}, '-') "
            f"AND NOT contains({s}, chr(9)) AND NOT contains({s}, chr(10)) AND NOT contains({s}, chr(13)) "
            f"THEN {s} ELSE regexp_replace(lower({s}), '[\\s\\-]+', '_', 'g') END"
        )
    return s


def _typed(col: Column, s: str, p: str) -> tuple[str, str | None]:
    """(clean value, 'cannot parse' flag or None) from the trimmed string `s` and parse `p`.

    Parsing happens once in an earlier layer (`p` is a column): referring to a parse
    expression several times would make DuckDB evaluate it several times.
    """
    if col.kind == "timestamp":
        return p, f"({s} IS NOT NULL AND {p} IS NULL)"
    if col.kind in ("float", "int"):
        bad = f"({s} IS NOT NULL AND ({p} IS NULL OR NOT isfinite({p})"
        if col.kind == "int":
            bad += f" OR {p} <> floor({p}) OR abs({p}) > 9e15"
        bad += "))"
        value = f"CASE WHEN {bad} THEN NULL ELSE {p} END"
        if col.default is not None:
            value = f"CASE WHEN {s} IS NULL THEN {float(col.default)!r} ELSE {value} END"
        return value, bad
    return p, None


def classify_sql(table: Table, source: str, source_types: dict[str, str], ctx: RuleContext) -> str:
    """SQL classifying every row of `source` (a relation) against the contract's rules."""
    present = [c for c in table.columns if c.name in source_types]
    check_required_columns(table, list(source_types), source)
    originals = [c for c in source_types if c not in META_COLUMNS]

    layer1 = [f"{quote(m)}" for m in META_COLUMNS]
    layer1 += [f"{quote(c)} AS {quote('o_' + c)}" for c in originals]
    layer1 += [f"{_trimmed(c, source_types[c.name])} AS {quote('s_' + c.name)}" for c in present]
    layer1 += [quote(c.name) for c in present]
    parsed = [quote(m) for m in META_COLUMNS] + [quote("o_" + c) for c in originals]
    parsed += [quote("s_" + c.name) for c in present]
    parsed += [
        f"{_parse(c, source_types[c.name], quote('s_' + c.name))} AS {quote('p_' + c.name)}" for c in present
    ]

    values: list[str] = []
    missing: list[str] = []
    ts_bad: list[str] = []
    num_bad: list[str] = []
    cat_bad: list[str] = []
    rng_bad: list[str] = []
    order_bad: list[str] = []
    future_bad: list[str] = []
    normalised: list[str] = []
    defaulted: list[str] = []
    for col in table.columns:
        target = quote("v_" + col.name)
        if col not in present:
            default = "NULL" if col.default is None else repr(float(col.default))
            values.append(f"CAST({default} AS {_SQL_TYPES[col.kind]}) AS {target}")
            continue
        s = quote("s_" + col.name)
        value, bad = _typed(col, s, quote("p_" + col.name))
        if col.kind == "int":
            value = f"CAST({value} AS BIGINT)"
        values.append(f"{value} AS {target}")
        if col.required:
            missing.append(f"{s} IS NULL")
        if bad is not None:
            (ts_bad if col.kind == "timestamp" else num_bad).append(bad)
        if col.kind == "bool":
            cat_bad.append(f"({s} IS NOT NULL AND {value} IS NULL)")
        if col.allowed is not None:
            cat_bad.append(f"({s} IS NOT NULL AND NOT {_in_list(value, col.allowed)})")
        if col.kind == "category":
            original = f"CAST({quote('o_' + col.name)} AS VARCHAR)"
            normalised.append(f"({s} IS NOT NULL AND {value} <> {original})")
        if col.default is not None:
            defaulted.append(f"{s} IS NULL")
    v = {c.name: quote("v_" + c.name) for c in table.columns}
    for col in present:
        if col.min_value is not None:
            rng_bad.append(f"{v[col.name]} < {col.min_value!r}")
        if col.max_value is not None:
            rng_bad.append(f"{v[col.name]} > {col.max_value!r}")
        if col.kind == "timestamp" and not col.future_ok and ctx.future_cutoff is not None:
            future_bad.append(f"{v[col.name]} >= TIMESTAMP '{ctx.future_cutoff.isoformat(sep=' ')}'")
    for earlier, later in table.order_rules:
        order_bad.append(f"{v[later]} < {v[earlier]}")

    def any_of(exprs: list[str]) -> str:
        return "(" + " OR ".join(f"coalesce({e}, FALSE)" for e in exprs) + ")" if exprs else "FALSE"

    # Checks on the raw strings are evaluated in layer 2, checks on typed values in layer 3.
    # A CSV row with more cells than the header (e.g. an unquoted comma) cannot be trusted.
    malformed = [f"{quote('o__extra')} IS NOT NULL"] if "_extra" in originals else []
    raw_checks = {
        "malformed_row": malformed,
        "missing_required": missing,
        "unparseable_timestamp": ts_bad,
        "unparseable_number": num_bad,
        "unknown_category": cat_bad,
    }
    value_checks = {"out_of_range": rng_bad, "bad_order": order_bad, "future_timestamp": future_bad}
    first_reason = " ".join(
        [f"WHEN _f_{code} THEN {_lit(code)}" for code in raw_checks]
        + [f"WHEN {any_of(exprs)} THEN {_lit(code)}" for code, exprs in value_checks.items()]
    )
    layer2 = (
        [quote(m) for m in META_COLUMNS]
        + [quote("o_" + c) for c in originals]
        + values
        + [f"{any_of(exprs)} AS _f_{code}" for code, exprs in raw_checks.items()]
        + [
            f"{any_of(normalised)} AS _normalised",
            f"{any_of(defaulted)} AS _defaulted",
        ]
    )
    pos = "_src_file, _src_row"
    all_values = ", ".join(v[c.name] for c in table.columns)
    key_values = ", ".join(v[k] for k in table.key)
    key_hash = f"hash({key_values})"
    # A key with an optional column (usage_events.event_id) identifies a row only when
    # given: rows without it are never duplicates of each other (see docs/data_contract.md).
    optional_key = [k for k in table.key if not table.column(k).required]
    keyed = " AND ".join(f"{v[k]} IS NOT NULL" for k in optional_key) or "TRUE"
    present_names = {c.name for c in present}
    ref_joins, ref_checks, pair_checks = [], [], []
    for i, (column, ref_table) in enumerate(table.references):
        relation = ctx.references.get(ref_table)
        pair = ref_table == "users" and ctx.user_accounts is not None and "account_id" in present_names
        if pair:
            relation = ctx.user_accounts
        if relation is None or column not in present_names:
            continue
        alias = f"_r{i}"
        ref_joins.append(f"LEFT JOIN {relation} AS {alias} ON {alias}.id = k.{v[column]}")
        code = "unknown_account" if ref_table == "accounts" else "unknown_user"
        # An optional reference (surveys.user_id) may be empty; only a given, unknown id fails.
        ref_checks.append(f"WHEN k.{v[column]} IS NOT NULL AND {alias}.id IS NULL THEN {_lit(code)}")
        if pair:  # checked after every reference: the user is known, but in another account
            pair_checks.append(
                f"WHEN k.{v[column]} IS NOT NULL AND {alias}.account_id IS DISTINCT FROM k.{v['account_id']} "
                "THEN 'user_account_mismatch'"
            )
    ref_case = " ".join(ref_checks + pair_checks)
    # Original values are only kept for quarantined rows (the clean ones have v_ values).
    q_cols = ", ".join(
        f"CASE WHEN reason IS NOT NULL THEN {quote('o_' + c)} END AS {quote('o_' + c)}" for c in originals
    )
    v_cols = ", ".join(v[c.name] for c in table.columns)
    # Duplicates: an aggregate over a 64-bit hash of the key finds the (rare) keys held by
    # several rows that passed checks 1-7; only those rows are ranked in file order by their
    # real values (a hash collision only adds a candidate). A window over every row is slow.
    return f"""
WITH l1 AS NOT MATERIALIZED (SELECT {", ".join(layer1)} FROM {source}),
lp AS NOT MATERIALIZED (SELECT {", ".join(parsed)} FROM l1),
l2 AS NOT MATERIALIZED (SELECT {", ".join(layer2)} FROM lp),
l3 AS (SELECT *, CASE {first_reason} END AS _r1 FROM l2),
dk AS (SELECT _h FROM (SELECT {key_hash} AS _h FROM l3 WHERE _r1 IS NULL AND {keyed})
       GROUP BY _h HAVING count(*) > 1),
j AS (SELECT l3.*, dk._h IS NOT NULL AND l3._r1 IS NULL AND {keyed} AS _dup
      FROM l3 LEFT JOIN dk ON {key_hash} = dk._h),
ranked AS (SELECT *, row_number() OVER (PARTITION BY {all_values} ORDER BY {pos}) AS _rn_exact
           FROM j WHERE _dup),
ranked2 AS (SELECT *, row_number() OVER (PARTITION BY _rn_exact = 1, {key_values} ORDER BY {pos}) AS _rn_key
            FROM ranked),
k AS (SELECT * FROM ranked2
      UNION ALL BY NAME
      SELECT *, 1 AS _rn_exact, 1 AS _rn_key FROM j WHERE NOT _dup),
r AS (SELECT k._src_file, k._src_row, k._enc_repaired, {", ".join("k." + quote("o_" + c) for c in originals)},
        {", ".join("k." + v[c.name] for c in table.columns)}, k._normalised, k._defaulted,
        CASE WHEN k._r1 IS NOT NULL THEN k._r1
             WHEN k._rn_exact > 1 THEN 'duplicate_exact'
             WHEN k._rn_key > 1 THEN 'duplicate_key'
             {ref_case}
        END AS reason
      FROM k {" ".join(ref_joins)})
SELECT _src_file, _src_row, {q_cols}, {v_cols}, reason,
       reason IS NULL AND _normalised AS normalised_category,
       reason IS NULL AND coalesce(_enc_repaired, FALSE) AS repaired_encoding,
       reason IS NULL AND _defaulted AS defaulted_value
FROM r
"""


def out_of_order_sql(table: Table, relation: str) -> str:
    """Count of clean rows earlier than the previous clean row of their account in their file."""
    if not table.check_time_order or table.time_column is None:
        return "SELECT 0"
    ts, account = quote("v_" + table.time_column), quote("v_account_id")
    return f"""
SELECT count(*) FROM (
  SELECT {ts} < lag({ts}) OVER (PARTITION BY _src_file, {account} ORDER BY _src_row) AS late
  FROM (SELECT _src_file, _src_row, {account}, {ts} FROM {relation} WHERE reason IS NULL)
) WHERE late
"""


def clean_select(table: Table) -> str:
    """Columns of the clean table from a classified relation."""
    return ", ".join(f"{quote('v_' + c.name)} AS {quote(c.name)}" for c in table.columns)


def quarantine_select(originals: list[str]) -> str:
    """Columns of the quarantine table: original values as strings, reason and provenance."""
    cols = [f"CAST({quote('o_' + c)} AS VARCHAR) AS {quote(c)}" for c in originals]
    return ", ".join([*cols, "reason", "_src_file AS source_file", "_src_row AS source_row"])


ROW_REPAIRS = tuple(code for code in REPAIR_CODES if code != "out_of_order")


def counts_sql(relation: str) -> str:
    """One row of counts per reason (NULL = clean) with the per-row repair counts of clean rows."""
    repairs = ", ".join(f"sum(CAST({code} AS BIGINT)) AS {code}" for code in ROW_REPAIRS)
    return f"SELECT reason, count(*) AS n, {repairs} FROM {relation} GROUP BY reason"


def empty_report() -> dict[str, object]:
    """The per-table report before any rows are counted."""
    return {"rows_in": 0, "rows_clean": 0, "rows_quarantined": 0, "reasons": {}, "repairs": {}}


def add_counts(report: dict, rows: list[tuple], out_of_order: int = 0) -> dict:
    """Add the rows of `counts_sql` (and an out-of-order count) to a report (a new dict)."""
    out = {**report, "reasons": dict(report["reasons"]), "repairs": dict(report["repairs"])}
    for row in rows:
        reason, n, *repairs = row
        out["rows_in"] += int(n)
        if reason is None:
            out["rows_clean"] += int(n)
            for code, count in zip(ROW_REPAIRS, repairs, strict=True):
                if count:
                    out["repairs"][code] = out["repairs"].get(code, 0) + int(count)
        else:
            out["rows_quarantined"] += int(n)
            out["reasons"][reason] = out["reasons"].get(reason, 0) + int(n)
    if out_of_order:
        out["repairs"]["out_of_order"] = out["repairs"].get("out_of_order", 0) + int(out_of_order)
    out["reasons"] = {c: out["reasons"][c] for c in QUARANTINE_REASONS if c in out["reasons"]}
    out["repairs"] = {c: out["repairs"][c] for c in REPAIR_CODES if c in out["repairs"]}
    return out


def check_invariant(name: str, report: dict) -> None:
    """rows_in = rows_clean + rows_quarantined, and the reason counts add up; else raise."""
    if report["rows_in"] != report["rows_clean"] + report["rows_quarantined"]:
        raise RuntimeError(f"{name}: rows_in != rows_clean + rows_quarantined: {report}")
    if sum(report["reasons"].values()) != report["rows_quarantined"]:
        raise RuntimeError(f"{name}: reason counts do not add up to rows_quarantined: {report}")
