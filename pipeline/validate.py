"""DVC stage `validate`: raw exports -> clean Parquet, quarantine tables and a report.

python -m pipeline.validate --input DIR --out DIR [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard.contract import OPTIONAL_TABLES, TABLES
from churnguard.errors import InputError
from churnguard.params import DEFAULT_PARAMS, load_section
from churnguard.stage import run_stage
from churnguard.validation import ValidateParams
from churnguard.validation.end_date import future_cutoff, infer_data_end, parse_end_date
from churnguard.validation.events import stage_events, staged_relation, validate_events
from churnguard.validation.frames import connect, user_accounts_frame, validate_frame
from churnguard.validation.inputs import find_inputs, fingerprint, read_table_file
from churnguard.validation.rules import RuleContext, check_invariant

log = logging.getLogger(__name__)

REPORT_NAME = "validation_report.json"
# Small tables in dependency order: referenced tables first.
SMALL_TABLES = ("accounts", "users", "subscriptions", "tickets", "surveys")


def _clear_outputs(out_dir: Path) -> None:
    """Remove this stage's previous outputs (only those) so no stale table survives."""
    for name in TABLES:
        (out_dir / f"{name}.parquet").unlink(missing_ok=True)
    for folder in ("usage_events", "quarantine", "_work"):
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    (out_dir / REPORT_NAME).unlink(missing_ok=True)


def run(
    input_dir: Path,
    out_dir: Path,
    end_date: str | None = None,
    chunk_rows: int = ValidateParams().chunk_rows,
    end_density: float = ValidateParams().end_density,
    end_gap_days: int = ValidateParams().end_gap_days,
    end_max_tail: float = ValidateParams().end_max_tail,
    end_max_ahead_days: float | None = ValidateParams().end_max_ahead_days,
    memory_limit: str = ValidateParams().memory_limit,
    now: pd.Timestamp | None = None,
) -> dict[str, Any]:
    """Validate every table in `input_dir`, write clean tables, quarantine and the report."""
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    files = find_inputs(input_dir)
    small = {
        name: read_table_file(files[name][0], TABLES[name], input_dir)
        for name in SMALL_TABLES
        if name in files
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out_dir)
    work = out_dir / "_work"
    (work / "duckdb_tmp").mkdir(parents=True, exist_ok=True)
    (out_dir / "quarantine").mkdir(parents=True, exist_ok=True)
    con = connect(memory_limit=memory_limit, temp_directory=work / "duckdb_tmp")
    try:
        staged = stage_events(con, files["usage_events"], input_dir, work, chunk_rows)
        if end_date is not None:
            data_end, end_source = parse_end_date(end_date), "declared"
        else:
            inferred = infer_data_end(
                con,
                staged_relation(staged),
                "timestamp",
                staged.columns["timestamp"],
                now=now if now is not None else pd.Timestamp.now(tz="UTC"),
                density=end_density,
                gap_days=end_gap_days,
                max_tail=end_max_tail,
                max_ahead_days=end_max_ahead_days,
            )
            if inferred is None:
                raise InputError(
                    f"{files['usage_events'][0]}: no parseable 'timestamp' in usage_events, so the data "
                    "end cannot be inferred; set validate.end_date in params.yaml"
                )
            data_end, end_source = inferred, "inferred"
        cutoff = future_cutoff(data_end)
        log.info("data end %s (%s); timestamps from %s on are future", data_end, end_source, cutoff)

        tables: dict[str, dict[str, Any]] = {}
        clean_ids: dict[str, pd.Series] = {}
        user_accounts: pd.DataFrame | None = None  # the clean users' (user_id, account_id)
        for name, raw in small.items():
            table = TABLES[name]
            refs = {t: clean_ids[t] for _, t in table.references if t in clean_ids}
            pairs = user_accounts if "users" in refs else None
            result = validate_frame(raw, table, future_cutoff=cutoff, references=refs, user_accounts=pairs)
            result.clean.to_parquet(out_dir / f"{name}.parquet", index=False)
            result.quarantine.to_parquet(out_dir / "quarantine" / f"{name}.parquet", index=False)
            tables[name] = result.report
            clean_ids[name] = result.clean[table.key[0]]
            if name == "users":
                user_accounts = result.clean[["user_id", "account_id"]]
            log.info("%s: %s", name, result.report)

        for name, ids in clean_ids.items():
            con.register(f"_ids_{name}", pd.DataFrame({"id": ids.drop_duplicates()}))
        if user_accounts is not None:
            con.register("_user_accounts", user_accounts_frame(user_accounts))
        ctx = RuleContext(
            future_cutoff=cutoff,
            references={name: f"_ids_{name}" for name in clean_ids if name in ("accounts", "users")},
            user_accounts="_user_accounts" if user_accounts is not None else None,
        )
        tables["usage_events"] = validate_events(
            con, staged, out_dir, out_dir / "quarantine" / "usage_events.parquet", work, ctx
        )
        log.info("usage_events: %s", tables["usage_events"])
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)

    report = build_report(tables, files, input_dir, data_end, end_source, cutoff)
    (out_dir / REPORT_NAME).write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return report


def build_report(
    tables: dict[str, dict[str, Any]],
    files: dict[str, list[Path]],
    input_dir: Path,
    data_end: pd.Timestamp,
    end_source: str,
    cutoff: pd.Timestamp,
) -> dict[str, Any]:
    """The validation report; raises when a table's counts do not reconcile."""
    ordered = {name: tables[name] for name in TABLES if name in tables}
    for name, table_report in ordered.items():
        check_invariant(name, table_report)
    totals = {
        key: sum(t[key] for t in ordered.values()) for key in ("rows_in", "rows_clean", "rows_quarantined")
    }
    totals["rows_repaired"] = sum(sum(t["repairs"].values()) for t in ordered.values())
    return {
        "data_end": data_end.isoformat(),
        "data_end_source": end_source,
        "future_cutoff": cutoff.isoformat(),
        "tables_present": list(ordered),
        "tables_absent": [name for name in OPTIONAL_TABLES if name not in ordered],
        "totals": totals,
        "tables": ordered,
        "inputs": {name: [fingerprint(p, input_dir) for p in files[name]] for name in ordered},
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, load the `validate` params section and run the stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="input folder (data contract)")
    parser.add_argument("--out", type=Path, required=True, help="folder for clean tables and report")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    params = load_section("validate", ValidateParams, args.params)
    report = run(
        input_dir=args.input,
        out_dir=args.out,
        end_date=params.end_date,
        chunk_rows=params.chunk_rows,
        end_density=params.end_density,
        end_gap_days=params.end_gap_days,
        end_max_tail=params.end_max_tail,
        end_max_ahead_days=params.end_max_ahead_days,
        memory_limit=params.memory_limit,
    )
    print(json.dumps(report["totals"]))


if __name__ == "__main__":
    run_stage(main)
