"""The data contract: schemas, examples, and the docs page generated from them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera.errors
import pytest

from churnguard.contract import (
    OPTIONAL_TABLES,
    QUARANTINE_REASONS,
    REPAIR_CODES,
    TABLES,
    clean_schema,
    render_markdown,
)
from churnguard.validation import validate_frame

DOC = Path(__file__).resolve().parents[1] / "docs" / "data_contract.md"


def test_required_and_optional_tables() -> None:
    assert [n for n, t in TABLES.items() if t.required] == ["accounts", "usage_events"]
    assert set(OPTIONAL_TABLES) == {"subscriptions", "users", "tickets", "surveys"}
    for table in TABLES.values():
        # Keys are required, except the event log's optional event id (rows without one are
        # never duplicates).
        optional_key = {"event_id"} if table.name == "usage_events" else set()
        assert set(table.key) <= set(table.required_columns) | optional_key, table.name
        assert table.time_column in table.column_names
        for earlier, later in table.order_rules:
            assert table.column(earlier).kind == table.column(later).kind == "timestamp"


def test_codes_are_distinct_and_documented() -> None:
    assert len(set(QUARANTINE_REASONS)) == len(QUARANTINE_REASONS) == 13
    assert len(set(REPAIR_CODES)) == len(REPAIR_CODES)
    text = DOC.read_text(encoding="utf-8")
    for code in (*QUARANTINE_REASONS, *REPAIR_CODES):
        assert f"`{code}`" in text, code


def test_docs_tables_section_is_generated_from_the_contract() -> None:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("<!-- BEGIN GENERATED")
    start = text.index("\n", start) + 1
    end = text.index("<!-- END GENERATED -->")
    assert text[start:end] == render_markdown()


@pytest.mark.parametrize("name", list(TABLES))
def test_each_example_row_is_clean_and_fits_the_schema(name: str) -> None:
    table = TABLES[name]
    raw = pd.DataFrame([{k: (None if v is None else str(v)) for k, v in table.example.items()}])
    refs = {"accounts": pd.Series(["A000017"]), "users": pd.Series(["U0001234"])}
    result = validate_frame(raw, table, future_cutoff=pd.Timestamp("2027-01-01"), references=refs)
    assert result.report["rows_clean"] == 1, result.quarantine.to_dict("records")
    clean_schema(table).validate(result.clean)
    assert set(table.example) == set(table.column_names)


def _clean_tickets() -> pd.DataFrame:
    raw = pd.DataFrame([{k: v for k, v in TABLES["tickets"].example.items()}])
    return validate_frame(raw, TABLES["tickets"], future_cutoff=None).clean


@pytest.mark.parametrize(
    ("column", "value"),
    [("csat", 7.0), ("category", "Bug"), ("severity", "sev: HIGH"), ("account_id", None)],
)
def test_schema_rejects_values_outside_the_contract(column: str, value: object) -> None:
    clean = _clean_tickets()
    schema = clean_schema(TABLES["tickets"])
    schema.validate(clean)
    bad = clean.assign(**{column: pd.Series([value], dtype=clean[column].dtype)})
    with pytest.raises(pandera.errors.SchemaError):
        schema.validate(bad)


def test_schema_rejects_duplicate_keys_and_wrong_dtypes() -> None:
    clean = _clean_tickets()
    schema = clean_schema(TABLES["tickets"])
    with pytest.raises(pandera.errors.SchemaError):
        schema.validate(pd.concat([clean, clean], ignore_index=True))
    with pytest.raises(pandera.errors.SchemaError):
        schema.validate(clean.assign(created_at=clean["created_at"].astype(str)))
