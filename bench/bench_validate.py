"""Benchmark: validation throughput (events/s) and peak memory of the validate stage.

    .venv/bin/python bench/bench_validate.py [--events 10000000] [--parts 10] [--string-timestamps]
    .venv/bin/python bench/bench_validate.py --sim-accounts 3500 --sim-months 24   # the simulator, dirty

Writes a synthetic company (accounts, users and an event log in Parquet parts, with a
little dirt: exact duplicates and unknown accounts) -- or, with --sim-accounts, a dirty
company from the simulator -- then measures in the same run:
- baseline: a plain DuckDB scan of the same event parts (count(*), min/max timestamp);
- validate: `python -m pipeline.validate` in a child process (wall time, peak RSS).
Prints figures and the validate / baseline time ratio. Targets (issue 2): 10 M events
in < 60 s and < 4 GB peak on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]


def write_company(root: Path, n_events: int, parts: int, string_ts: bool, seed: int = 0) -> None:
    """A synthetic input folder: 5,000 accounts, 50,000 users, `n_events` events in parts."""
    rng = np.random.default_rng(seed)
    n_acc, n_users = 5_000, 50_000
    acc_ids = np.array([f"A{i:06d}" for i in range(n_acc)], dtype=object)
    user_acc = rng.integers(0, n_acc, n_users)
    pq.write_table(
        pa.table(
            {
                "account_id": acc_ids,
                "created_at": pa.array(np.full(n_acc, np.datetime64("2023-01-01", "us")), pa.timestamp("us")),
            }
        ),
        root / "accounts.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "user_id": np.array([f"U{i:07d}" for i in range(n_users)], dtype=object),
                "account_id": acc_ids[user_acc],
                "created_at": pa.array(
                    np.full(n_users, np.datetime64("2023-01-02", "us")), pa.timestamp("us")
                ),
            }
        ),
        root / "users.parquet",
    )
    events_dir = root / "usage_events"
    events_dir.mkdir()
    start = np.datetime64("2024-01-01", "us").astype(np.int64)
    span = 365 * 86_400 * 1_000_000
    names = np.array(["login", "report_created", "dashboard_viewed", "export", "invite_sent", "api_call"])
    per_part = n_events // parts
    for p in range(parts):
        n = per_part if p < parts - 1 else n_events - per_part * (parts - 1)
        lo = start + span * p // parts
        ts = np.sort(rng.integers(lo, lo + span // parts, n))
        users = rng.integers(0, n_users, n)
        acc = acc_ids[user_acc[users]].copy()
        dirt = rng.random(n)
        acc[dirt < 0.0002] = "A_UNKNOWN"
        ts_col: pa.Array = pa.array(ts.astype("datetime64[us]"), pa.timestamp("us"))
        if string_ts:
            ts_col = pa.compute.strftime(ts_col, format="%Y-%m-%dT%H:%M:%SZ")
        table = pa.table(
            {
                "account_id": pa.array(acc, pa.string()),
                "user_id": pa.array(np.array([f"U{u:07d}" for u in users], dtype=object), pa.string()),
                "timestamp": ts_col,
                "event": pa.array(names[rng.integers(0, len(names), n)], pa.string()),
                "quantity": pa.array(rng.integers(1, 4, n).astype(np.float64)),
            }
        )
        dup = np.flatnonzero(dirt > 0.9998)
        table = pa.concat_tables([table, table.take(pa.array(dup))])
        pq.write_table(table, events_dir / f"part-{p:04d}.parquet", compression="zstd")


def baseline_scan(events: Path) -> tuple[float, int]:
    """Seconds for count(*) + min/max(timestamp) over the event parts with DuckDB."""
    con = duckdb.connect()
    t0 = time.perf_counter()
    rows = con.execute(
        f"SELECT count(*), min(timestamp), max(timestamp) FROM read_parquet('{events.as_posix()}/*.parquet')"
    ).fetchall()
    return time.perf_counter() - t0, int(rows[0][0])


def run_validate(input_dir: Path, out_dir: Path, params: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in GB) of the validate stage as DVC runs it."""
    cmd = [sys.executable, "-m", "pipeline.validate", "--input", str(input_dir), "--out", str(out_dir)]
    cmd += ["--params", str(params)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return seconds, cpu, after.ru_maxrss / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--parts", type=int, default=10)
    parser.add_argument("--chunk-rows", type=int, default=2_000_000)
    parser.add_argument("--string-timestamps", action="store_true", help="timestamps as ISO strings")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--sim-accounts", type=int, default=None, help="use the simulator (dirty) instead")
    parser.add_argument("--sim-months", type=int, default=24)
    parser.add_argument("--input", type=Path, default=None, help="validate this folder (no generation)")
    parser.add_argument("--generate-only", type=Path, default=None, help="write the synthetic folder here")
    args = parser.parse_args()
    if args.generate_only is not None:
        args.generate_only.mkdir(parents=True)
        write_company(args.generate_only, args.events, args.parts, args.string_timestamps)
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        t0 = time.perf_counter()
        if args.input is not None:
            (root / "in").rmdir()
            (root / "in").symlink_to(args.input.resolve())
        elif args.sim_accounts:
            from pipeline.simulate import run as simulate

            simulate(
                out=root / "in",
                truth_out=root / "truth",
                accounts=args.sim_accounts,
                months=args.sim_months,
                seed=1,
                dirty=True,
                start="2023-01-01",
            )
            took = time.perf_counter() - t0
            print(f"simulated {args.sim_accounts} accounts x {args.sim_months} months in {took:.1f} s")
        else:
            write_company(root / "in", args.events, args.parts, args.string_timestamps)
            print(f"generated {args.events:,} events in {time.perf_counter() - t0:.1f} s")
        params = root / "params.yaml"
        params.write_text(f"validate:\n  chunk_rows: {args.chunk_rows}\n", encoding="utf-8")
        load = os.getloadavg()[0]
        base_s, n_rows = baseline_scan(root / "in" / "usage_events")
        val_s, cpu_s, peak_gb = run_validate(root / "in", root / "out", params)
        report = json.loads((root / "out" / "validation_report.json").read_text(encoding="utf-8"))
        ev = report["tables"]["usage_events"]
        print(
            f"baseline DuckDB scan: {base_s:.2f} s for {n_rows:,} rows ({n_rows / base_s / 1e6:.1f} M rows/s)"
        )
        print(
            f"validate: {val_s:.1f} s wall, {cpu_s:.1f} s CPU "
            f"({os.cpu_count()} cores, load {load:.1f} before), "
            f"{n_rows / val_s / 1e6:.2f} M events/s, peak RSS {peak_gb:.2f} GB, "
            f"ratio to baseline {val_s / base_s:.0f}x"
        )
        print(f"events: clean {ev['rows_clean']:,}, quarantined {ev['reasons']}, repairs {ev['repairs']}")
        verdict = {True: "OK", False: "MISSED"}
        print(f"targets: < 60 s wall -> {verdict[val_s < 60]}; < 4 GB -> {verdict[peak_gb < 4]}")


if __name__ == "__main__":
    main()
