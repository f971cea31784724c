"""Stage tests of `validate`: input formats, streaming, errors through the CLI, idempotence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard import tables
from churnguard.cli import app
from churnguard.contract import TABLES, clean_schema
from pipeline import validate

REPO = Path(__file__).resolve().parents[1]


def _company(n_events: int = 400, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A hand-made company with a few faults of known kinds (as raw strings)."""
    rng = np.random.default_rng(seed)
    accounts = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(6)],
            "created_at": [f"2024-01-0{i + 1}T00:00:00Z" for i in range(6)],
            "name": ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "株式会社テスト"],
            "segment": ["smb", "SMB", "mid_market", "enterprise", "smb", "smb"],
            "country": ["US", "US", "DE", "GB", "CN", "JP"],
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [f"U{i}" for i in range(12)],
            "account_id": [f"A{i % 6}" for i in range(12)],
            "created_at": ["2024-01-10"] * 12,
            "role": ["admin", "champion", "member", "Member"] * 3,
        }
    )
    subscriptions = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(6)],
            "subscription_id": [f"S{i}" for i in range(6)],
            "start_date": ["2024-01-15"] * 6,
            "end_date": ["2025-01-15"] * 5 + ["2024-01-01"],
            "mrr": ["100", "200.5", "300", "-1", "50", "60"],
            "billing_period": ["annual", "Annual ", "monthly", "annual", "quarterly", "monthly"],
            "seats": ["5", "10", "", "3", "4", "2"],
        }
    )
    tickets = pd.DataFrame(
        {
            "ticket_id": ["T1", "T2", "T2", "T3"],
            "account_id": ["A1", "A2", "A2", "A77"],
            "created_at": ["2024-03-01T09:00:00Z"] * 4,
            "category": ["Feature Request", "bug", "bug", "question"],
            "severity": ["low", "high", "high", "low"],
            "escalated": ["TRUE", "no", "no", ""],
            "csat": ["5", "", "", "3"],
        }
    )
    surveys = pd.DataFrame(
        {
            "response_id": ["R1", "R2", "R3"],
            "account_id": ["A5", "A4", "A0"],
            "submitted_at": ["2024-04-01", "2024-04-02", "2024-04-03"],
            "user_id": ["U5", "", "U99"],
            "nps": ["3", "9", "7"],
            "comment": ["価格が高すぎる", "很好用", "fine"],
        }
    )
    ts = pd.Timestamp("2024-02-01") + pd.to_timedelta(
        np.sort(rng.integers(0, 120 * 86400, n_events)), unit="s"
    )
    user = rng.integers(0, 12, n_events)
    events = pd.DataFrame(
        {
            "account_id": [f"A{u % 6}" for u in user],
            "user_id": [f"U{u}" for u in user],
            "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "event": rng.choice(["login", "report_created", "Export"], n_events),
            "quantity": rng.choice(["1", "2", ""], n_events),
            "event_id": [f"ev-{i}" for i in range(n_events)],
        }
    )
    events.loc[5, "timestamp"] = "not a time"
    events.loc[7, "account_id"] = "A404"
    events.loc[9, "timestamp"] = "2031-01-01T00:00:00Z"  # absurdly in the future
    events = pd.concat([events, events.iloc[[11]]], ignore_index=True)  # an exact duplicate (same event_id)
    return {
        "accounts": accounts,
        "users": users,
        "subscriptions": subscriptions,
        "tickets": tickets,
        "surveys": surveys,
        "usage_events": events,
    }


def _write(company: dict[str, pd.DataFrame], folder: Path, fmt: str, event_parts: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in company.items():
        if name == "usage_events" and event_parts > 1:
            (folder / name).mkdir()
            for i, part in enumerate(np.array_split(np.arange(len(frame)), event_parts)):
                _write_one(frame.iloc[part], folder / name / f"part-{i:03d}.{fmt}", fmt)
        else:
            _write_one(frame, folder / f"{name}.{fmt}", fmt)
    return folder


def _write_one(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def _clean_tables(out: Path) -> dict[str, pd.DataFrame]:
    result = {}
    for name in TABLES:
        frame = tables.read_clean(out, name)
        if frame is not None:
            key = list(TABLES[name].key)
            result[name] = frame.sort_values(key).reset_index(drop=True)
    return result


EXPECTED_REASONS = {
    "subscriptions": {"out_of_range": 1, "unknown_category": 1, "bad_order": 1},
    "tickets": {"duplicate_exact": 1, "unknown_account": 1},
    "surveys": {"unknown_user": 1},
    "usage_events": {
        "unparseable_timestamp": 1,
        "future_timestamp": 1,
        "duplicate_exact": 1,
        "unknown_account": 1,
    },
}


@pytest.fixture(scope="module")
def parquet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("pq")
    src = _write(_company(), root / "in", "parquet")
    report = validate.run(input_dir=src, out_dir=root / "out")
    return root / "out", report


def test_report_counts_and_invariant(parquet_run: tuple[Path, dict]) -> None:
    out, report = parquet_run
    for name, expected in EXPECTED_REASONS.items():
        assert report["tables"][name]["reasons"] == expected, name
    for name, t in report["tables"].items():
        assert t["rows_in"] == t["rows_clean"] + t["rows_quarantined"], name
        q = pd.read_parquet(out / "quarantine" / f"{name}.parquet")
        assert len(q) == t["rows_quarantined"]
        assert q["reason"].value_counts().to_dict() == t["reasons"]
    assert report["tables"]["accounts"]["repairs"] == {"normalised_category": 1}
    assert report["tables"]["subscriptions"]["repairs"] == {"normalised_category": 1}
    assert report["totals"]["rows_in"] == sum(t["rows_in"] for t in report["tables"].values())
    assert report["tables_absent"] == [] and set(report["tables_present"]) == set(TABLES)
    assert report == json.loads((out / "validation_report.json").read_text(encoding="utf-8"))
    assert all(len(f["sha256"]) == 64 for files in report["inputs"].values() for f in files)


def test_data_end_inferred_from_events_ignoring_absurd_future(parquet_run: tuple[Path, dict]) -> None:
    out, report = parquet_run
    events = tables.read_clean(out, "usage_events")
    assert events is not None
    assert tables.data_end(out) == events["timestamp"].max()
    assert tables.data_end(out) < pd.Timestamp("2024-06-01")
    assert report["data_end_source"] == "inferred"


def test_clean_tables_match_schemas_and_events_are_sorted_parts(parquet_run: tuple[Path, dict]) -> None:
    out, _ = parquet_run
    for name, frame in _clean_tables(out).items():
        clean_schema(TABLES[name]).validate(frame)
    import duckdb

    glob = tables.events_glob(out)
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0]
    assert n == tables.read_report(out)["tables"]["usage_events"]["rows_clean"]
    for part in sorted((out / "usage_events").glob("*.parquet")):
        frame = pd.read_parquet(part)
        assert frame.equals(frame.sort_values(["account_id", "timestamp"], kind="stable"))


def test_csv_input_gives_the_same_clean_tables(parquet_run: tuple[Path, dict], tmp_path: Path) -> None:
    out, report = parquet_run
    src = _write(_company(), tmp_path / "in", "csv")
    csv_report = validate.run(input_dir=src, out_dir=tmp_path / "out")
    assert {n: t["reasons"] for n, t in csv_report["tables"].items()} == {
        n: t["reasons"] for n, t in report["tables"].items()
    }
    a, b = _clean_tables(out), _clean_tables(tmp_path / "out")
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def test_event_parts_and_many_buckets_give_the_same_result(
    parquet_run: tuple[Path, dict], tmp_path: Path
) -> None:
    out, report = parquet_run
    src = _write(_company(), tmp_path / "in", "parquet", event_parts=4)
    parts_report = validate.run(input_dir=src, out_dir=tmp_path / "out", chunk_rows=50)
    assert len(list((tmp_path / "out" / "usage_events").glob("part-*.parquet"))) > 3
    assert parts_report["tables"]["usage_events"]["reasons"] == report["tables"]["usage_events"]["reasons"]
    assert parts_report["tables"]["usage_events"]["repairs"] == report["tables"]["usage_events"]["repairs"]
    pd.testing.assert_frame_equal(
        _clean_tables(out)["usage_events"], _clean_tables(tmp_path / "out")["usage_events"]
    )


def test_validating_clean_output_again_quarantines_nothing(
    parquet_run: tuple[Path, dict], tmp_path: Path
) -> None:
    out, report = parquet_run
    again = validate.run(input_dir=out, out_dir=tmp_path / "again")
    assert again["totals"]["rows_quarantined"] == 0
    assert again["totals"]["rows_repaired"] == 0
    assert again["data_end"] == report["data_end"]
    a, b = _clean_tables(out), _clean_tables(tmp_path / "again")
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def test_optional_tables_absent(tmp_path: Path) -> None:
    company = _company()
    src = _write({k: company[k] for k in ("accounts", "usage_events")}, tmp_path / "in", "parquet")
    out = tmp_path / "out"
    # A stale optional table from an earlier run must not survive.
    out.mkdir()
    company["tickets"].to_parquet(out / "tickets.parquet")
    report = validate.run(input_dir=src, out_dir=out)
    assert report["tables_absent"] == ["subscriptions", "users", "tickets", "surveys"]
    assert tables.read_clean(out, "tickets") is None and tables.read_clean(out, "users") is None
    # Without users, user ids of events are not checked.
    assert "unknown_user" not in report["tables"]["usage_events"]["reasons"]


def test_declared_end_date(tmp_path: Path) -> None:
    src = _write(_company(), tmp_path / "in", "parquet")
    report = validate.run(input_dir=src, out_dir=tmp_path / "out", end_date="2024-03-31")
    assert report["data_end_source"] == "declared"
    assert pd.Timestamp(report["future_cutoff"]) == pd.Timestamp("2024-04-01")
    events = tables.read_clean(tmp_path / "out", "usage_events")
    assert events is not None and events["timestamp"].max() < pd.Timestamp("2024-04-01")
    reasons = report["tables"]["usage_events"]["reasons"]
    assert reasons["future_timestamp"] > 100  # every event in April and May


def test_csv_lines_in_legacy_encodings_are_repaired(tmp_path: Path) -> None:
    src = _write(_company(), tmp_path / "in", "parquet")
    (src / "surveys.parquet").unlink()
    lines = [
        b"response_id,account_id,submitted_at,nps,comment\n",
        "R1,A0,2024-04-01,3,価格が高すぎる。競合の方が安い。\n".encode("cp932"),
        "R2,A1,2024-04-01,9,非常好用，客服很快。\n".encode("gb18030"),
        'R3,A2,2024-04-01,7,"multi\nline, utf-8 ✓"\n'.encode(),
        "R4,A3,2024-04-01,5,café crème\n".encode("cp1252"),
    ]
    (src / "surveys.csv").write_bytes(b"".join(lines))
    report = validate.run(input_dir=src, out_dir=tmp_path / "out")
    assert report["tables"]["surveys"]["repairs"] == {"repaired_encoding": 3}
    surveys = tables.read_clean(tmp_path / "out", "surveys")
    assert surveys is not None
    assert list(surveys["comment"]) == [
        "価格が高すぎる。競合の方が安い。",
        "非常好用，客服很快。",
        "multi\nline, utf-8 ✓",
        "café crème",
    ]


def _cli(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def test_cli_missing_required_column_exits_2_naming_file_and_column(tmp_path: Path) -> None:
    company = _company()
    company["accounts"] = company["accounts"].drop(columns="created_at")
    src = _write(company, tmp_path / "in", "csv")
    code, output = _cli(["validate", "--input", str(src), "--out", str(tmp_path / "out")])
    assert code == 2
    lines = [line for line in output.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in output
    assert "accounts.csv" in lines[0] and "created_at" in lines[0]


def test_cli_missing_required_column_in_an_event_part(tmp_path: Path) -> None:
    company = _company()
    src = _write(company, tmp_path / "in", "parquet", event_parts=3)
    bad = src / "usage_events" / "part-001.parquet"
    pd.read_parquet(bad).drop(columns="event").to_parquet(bad)
    code, output = _cli(["validate", "--input", str(src), "--out", str(tmp_path / "out")])
    assert code == 2 and "part-001.parquet" in output and "'event'" in output


def test_cli_unreadable_file_exits_2(tmp_path: Path) -> None:
    src = _write(_company(), tmp_path / "in", "parquet")
    (src / "tickets.parquet").write_bytes(b"this is not parquet at all")
    code, output = _cli(["validate", "--input", str(src), "--out", str(tmp_path / "out")])
    assert code == 2 and "tickets.parquet" in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_cli_missing_required_table_exits_2(tmp_path: Path) -> None:
    company = _company()
    src = _write({k: v for k, v in company.items() if k != "usage_events"}, tmp_path / "in", "parquet")
    code, output = _cli(["validate", "--input", str(src), "--out", str(tmp_path / "out")])
    assert code == 2 and "usage_events" in output


def test_cli_success_prints_totals(tmp_path: Path) -> None:
    src = _write(_company(), tmp_path / "in", "parquet")
    code, output = _cli(["validate", "--input", str(src), "--out", str(tmp_path / "out")])
    assert code == 0, output
    assert "rows_in=" in output and "rows_quarantined=10" in output


def test_stage_module_exits_2_with_one_line(tmp_path: Path) -> None:
    company = _company()
    company["usage_events"] = company["usage_events"].drop(columns="timestamp")
    src = _write(company, tmp_path / "in", "csv")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.validate", "--input", str(src), "--out", str(tmp_path / "out"),
         "--params", str(tmp_path / "none.yaml")],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "usage_events.csv" in errors[0] and "timestamp" in errors[0]
    assert "Traceback" not in proc.stderr


def test_main_reads_params_section(tmp_path: Path) -> None:
    src = _write(_company(), tmp_path / "in", "parquet")
    params = tmp_path / "params.yaml"
    params.write_text("validate:\n  end_date: '2024-04-30'\n  chunk_rows: 100\n", encoding="utf-8")
    validate.main(["--input", str(src), "--out", str(tmp_path / "out"), "--params", str(params)])
    report = tables.read_report(tmp_path / "out")
    assert report["data_end_source"] == "declared" and report["data_end"].startswith("2024-04-30T23:59:59")
    params.write_text("validate:\n  chunk_rowz: 100\n", encoding="utf-8")
    from churnguard.errors import InputError

    with pytest.raises(InputError, match="chunk_rowz"):
        validate.main(["--input", str(src), "--out", str(tmp_path / "out2"), "--params", str(params)])


def test_header_spellings_are_mapped_to_contract_columns(parquet_run: tuple, tmp_path: Path) -> None:
    out, report = parquet_run
    company = _company()
    company["accounts"] = company["accounts"].rename(
        columns={"account_id": "Account ID", "created_at": "Created-At"}
    )
    src = _write(company, tmp_path / "in", "parquet", event_parts=3)
    part = src / "usage_events" / "part-001.parquet"
    pd.read_parquet(part).rename(columns={"user_id": "User_ID", "timestamp": " Timestamp"}).to_parquet(part)
    renamed = validate.run(input_dir=src, out_dir=tmp_path / "out")
    assert {n: t["reasons"] for n, t in renamed["tables"].items()} == {
        n: t["reasons"] for n, t in report["tables"].items()
    }
    pd.testing.assert_frame_equal(
        _clean_tables(out)["usage_events"], _clean_tables(tmp_path / "out")["usage_events"]
    )


def test_two_headers_for_one_column_exit_2(tmp_path: Path) -> None:
    company = _company()
    company["tickets"] = company["tickets"].assign(**{"Ticket ID": company["tickets"]["ticket_id"]})
    src = _write(company, tmp_path / "in", "csv")
    code, output = _cli(["validate", "--input", str(src), "--out", str(tmp_path / "out")])
    assert code == 2 and "tickets.csv" in output and "ticket_id" in output
