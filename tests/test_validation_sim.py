"""Stage test on a dirty simulated company: the report accounts for every injected fault."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from churnguard import tables
from churnguard.contract import TABLES, clean_schema
from pipeline import simulate, validate

pytestmark = pytest.mark.slow  # simulates a company (~15 s)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    root = tmp_path_factory.mktemp("dirty")
    simulate.run(
        out=root / "raw",
        truth_out=root / "truth",
        accounts=150,
        months=12,
        seed=3,
        dirty=True,
        start="2024-01-01",
    )
    report = validate.run(input_dir=root / "raw", out_dir=root / "validated")
    faults = json.loads((root / "truth" / "faults.json").read_text(encoding="utf-8"))
    return root, report, faults


def _observed(report: dict) -> dict[str, dict[str, int]]:
    """{table: {code: n}} of quarantine reasons and repairs, as faults.json writes it."""
    out: dict[str, dict[str, int]] = {}
    for name, t in report["tables"].items():
        codes = {**t["reasons"], **t["repairs"]}
        if codes:
            out[name] = dict(sorted(codes.items()))
    return out


def test_report_equals_injected_faults(dirty: tuple[Path, dict, dict]) -> None:
    _, report, faults = dirty
    assert _observed(report) == faults


def test_reconciliation_invariant_and_quarantine_files(dirty: tuple[Path, dict, dict]) -> None:
    root, report, _ = dirty
    for name, t in report["tables"].items():
        assert t["rows_in"] == t["rows_clean"] + t["rows_quarantined"], name
        quarantine = pd.read_parquet(root / "validated" / "quarantine" / f"{name}.parquet")
        assert len(quarantine) == t["rows_quarantined"]
        clean = tables.read_clean(root / "validated", name)
        assert clean is not None and len(clean) == t["rows_clean"]
        clean_schema(TABLES[name]).validate(clean)


def test_inferred_data_end_matches_the_simulated_end(dirty: tuple[Path, dict, dict]) -> None:
    root, report, _ = dirty
    meta = json.loads((root / "truth" / "sim_meta.json").read_text(encoding="utf-8"))
    sim_end = pd.Timestamp(meta["data_end"]).tz_localize(None) if "data_end" in meta else None
    cutoff = pd.Timestamp(report["future_cutoff"])
    assert report["data_end_source"] == "inferred"
    if sim_end is not None:
        # The simulated history ends at a month boundary: the cut-off is that day (or the day after).
        assert sim_end - pd.Timedelta(days=1) <= cutoff <= sim_end + pd.Timedelta(days=1)
