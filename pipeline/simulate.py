"""DVC stage `simulate`: the embedded default data source (a simulated B2B SaaS company).

With `data.source: folder` the stage only writes a SKIPPED.txt marker in its own output
folders and never touches the user's input folder.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from churnguard.errors import InputError
from churnguard.params import DEFAULT_PARAMS, DataParams, load_section, read_params
from churnguard.simulator import SimulateParams, simulate_to_folder
from churnguard.simulator.writer import write_marker
from churnguard.stage import run_stage

log = logging.getLogger(__name__)


def run(
    out: Path,
    truth_out: Path | None,
    accounts: int,
    months: int,
    seed: int,
    dirty: bool,
    start: str,
    **extra: Any,
) -> dict[str, int]:
    """Simulate a company into `out` (and its ground truth into `truth_out`); row counts per table."""
    try:
        params = SimulateParams(
            accounts=accounts, months=months, seed=seed, dirty=dirty, start=start, **extra
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"simulate.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    return simulate_to_folder(params, Path(out), Path(truth_out) if truth_out is not None else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for the contract tables")
    parser.add_argument("--truth-out", type=Path, required=True, help="folder for the oracle and truth")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    data = load_section("data", DataParams, args.params)
    if data.source == "folder":
        text = f"simulate skipped: data.source is 'folder' (input {data.input})"
        write_marker(args.out, text)
        write_marker(args.truth_out, text)
        log.info(text)
        return
    sim = load_section("simulate", SimulateParams, args.params)
    snap = read_params(args.params).get("snapshots") or {}
    overrides = {k: snap[k] for k in ("horizon_days", "grace_days") if snap.get(k) is not None}
    sim = sim.model_copy(update=overrides)
    counts = simulate_to_folder(sim, args.out, args.truth_out)
    print("simulated: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    run_stage(main)
