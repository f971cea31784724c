"""Unit tests of each validation rule on tiny inline frames."""

from __future__ import annotations

import pandas as pd
import pytest

from churnguard.contract import QUARANTINE_REASONS, REPAIR_CODES, TABLES, clean_schema
from churnguard.validation import validate_frame
from churnguard.validation.encoding import decode_bytes, repair_text

CUTOFF = pd.Timestamp("2025-01-01")
ACCOUNTS = pd.Series(["A1", "A2"])
USERS = pd.Series(["U1", "U2"])


def _tickets(**overrides: list) -> pd.DataFrame:
    n = len(next(iter(overrides.values()))) if overrides else 1
    base = {
        "ticket_id": [f"T{i}" for i in range(n)],
        "account_id": ["A1"] * n,
        "created_at": ["2024-05-01T10:00:00Z"] * n,
        "category": ["bug"] * n,
        "severity": ["high"] * n,
        "first_response_at": ["2024-05-01T11:00:00Z"] * n,
        "resolved_at": ["2024-05-02T11:00:00Z"] * n,
        "escalated": ["false"] * n,
        "csat": ["4"] * n,
    }
    base.update(overrides)
    return pd.DataFrame(base)


def _validate(raw: pd.DataFrame, table: str, **refs: pd.Series):
    references = refs or {"accounts": ACCOUNTS, "users": USERS}
    return validate_frame(raw, TABLES[table], future_cutoff=CUTOFF, references=references)


def _reasons(raw: pd.DataFrame, table: str = "tickets", **refs: pd.Series) -> list[str | None]:
    """The reason of each input row (None when clean), in input order."""
    result = _validate(raw, table, **refs)
    by_row = dict(zip(result.quarantine["source_row"], result.quarantine["reason"], strict=True))
    return [by_row.get(i) for i in range(len(raw))]


def test_clean_row_passes_with_contract_types() -> None:
    result = _validate(_tickets(ticket_id=["T1"]), "tickets")
    assert result.report["rows_clean"] == 1 and result.report["reasons"] == {}
    row = result.clean.iloc[0]
    assert row["created_at"] == pd.Timestamp("2024-05-01 10:00:00")
    assert str(result.clean["created_at"].dtype) == "datetime64[us]"
    assert row["escalated"] is False or row["escalated"] == False  # noqa: E712 (pandas boolean)
    clean_schema(TABLES["tickets"]).validate(result.clean)


def test_missing_required_includes_blank_and_null_tokens() -> None:
    raw = _tickets(account_id=["A1", "", "  ", "NULL", None])
    assert _reasons(raw) == [
        None,
        "missing_required",
        "missing_required",
        "missing_required",
        "missing_required",
    ]


def test_unparseable_timestamp_and_zone_conversion() -> None:
    raw = _tickets(
        created_at=["2024-05-01T10:00:00+09:00", "31/02/2024", "yesterday", "2024-05-01"],
        first_response_at=[None] * 4,
        resolved_at=[None] * 4,
    )
    result = _validate(raw, "tickets")
    assert result.report["reasons"] == {"unparseable_timestamp": 2}
    assert list(result.clean["created_at"]) == [pd.Timestamp("2024-05-01 01:00"), pd.Timestamp("2024-05-01")]


def test_unparseable_number() -> None:
    assert _reasons(_tickets(csat=["4", "four", "4.5", ""])) == [
        None,
        "unparseable_number",
        "unparseable_number",
        None,
    ]


def test_unknown_category_after_normalising_spelling() -> None:
    raw = _tickets(
        category=["Feature Request", "feature-request", " BUG ", "sev: HIGH", "bug"],
        severity=["high", "high", "high", "high", "HIGH!"],
    )
    result = _validate(raw, "tickets")
    assert _reasons(raw) == [None, None, None, "unknown_category", "unknown_category"]
    assert list(result.clean["category"]) == ["feature_request", "feature_request", "bug"]
    assert result.report["repairs"] == {"normalised_category": 3}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("TRUE", True), ("yes", True), ("1", True), ("Y", True), ("no", False), ("0", False), ("False", False)],
)
def test_escalated_accepts_common_boolean_spellings(value: str, expected: bool) -> None:
    result = _validate(_tickets(escalated=[value]), "tickets")
    assert bool(result.clean["escalated"].iloc[0]) is expected


def test_escalated_garbage_is_unknown_category() -> None:
    assert _reasons(_tickets(escalated=["maybe", ""])) == ["unknown_category", None]


def test_out_of_range_csat_nps_mrr() -> None:
    assert _reasons(_tickets(csat=["0", "1", "5", "6"])) == ["out_of_range", None, None, "out_of_range"]
    surveys = pd.DataFrame(
        {
            "response_id": ["R1", "R2", "R3", "R4"],
            "account_id": ["A1"] * 4,
            "submitted_at": ["2024-06-01"] * 4,
            "nps": ["0", "10", "11", "-1"],
        }
    )
    assert _reasons(surveys, "surveys") == [None, None, "out_of_range", "out_of_range"]
    subs = pd.DataFrame(
        {
            "account_id": ["A1", "A1"],
            "subscription_id": ["S1", "S2"],
            "start_date": ["2024-01-01", "2024-02-01"],
            "end_date": ["2025-01-01", "2025-02-01"],
            "mrr": ["100", "-5"],
        }
    )
    assert _reasons(subs, "subscriptions") == [None, "out_of_range"]


def test_bad_order() -> None:
    raw = _tickets(
        resolved_at=["2024-05-02", "2024-04-30", None],
        first_response_at=[None, None, "2024-05-01T09:00:00Z"],
    )
    assert _reasons(raw) == [None, "bad_order", "bad_order"]
    subs = pd.DataFrame(
        {
            "account_id": ["A1"],
            "subscription_id": ["S1"],
            "start_date": ["2024-03-01"],
            "end_date": ["2024-02-01"],
            "mrr": [10.0],
        }
    )
    assert _reasons(subs, "subscriptions") == ["bad_order"]


def test_future_timestamp_but_term_end_may_be_future() -> None:
    raw = _tickets(
        created_at=["2024-12-31T23:59:59", "2025-01-01T00:00:00", "2031-01-01", "2024-12-01"],
        first_response_at=[None] * 4,
        resolved_at=[None, None, None, "2025-02-01"],
    )
    assert _reasons(raw) == [None, "future_timestamp", "future_timestamp", "future_timestamp"]
    subs = pd.DataFrame(
        {
            "account_id": ["A1"],
            "subscription_id": ["S1"],
            "start_date": ["2024-06-01"],
            "end_date": ["2025-06-01"],
            "mrr": [10.0],
        }
    )
    assert _reasons(subs, "subscriptions") == [None]


def test_exact_and_key_duplicates_keep_first() -> None:
    raw = _tickets(ticket_id=["T1", "T1", "T1", "T2"], csat=["4", "4", "3", "4"])
    result = _validate(raw, "tickets")
    assert _reasons(raw) == [None, "duplicate_exact", "duplicate_key", None]
    assert list(result.clean["ticket_id"]) == ["T1", "T2"]
    assert result.clean["csat"].iloc[0] == 4


def test_duplicate_of_a_quarantined_row_is_not_a_duplicate() -> None:
    # The first copy fails an earlier rule, so the second is the first clean occurrence.
    raw = _tickets(ticket_id=["T1", "T1"], csat=["9", "4"])
    assert _reasons(raw) == ["out_of_range", None]


def test_ids_are_trimmed_before_duplicate_and_reference_checks() -> None:
    raw = _tickets(ticket_id=["T1", " T1 "], account_id=[" A1", "A1"])
    assert _reasons(raw) == [None, "duplicate_exact"]


def test_unknown_account_and_user() -> None:
    events = pd.DataFrame(
        {
            "account_id": ["A1", "A9", "A1"],
            "user_id": ["U1", "U1", "U9"],
            "timestamp": ["2024-05-01T10:00:00Z"] * 3,
            "event": ["login"] * 3,
        }
    )
    assert _reasons(events, "usage_events") == [None, "unknown_account", "unknown_user"]
    # Without a users table, user ids are not checked.
    assert _reasons(events, "usage_events", accounts=ACCOUNTS) == [None, "unknown_account", None]


def test_first_reason_in_contract_order_wins() -> None:
    raw = _tickets(account_id=["A9"], csat=["9"], created_at=["2030-01-01"], resolved_at=["2029-01-01"])
    assert _reasons(raw) == ["out_of_range"]
    assert QUARANTINE_REASONS.index("out_of_range") < QUARANTINE_REASONS.index("unknown_account")


def test_quantity_defaults_to_one_and_is_counted() -> None:
    events = pd.DataFrame(
        {
            "account_id": ["A1", "A1", "A1"],
            "user_id": ["U1"] * 3,
            "timestamp": ["2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", "2024-05-01T12:00:00Z"],
            "event": ["login"] * 3,
            "quantity": ["", "3", "-1"],
        }
    )
    result = _validate(events, "usage_events")
    assert list(result.clean["quantity"]) == [1.0, 3.0]
    assert result.report["repairs"] == {"defaulted_value": 1}
    assert result.report["reasons"] == {"out_of_range": 1}


def test_out_of_order_counts_rows_earlier_than_previous_of_same_account() -> None:
    events = pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A1", "A1", "A2"],
            "user_id": ["U1", "U2", "U1", "U1", "U2"],
            "timestamp": ["2024-05-03", "2024-05-01", "2024-05-01", "2024-05-04", "2024-05-02"],
            "event": ["login"] * 5,
        }
    )
    result = _validate(events, "usage_events")
    # A2's rows are in order although they interleave with A1's; one A1 row is late.
    assert result.report["repairs"] == {"out_of_order": 1}


def test_open_categories_are_lower_cased_and_countries_upper_cased() -> None:
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "created_at": ["2024-01-01", "2024-01-01"],
            "segment": ["Mid-Market", "smb"],
            "country": ["jp", "US"],
        }
    )
    result = _validate(accounts, "accounts", accounts=ACCOUNTS)
    assert list(result.clean["segment"]) == ["mid_market", "smb"]
    assert list(result.clean["country"]) == ["JP", "US"]
    assert result.report["repairs"] == {"normalised_category": 1}


def test_mojibake_in_text_is_repaired_and_counted() -> None:
    comment = "価格が高すぎる。競合の方が安い。"
    surveys = pd.DataFrame(
        {
            "response_id": ["R1", "R2", "R3"],
            "account_id": ["A1"] * 3,
            "submitted_at": ["2024-06-01"] * 3,
            "comment": [comment, comment.encode("utf-8").decode("latin-1"), "café crème"],
        }
    )
    result = _validate(surveys, "surveys")
    assert list(result.clean["comment"]) == [comment, comment, "café crème"]
    assert result.report["repairs"] == {"repaired_encoding": 1}


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("価格が高すぎる。競合の方が安い。", "cp932"),
        ("サポートの対応が遅い", "cp932"),
        ("价格太贵了，我们考虑换成竞争对手。", "gb18030"),
        ("客服响应很慢", "gb18030"),
        ("Müller Bäckerei: café too expensive", "cp1252"),
    ],
)
def test_decode_bytes_detects_legacy_encodings(text: str, encoding: str) -> None:
    assert decode_bytes(text.encode(encoding)) == (text, True)
    assert decode_bytes(text.encode("utf-8")) == (text, False)


def test_repair_text_leaves_genuine_latin_text_alone() -> None:
    for text in ("Müller Bäckerei GmbH", "café", "naïve résumé", "plain"):
        assert repair_text(text) == (text, False)


def test_invariant_and_input_not_mutated() -> None:
    raw = _tickets(ticket_id=["T1", "T1", "T2", "T3"], csat=["4", "4", "x", "5"])
    before = raw.copy()
    result = _validate(raw, "tickets")
    report = result.report
    assert report["rows_in"] == 4 == report["rows_clean"] + report["rows_quarantined"]
    assert len(result.clean) == report["rows_clean"] and len(result.quarantine) == report["rows_quarantined"]
    pd.testing.assert_frame_equal(raw, before)
    assert set(report["reasons"]) <= set(QUARANTINE_REASONS)
    assert set(report["repairs"]) <= set(REPAIR_CODES)


def test_quarantine_keeps_original_values_as_strings() -> None:
    raw = _tickets(ticket_id=["T1"], csat=[" 7 "])
    result = _validate(raw, "tickets")
    row = result.quarantine.iloc[0]
    assert row["csat"] == " 7 " and row["reason"] == "out_of_range"
    assert row["source_row"] == 0 and row["source_file"] == "frame"


def test_clean_output_validates_again_without_quarantine() -> None:
    raw = _tickets(
        ticket_id=["T1", "T1", "T2", "T3"],
        category=["Feature Request", "bug", "question", "BUG"],
        escalated=["yes", "no", "1", ""],
    )
    first = _validate(raw, "tickets")
    second = _validate(first.clean, "tickets")
    assert second.report["rows_quarantined"] == 0
    assert second.report["repairs"] == {}
    pd.testing.assert_frame_equal(second.clean, first.clean)


def _daily(counts: dict[str, int]) -> pd.Series:
    return pd.Series({pd.Timestamp(day): n for day, n in counts.items()})


def test_end_day_ignores_sparse_and_detached_future_days() -> None:
    from churnguard.validation.end_date import infer_end_day

    days = {str(d.date()): 1000 for d in pd.date_range("2024-01-01", "2024-03-31")}
    assert infer_end_day(_daily(days)) == pd.Timestamp("2024-03-31")
    # A few events a day or two after the end (clock skew), and one years ahead.
    noisy = {**days, "2024-04-01": 3, "2024-04-02": 1, "2031-01-01": 2}
    assert infer_end_day(_daily(noisy)) == pd.Timestamp("2024-03-31")
    # Sparse data: a lone event far after the rest is detached.
    sparse = {"2024-01-01": 40, "2024-01-02": 30, "2024-01-04": 50, "2030-05-05": 1}
    assert infer_end_day(_daily(sparse)) == pd.Timestamp("2024-01-04")


def test_end_day_never_drops_a_real_tail() -> None:
    from churnguard.validation.end_date import infer_end_day

    # A quiet last week (weekend-like, 10 % of the median) is still data.
    days = {str(d.date()): 1000 for d in pd.date_range("2024-01-01", "2024-03-24")}
    days |= {str(d.date()): 100 for d in pd.date_range("2024-03-25", "2024-03-31")}
    assert infer_end_day(_daily(days)) == pd.Timestamp("2024-03-31")
    # A detached block holding more than 1 % of events is real, not a typo.
    block = {**days, **{str(d.date()): 1000 for d in pd.date_range("2024-05-01", "2024-05-05")}}
    assert infer_end_day(_daily(block)) == pd.Timestamp("2024-05-05")


def test_declared_end_date_parsing() -> None:
    from churnguard.errors import InputError
    from churnguard.validation.end_date import future_cutoff, parse_end_date

    assert parse_end_date("2024-03-31") == pd.Timestamp("2024-03-31 23:59:59.999999")
    assert parse_end_date("2024-03-31T12:00:00+09:00") == pd.Timestamp("2024-03-31 03:00")
    assert future_cutoff(parse_end_date("2024-03-31")) == pd.Timestamp("2024-04-01")
    with pytest.raises(InputError, match="end_date"):
        parse_end_date("soon")


def test_category_fast_path_matches_the_full_normalisation() -> None:
    raw = _tickets(
        category=["bug", "Bug", "feature request", "feature\trequest", "feature--request", "feature_request"]
    )
    result = _validate(raw, "tickets")
    assert list(result.clean["category"]) == ["bug", "bug"] + ["feature_request"] * 4
    assert result.report["repairs"] == {"normalised_category": 4}


def test_zone_suffixes_parse_to_utc() -> None:
    raw = _tickets(
        created_at=[
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00.5Z",
            "2024-05-01T19:00:00+09:00",
            "2024-05-01T10Z",
        ],
        first_response_at=[None] * 4,
        resolved_at=[None] * 4,
    )
    result = _validate(raw, "tickets")
    assert list(result.clean["created_at"]) == [
        pd.Timestamp("2024-05-01 10:00"),
        pd.Timestamp("2024-05-01 10:00:00.5"),
        pd.Timestamp("2024-05-01 10:00"),
    ]
    assert result.report["reasons"] == {"unparseable_timestamp": 1}
