"""The data contract: the six input tables, their columns, types and allowed values.

This module is the single source of truth for what a company's export must look like
(docs/data_contract.md renders the same facts for people). Validation coerces raw
tables to these types; every later stage reads the clean tables and may rely on them.

Clean-table conventions (what `validate` writes and every later stage reads):
- ids are strings;
- timestamps are timezone-naive `datetime64[us]` holding UTC wall time (portable to
  DuckDB's TIMESTAMP and Spark's TimestampNTZ without session-timezone surprises);
- categories are lower-case strings from the allowed set, unknown values quarantined
  only when the column is required to be in the set (see `Column.allowed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["id", "timestamp", "float", "int", "bool", "category", "text"]
Case = Literal["lower", "upper"]


@dataclass(frozen=True)
class Column:
    """One column of an input table."""

    name: str
    kind: Kind
    required: bool = False
    allowed: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    description: str = ""
    # Value used when an optional cell is empty (counted as the repair `defaulted_value`).
    default: float | None = None
    # A timestamp that may legitimately lie after the data's end (e.g. the end of a paid term).
    future_ok: bool = False
    # How category spellings are normalised: lower -> 'Feature Request' becomes
    # 'feature_request'; upper -> ' jp' becomes 'JP' (codes such as ISO countries).
    case: Case = "lower"


@dataclass(frozen=True)
class Table:
    """One input table of the contract."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    required: bool = False
    description: str = ""
    # Which column carries the row's "known at" time, used for point-in-time cuts.
    time_column: str | None = None
    example: dict[str, object] = field(default_factory=dict)
    # (earlier, later) timestamp pairs: a row with later < earlier is quarantined as bad_order.
    order_rules: tuple[tuple[str, str], ...] = ()
    # (column, referenced table): a value absent from the referenced clean table's key is
    # quarantined (unknown_account / unknown_user); skipped when that table is absent.
    references: tuple[tuple[str, str], ...] = ()
    # Count rows not in time order within their file and account (repair `out_of_order`).
    check_time_order: bool = False

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")


BILLING_PERIODS = ("monthly", "annual")
ROLES = ("admin", "champion", "member")
TICKET_CATEGORIES = ("bug", "feature_request", "question", "other")
TICKET_SEVERITIES = ("low", "medium", "high", "urgent")

ACCOUNTS = Table(
    name="accounts",
    required=True,
    key=("account_id",),
    time_column="created_at",
    description="One row per customer account.",
    columns=(
        Column("account_id", "id", required=True),
        Column("created_at", "timestamp", required=True, description="account creation"),
        Column("name", "text"),
        Column("segment", "category", description="e.g. smb / mid_market / enterprise"),
        Column("industry", "category"),
        Column("country", "category", case="upper", description="ISO-3166 alpha-2 code"),
    ),
    example={
        "account_id": "A000017",
        "created_at": "2024-03-02T00:00:00Z",
        "name": "Northwind Logistics",
        "segment": "mid_market",
        "industry": "logistics",
        "country": "JP",
    },
)

SUBSCRIPTIONS = Table(
    name="subscriptions",
    key=("subscription_id",),
    time_column="start_date",
    order_rules=(("start_date", "end_date"),),
    references=(("account_id", "accounts"),),
    description="Paid terms. A renewal is a new row; end_date is the end of the paid term.",
    columns=(
        Column("account_id", "id", required=True),
        Column("subscription_id", "id", required=True),
        Column("start_date", "timestamp", required=True),
        Column("end_date", "timestamp", required=True, future_ok=True),
        Column("mrr", "float", required=True, min_value=0.0, description="monthly recurring revenue"),
        Column("plan", "category"),
        Column("billing_period", "category", allowed=BILLING_PERIODS),
        Column("seats", "int", min_value=0),
        Column("canceled_at", "timestamp", description="when a cancellation was recorded"),
    ),
    example={
        "account_id": "A000017",
        "subscription_id": "S000042",
        "start_date": "2025-03-02T00:00:00Z",
        "end_date": "2026-03-02T00:00:00Z",
        "mrr": 1840.0,
        "plan": "business",
        "billing_period": "annual",
        "seats": 40,
        "canceled_at": None,
    },
)

USERS = Table(
    name="users",
    key=("user_id",),
    time_column="created_at",
    order_rules=(("created_at", "deactivated_at"),),
    references=(("account_id", "accounts"),),
    description="People with a login at a customer account.",
    columns=(
        Column("user_id", "id", required=True),
        Column("account_id", "id", required=True),
        Column("created_at", "timestamp", required=True),
        Column("role", "category", description="admin, champion, member, ... (open set)"),
        Column("deactivated_at", "timestamp"),
    ),
    example={
        "user_id": "U0001234",
        "account_id": "A000017",
        "created_at": "2024-03-05T09:12:00Z",
        "role": "champion",
        "deactivated_at": None,
    },
)

USAGE_EVENTS = Table(
    name="usage_events",
    required=True,
    # Only an event id tells a re-delivered row from a second real event (two identical
    # API calls in one second are real usage); rows without one are never duplicates.
    key=("event_id",),
    time_column="timestamp",
    references=(("account_id", "accounts"), ("user_id", "users")),
    check_time_order=True,
    description="Product usage log; the large table (may be a folder of Parquet parts).",
    columns=(
        Column("account_id", "id", required=True),
        Column("user_id", "id", required=True),
        Column("timestamp", "timestamp", required=True),
        Column("event", "category", required=True, description="event name (open set)"),
        Column("quantity", "float", min_value=0.0, default=1.0, description="defaults to 1"),
        Column("event_id", "id", description="unique id of the event, when the export has one"),
    ),
    example={
        "account_id": "A000017",
        "user_id": "U0001234",
        "timestamp": "2026-02-11T14:03:27Z",
        "event": "report_created",
        "quantity": 1.0,
        "event_id": "e-8f14e45f",
    },
)

TICKETS = Table(
    name="tickets",
    key=("ticket_id",),
    time_column="created_at",
    order_rules=(("created_at", "first_response_at"), ("created_at", "resolved_at")),
    references=(("account_id", "accounts"),),
    description="Support tickets.",
    columns=(
        Column("ticket_id", "id", required=True),
        Column("account_id", "id", required=True),
        Column("created_at", "timestamp", required=True),
        Column("category", "category", allowed=TICKET_CATEGORIES),
        Column("severity", "category", allowed=TICKET_SEVERITIES),
        Column("first_response_at", "timestamp"),
        Column("resolved_at", "timestamp"),
        Column("escalated", "bool"),
        Column("csat", "int", min_value=1, max_value=5),
    ),
    example={
        "ticket_id": "T0009876",
        "account_id": "A000017",
        "created_at": "2026-01-20T08:00:00Z",
        "category": "bug",
        "severity": "high",
        "first_response_at": "2026-01-20T10:30:00Z",
        "resolved_at": "2026-02-03T16:00:00Z",
        "escalated": True,
        "csat": 2,
    },
)

SURVEYS = Table(
    name="surveys",
    key=("response_id",),
    time_column="submitted_at",
    references=(("account_id", "accounts"), ("user_id", "users")),
    description="NPS survey responses with free-text comments (any language).",
    columns=(
        Column("response_id", "id", required=True),
        Column("account_id", "id", required=True),
        Column("submitted_at", "timestamp", required=True),
        Column("user_id", "id"),
        Column("nps", "int", min_value=0, max_value=10),
        Column("comment", "text"),
    ),
    example={
        "response_id": "R000321",
        "account_id": "A000017",
        "submitted_at": "2026-01-15T11:00:00Z",
        "user_id": "U0001234",
        "nps": 4,
        "comment": "価格が高すぎる。競合の方が安い。",
    },
)

TABLES: dict[str, Table] = {
    t.name: t for t in (ACCOUNTS, SUBSCRIPTIONS, USERS, USAGE_EVENTS, TICKETS, SURVEYS)
}
OPTIONAL_TABLES = tuple(name for name, t in TABLES.items() if not t.required)

# Quarantine reason codes, in the order validation checks them: a row gets the first
# reason it fails, so counts are exact and a simulator can inject faults that reconcile.
QUARANTINE_REASONS: tuple[str, ...] = (
    "malformed_row",  # a CSV row with more cells than the header (extra cells kept)
    "missing_required",  # a required value is null or empty
    "unparseable_timestamp",  # a timestamp that no ISO-8601 / common format parses
    "unparseable_number",  # a number column holding text
    "unknown_category",  # value outside a closed set after normalising case/spelling
    "out_of_range",  # negative MRR or quantity, NPS outside 0-10, CSAT outside 1-5
    "bad_order",  # end before start, resolved/first response before created
    "future_timestamp",  # after the data's end date
    "duplicate_exact",  # an exact copy of an earlier row
    "duplicate_key",  # same key as an earlier row, other values differ
    "unknown_account",  # account_id not in accounts
    "unknown_user",  # user_id not in users (only when users is given)
    "user_account_mismatch",  # user_id belongs to another account in users
)

# Repairs counted in the validation report but not quarantined (the row is kept).
REPAIR_CODES: tuple[str, ...] = (
    "normalised_category",  # 'Annual ', 'ANNUAL', 'feature request' -> canonical value
    "repaired_encoding",  # text decoded from a non-UTF-8 encoding (mojibake fixed)
    "out_of_order",  # event rows not in time order in the file (sorted on write)
    "defaulted_value",  # optional value filled by the contract default (quantity = 1)
)


# Values read as missing in any column (after trimming, case-insensitive), as real exports
# write them. A required column holding one of these is `missing_required`.
MISSING_TOKENS: tuple[str, ...] = ("", "null", "none", "nan", "nat", "n/a", "na", "#n/a")
# Accepted spellings of booleans (after trimming, case-insensitive); anything else in a
# bool column is `unknown_category`.
TRUE_TOKENS: tuple[str, ...] = ("true", "t", "yes", "y", "1", "1.0")
FALSE_TOKENS: tuple[str, ...] = ("false", "f", "no", "n", "0", "0.0")

# Columns of the quarantine tables besides the original values (kept as strings).
QUARANTINE_META: tuple[str, ...] = ("reason", "source_file", "source_row")


def clean_dtypes(table: Table) -> dict[str, str]:
    """pandas dtypes of a clean table as `churnguard.tables.read_clean` returns it.

    int columns come back as float64 (NaN when missing; values are whole numbers) so that
    arithmetic never meets pandas' NA; bool columns are the nullable `boolean` dtype.
    """
    kinds = {
        "id": "str",
        "timestamp": "datetime64[us]",
        "float": "float64",
        "int": "float64",
        "bool": "boolean",
        "category": "str",
        "text": "str",
    }
    return {c.name: kinds[c.kind] for c in table.columns}


def clean_schema(table: Table):  # -> pandera.pandas.DataFrameSchema (lazy import)
    """A pandera schema for a clean table: types, required non-null, allowed sets, ranges."""
    import pandera.pandas as pa

    columns = {}
    for col in table.columns:
        checks = []
        if col.allowed is not None:
            checks.append(pa.Check.isin(list(col.allowed)))
        if col.min_value is not None:
            checks.append(pa.Check.ge(col.min_value))
        if col.max_value is not None:
            checks.append(pa.Check.le(col.max_value))
        if col.kind == "int":
            checks.append(pa.Check(lambda s: (s.dropna() % 1 == 0).all(), element_wise=False, name="whole"))
        dtype = clean_dtypes(table)[col.name]
        nullable = not col.required and col.default is None
        columns[col.name] = pa.Column(dtype, checks=checks, nullable=nullable, required=True)
    key = list(table.key)
    if all(table.column(k).required for k in key):
        return pa.DataFrameSchema(columns, unique=key, strict=True, name=table.name)
    # An optional key identifies only the rows that have it.
    unique_given = pa.Check(lambda df: not df.dropna(subset=key).duplicated(key).any(), name="unique_key")
    return pa.DataFrameSchema(columns, checks=[unique_given], strict=True, name=table.name)


def render_markdown() -> str:
    """The contract's tables as Markdown (the generated part of docs/data_contract.md)."""
    lines: list[str] = []
    for table in TABLES.values():
        status = "required" if table.required else "optional"
        lines += [f"### `{table.name}` ({status})", "", table.description, ""]
        optional = [k for k in table.key if not table.column(k).required]
        when = " (when given: rows without it are never duplicates)" if optional else ""
        lines += [f"- Key: `{', '.join(table.key)}`{when}."]
        if table.order_rules:
            rules = "; ".join(f"`{later}` ≥ `{earlier}`" for earlier, later in table.order_rules)
            lines += [f"- Order: {rules}."]
        if table.references:
            refs = "; ".join(f"`{col}` in `{ref}`" for col, ref in table.references)
            lines += [f"- References (checked when the referenced table is given): {refs}."]
        lines += [
            "",
            "| column | type | required | allowed / range | example |",
            "| --- | --- | --- | --- | --- |",
        ]
        for col in table.columns:
            allowed = ""
            if col.allowed is not None:
                allowed = ", ".join(f"`{v}`" for v in col.allowed)
            elif col.min_value is not None or col.max_value is not None:
                lo = "" if col.min_value is None else f"{col.min_value:g}"
                hi = "" if col.max_value is None else f"{col.max_value:g}"
                allowed = f"{lo} – {hi}".strip()
            notes = []
            if col.default is not None:
                notes.append(f"default {col.default:g}")
            if col.future_ok:
                notes.append("may be after the data end")
            if col.kind == "category" and col.allowed is None:
                notes.append("open set, upper-cased" if col.case == "upper" else "open set, lower-cased")
            if notes:
                allowed = "; ".join([a for a in [allowed] if a] + notes)
            example = table.example.get(col.name)
            shown = "" if example is None else f"`{example}`"
            required = "**yes**" if col.required else ""
            lines.append(f"| `{col.name}` | {col.kind} | {required} | {allowed} | {shown} |")
        lines.append("")
    return "\n".join(lines)
