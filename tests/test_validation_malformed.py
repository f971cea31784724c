"""A CSV row with more cells than its header is quarantined, never cut to fit and kept."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.validate import run


def test_row_with_extra_cells_is_quarantined_with_its_cells(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "accounts.csv").write_text("account_id,created_at\na1,2024-01-01\n", encoding="utf-8")
    (raw / "usage_events.csv").write_text(
        "account_id,user_id,timestamp,event\n"
        "a1,u1,2024-02-01T10:00:00Z,login\n"
        "a1,u1,2024-02-02T10:00:00Z,login\n",
        encoding="utf-8",
    )
    (raw / "surveys.csv").write_text(
        "response_id,account_id,submitted_at,nps,comment\n"
        "r1,a1,2024-02-01,9,great\n"
        "r2,a1,2024-02-01,3,too expensive, we will switch to a competitor\n",
        encoding="utf-8",
    )
    report = run(input_dir=raw, out_dir=tmp_path / "out")
    surveys = report["tables"]["surveys"]
    assert (surveys["rows_in"], surveys["rows_clean"], surveys["rows_quarantined"]) == (2, 1, 1)
    assert surveys["reasons"] == {"malformed_row": 1}
    clean = pd.read_parquet(tmp_path / "out" / "surveys.parquet")
    assert clean["response_id"].tolist() == ["r1"]
    quarantined = pd.read_parquet(tmp_path / "out" / "quarantine" / "surveys.parquet")
    row = quarantined.iloc[0].to_dict()
    assert row["reason"] == "malformed_row"
    assert row["comment"] == "too expensive" and "competitor" in str(row["_extra"])
    written = json.loads((tmp_path / "out" / "validation_report.json").read_text(encoding="utf-8"))
    assert written["totals"]["rows_quarantined"] == 1
