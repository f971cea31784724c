"""The embedded default data source: a simulated B2B SaaS company (see docs/simulator.md).

`simulate_to_folder` writes the data-contract tables and a truth folder (oracle, churn
events, latent traits, and in dirty mode the exact fault counts).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from churnguard.simulator.config import SimulateParams
from churnguard.simulator.dirt import Dirt
from churnguard.simulator.engine import Company, simulate_company
from churnguard.simulator.writer import (
    EVENTS_DIR,
    part_path,
    reset_dir,
    write_json,
    write_parquet,
    write_table,
)

__all__ = ["Company", "SimulateParams", "simulate_company", "simulate_to_folder"]

log = logging.getLogger(__name__)


def simulate_to_folder(params: SimulateParams, out: Path, truth_out: Path | None) -> dict[str, int]:
    """Simulate and write the company; returns row counts per table as written."""
    reset_dir(out)
    (out / EVENTS_DIR).mkdir()
    dirt = Dirt.for_params(params) if params.dirty else None
    n_written = {"usage_events": 0, "usage_event_parts": 0}

    def sink(month: int, table: pa.Table) -> None:
        if dirt is not None:
            table = dirt.events_part(month, table)
        write_table(table, part_path(out, month))
        n_written["usage_events"] += table.num_rows
        n_written["usage_event_parts"] += 1

    company = simulate_company(params, sink)
    tables = {
        "accounts": company.accounts,
        "subscriptions": company.subscriptions,
        "users": company.users,
        "tickets": company.tickets,
    }
    counts: dict[str, int] = {}
    if dirt is not None:
        tables = {name: dirt.table(name, df) for name, df in tables.items()}
    for name, df in tables.items():
        write_parquet(df, out / f"{name}.parquet")
        counts[name] = len(df)
    if dirt is not None:
        counts["surveys"] = dirt.write_surveys_csv(company.surveys, out / "surveys.csv")
    else:
        write_parquet(company.surveys, out / "surveys.parquet")
        counts["surveys"] = len(company.surveys)
    counts.update(n_written)

    if truth_out is not None:
        reset_dir(truth_out)
        write_parquet(company.oracle, truth_out / "oracle.parquet")
        write_parquet(company.churn_events, truth_out / "churn_events.parquet")
        write_parquet(company.accounts_truth, truth_out / "accounts_truth.parquet")
        write_parquet(company.latent_monthly, truth_out / "latent_monthly.parquet")
        meta = {
            "data_start": company.data_start.isoformat(),
            "data_end": company.data_end.isoformat(),
            "params": params.model_dump(),
            "rows": counts,
        }
        write_json(meta, truth_out / "sim_meta.json")
        if dirt is not None:
            write_json(dirt.faults(), truth_out / "faults.json")
    log.info("simulated %s", counts)
    return counts
