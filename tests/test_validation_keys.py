"""Event duplicates by event id, (account, user) pairs, and the wall-clock cap on the data end."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from churnguard.contract import QUARANTINE_REASONS, TABLES, clean_schema
from churnguard.validation import ValidateParams, validate_frame
from churnguard.validation.end_date import infer_data_end
from pipeline import validate

CUTOFF = pd.Timestamp("2025-01-01")
ACCOUNTS = pd.Series(["A1", "A2"])
USERS = pd.DataFrame({"user_id": ["U1", "U2", "U3"], "account_id": ["A1", "A2", "A1"]})


def _events(**columns: list) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base: dict[str, list] = {
        "account_id": ["A1"] * n,
        "user_id": ["U1"] * n,
        "timestamp": ["2024-05-01T10:00:00Z"] * n,
        "event": ["api_call"] * n,
    }
    return pd.DataFrame({**base, **columns})


def _reasons(raw: pd.DataFrame, table: str = "usage_events", pairs: bool = True) -> list[str | None]:
    result = validate_frame(
        raw,
        TABLES[table],
        future_cutoff=CUTOFF,
        references={"accounts": ACCOUNTS, "users": USERS["user_id"]},
        user_accounts=USERS if pairs else None,
    )
    report = result.report
    assert report["rows_in"] == report["rows_clean"] + report["rows_quarantined"] == len(raw)
    by_row = dict(zip(result.quarantine["source_row"], result.quarantine["reason"], strict=True))
    return [by_row.get(i) for i in range(len(raw))]


# --- duplicates ------------------------------------------------------------------------------


def test_identical_events_without_an_event_id_are_all_kept() -> None:
    # A batch API call: three identical events in one second, and one with another quantity.
    raw = _events(quantity=["1", "1", "1", "5"])
    result = validate_frame(raw, TABLES["usage_events"], future_cutoff=CUTOFF)
    assert result.report["rows_clean"] == 4 and result.report["reasons"] == {}
    assert result.clean["quantity"].sum() == 8.0
    assert result.clean["event_id"].isna().all()
    clean_schema(TABLES["usage_events"]).validate(result.clean)


def test_with_an_event_id_a_redelivery_is_a_duplicate() -> None:
    raw = _events(
        quantity=["1", "1", "1", "2", "1", "1"],
        event_id=["e1", "e2", "e1", "e2", "", None],
    )
    # e1 again with the same values: re-delivered; e2 again with another quantity: a
    # conflicting record; rows without an id are never duplicates.
    assert _reasons(raw) == [None, None, "duplicate_exact", "duplicate_key", None, None]


def test_same_second_events_with_distinct_ids_are_kept() -> None:
    raw = _events(event_id=["e1", "e2", "e3"])
    assert _reasons(raw) == [None, None, None]


def test_event_id_duplicates_in_the_streamed_stage(tmp_path: Path) -> None:
    src = _folder(
        tmp_path / "in",
        _events(
            timestamp=["2024-05-01T10:00:00Z"] * 3 + ["2024-05-02T10:00:00Z"],
            quantity=["1", "1", "1", "1"],
            event_id=["e1", "e1", "e2", "e1"],
        ),
    )
    report = validate.run(input_dir=src, out_dir=tmp_path / "out")
    ev = report["tables"]["usage_events"]
    assert ev["reasons"] == {"duplicate_exact": 1, "duplicate_key": 1}
    assert ev["rows_clean"] == 2


# --- (account, user) pairs -------------------------------------------------------------------


def test_user_of_another_account_is_quarantined() -> None:
    raw = _events(
        account_id=["A1", "A2", "A1", "A2", "A1"],
        user_id=["U1", "U1", "U3", "U2", "U9"],
    )
    assert _reasons(raw) == [None, "user_account_mismatch", None, None, "unknown_user"]
    # Only when the users' accounts are given (e.g. a caller with user ids alone).
    assert _reasons(raw, pairs=False) == [None, None, None, None, "unknown_user"]


def test_mismatch_comes_last_in_contract_order() -> None:
    assert QUARANTINE_REASONS[-1] == "user_account_mismatch"
    # An unknown account is reported as such, not as a mismatch.
    assert _reasons(_events(account_id=["A9"], user_id=["U2"])) == ["unknown_account"]


def test_survey_user_of_another_account_is_quarantined() -> None:
    surveys = pd.DataFrame(
        {
            "response_id": ["R1", "R2", "R3"],
            "account_id": ["A1", "A2", "A2"],
            "submitted_at": ["2024-04-01"] * 3,
            "user_id": ["U1", "U1", ""],  # an empty optional user is not checked
            "nps": ["3", "9", "7"],
        }
    )
    assert _reasons(surveys, "surveys") == [None, "user_account_mismatch", None]


def test_pairs_checked_in_the_streamed_stage(tmp_path: Path) -> None:
    events = _events(
        account_id=["A1", "A2", "A1"],
        user_id=["U1", "U1", "U3"],
        timestamp=["2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", "2024-05-02T10:00:00Z"],
    )
    report = validate.run(input_dir=_folder(tmp_path / "in", events), out_dir=tmp_path / "out")
    ev = report["tables"]["usage_events"]
    assert ev["reasons"] == {"user_account_mismatch": 1} and ev["rows_clean"] == 2
    q = pd.read_parquet(tmp_path / "out" / "quarantine" / "usage_events.parquet")
    assert q[["account_id", "user_id", "reason"]].values.tolist() == [["A2", "U1", "user_account_mismatch"]]


# --- the wall-clock cap on the inferred data end ---------------------------------------------


def _future_log() -> pd.DataFrame:
    """Sixty dense days of events in 2030 (a fixture dated ahead of the clock)."""
    days = pd.date_range("2030-03-01", periods=60, freq="D")
    ts = [d + pd.Timedelta(hours=h) for d in days for h in range(10)]
    return _events(timestamp=[t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in ts])


def _infer(frame: pd.DataFrame, now: pd.Timestamp, max_ahead_days: float | None) -> pd.Timestamp | None:
    con = duckdb.connect()
    con.register("ev", frame)
    return infer_data_end(con, "ev", "timestamp", "VARCHAR", now=now, max_ahead_days=max_ahead_days)


def test_cap_leaves_out_events_beyond_the_clock_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    frame = _future_log()
    now = pd.Timestamp("2030-03-31 12:00", tz="UTC")
    with caplog.at_level(logging.WARNING, logger="churnguard.validation.end_date"):
        capped = _infer(frame, now, 1.0)
    assert capped == pd.Timestamp("2030-04-01 09:00")  # the last day ending before now + 1 day
    message = caplog.text
    assert "280 event timestamp(s)" in message  # 2030-04-02 .. 04-29, 10 a day
    assert "end_max_ahead_days" in message and "2030-04-29" in message


def test_without_the_cap_the_end_depends_on_the_input_only(caplog: pytest.LogCaptureFixture) -> None:
    frame = _future_log()
    with caplog.at_level(logging.WARNING):
        ends = {_infer(frame, pd.Timestamp(now, tz="UTC"), None) for now in ("2026-11-28", "2031-01-01")}
    assert ends == {pd.Timestamp("2030-04-29 09:00")}
    assert caplog.text == ""


def test_no_warning_when_nothing_is_beyond_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert _infer(_future_log(), pd.Timestamp("2031-01-01", tz="UTC"), 1.0) == pd.Timestamp(
            "2030-04-29 09:00"
        )
    assert caplog.text == ""


def test_cap_is_a_params_knob_and_capped_rows_are_quarantined_not_dropped(tmp_path: Path) -> None:
    assert ValidateParams().end_max_ahead_days == 1.0
    assert ValidateParams(end_max_ahead_days=None).end_max_ahead_days is None
    with pytest.raises(ValueError):
        ValidateParams(end_max_ahead_days=-1)
    src = _folder(tmp_path / "in", _future_log())
    now = pd.Timestamp("2030-03-31 12:00", tz="UTC")
    capped = validate.run(input_dir=src, out_dir=tmp_path / "capped", now=now)
    ev = capped["tables"]["usage_events"]
    assert ev["rows_in"] == 600 and ev["reasons"] == {"future_timestamp": 280} and ev["rows_clean"] == 320
    free = validate.run(input_dir=src, out_dir=tmp_path / "free", now=now, end_max_ahead_days=None)
    assert free["data_end"] == "2030-04-29T09:00:00"
    assert free["tables"]["usage_events"]["rows_clean"] == 600


def test_main_passes_the_cap_from_params(tmp_path: Path) -> None:
    src = _folder(tmp_path / "in", _future_log())
    params = tmp_path / "params.yaml"
    params.write_text("validate:\n  end_max_ahead_days: null\n", encoding="utf-8")
    validate.main(["--input", str(src), "--out", str(tmp_path / "out"), "--params", str(params)])
    report = (tmp_path / "out" / "validation_report.json").read_text(encoding="utf-8")
    assert '"data_end": "2030-04-29T09:00:00"' in report  # not capped by today's clock


def _folder(root: Path, events: pd.DataFrame) -> Path:
    root.mkdir(parents=True)
    pd.DataFrame({"account_id": ["A1", "A2"], "created_at": ["2024-01-01T00:00:00Z"] * 2}).to_parquet(
        root / "accounts.parquet", index=False
    )
    USERS.assign(created_at="2024-01-02T00:00:00Z").to_parquet(root / "users.parquet", index=False)
    events.to_parquet(root / "usage_events.parquet", index=False)
    return root
