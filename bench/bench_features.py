"""Benchmark: snapshots + features over N simulated events (monthly snapshots, 24 months).

Writes a synthetic validated folder (accounts, annual subscriptions, users, and
`usage_events/part-*.parquet` sorted by account and time, as `validate` writes them),
then runs, each in a fresh subprocess so peak memory is measured per step:
  1. a plain DuckDB scan of the same events (count, distinct users/events, max time
     per account: one group-by pass), the baseline;
  2. the snapshots stage; 3. the features stage (DuckDB, streaming from Parquet).
Prints wall time, CPU time, events/s, peak RSS, and the feature build's cost in scans.

`--save-reference F` keeps the feature table of this run; `--check F` asserts that this
run's feature table equals a saved one exactly (the same data: same --events and --seed),
so a faster implementation can be compared with the one it replaces:

    .venv/bin/python bench/bench_features.py --events 10_000_000 --save-reference /tmp/ref10m.parquet
    # ... change the feature code ...
    .venv/bin/python bench/bench_features.py --events 10_000_000 --reuse --check /tmp/ref10m.parquet
    .venv/bin/python bench/bench_features.py --events 100_000_000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

START = np.datetime64("2024-01-01T00:00:00", "s")
MONTHS = 24
SPAN_S = int(MONTHS * 30.44 * 86400)


def _strings(prefix: str, codes: np.ndarray, width: int) -> pa.Array:
    """Id strings from integer codes without building Python strings per row."""
    uniq = np.unique(codes)
    dictionary = pa.array([f"{prefix}{c:0{width}d}" for c in uniq])
    indices = pa.array(np.searchsorted(uniq, codes).astype(np.int32))
    return pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())


def write_company(folder: Path, n_events: int, seed: int, part_rows: int = 5_000_000) -> dict[str, int]:
    """A synthetic validated company with about `n_events` usage events."""
    rng = np.random.default_rng(seed)
    n_accounts = max(100, n_events // (24 * 200))
    users_per = rng.integers(3, 15, n_accounts)
    created_s = rng.integers(0, SPAN_S // 3, n_accounts)
    end_s = np.where(rng.random(n_accounts) < 0.3, rng.integers(SPAN_S // 3, SPAN_S, n_accounts), SPAN_S)
    weight = (end_s - created_s) * users_per * rng.lognormal(0, 0.5, n_accounts)
    per_account = np.maximum(1, (weight / weight.sum() * n_events)).astype(np.int64)
    n_types = 25
    probs = 1 / np.arange(1, n_types + 1) ** 1.1
    probs /= probs.sum()
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "usage_events").mkdir(parents=True)
    ts_unit = "datetime64[us]"
    accounts = pa.table(
        {
            "account_id": _strings("A", np.arange(n_accounts), 7),
            "created_at": (START + created_s.astype("timedelta64[s]")).astype(ts_unit),
            "segment": pa.array(rng.choice(["smb", "mid_market", "enterprise"], n_accounts)),
        }
    )
    pq.write_table(accounts, folder / "accounts.parquet")
    # Annual terms from creation until the account's end.
    sub_acc, sub_start, sub_end = [], [], []
    year = 365 * 86400
    for a in range(n_accounts):
        s = created_s[a]
        while s < end_s[a]:
            sub_acc.append(a)
            sub_start.append(s)
            sub_end.append(s + year)
            s += year
    sa = np.array(sub_acc)
    pq.write_table(
        pa.table(
            {
                "account_id": _strings("A", sa, 7),
                "subscription_id": _strings("S", np.arange(len(sa)), 9),
                "start_date": (START + np.array(sub_start).astype("timedelta64[s]")).astype(ts_unit),
                "end_date": (START + np.array(sub_end).astype("timedelta64[s]")).astype(ts_unit),
                "mrr": rng.integers(50, 5000, len(sa)).astype(float),
                "billing_period": pa.array(["annual"] * len(sa)),
                "seats": (users_per[sa] + 2).astype(float),
            }
        ),
        folder / "subscriptions.parquet",
    )
    uacc = np.repeat(np.arange(n_accounts), users_per)
    ucode = np.arange(len(uacc))
    pq.write_table(
        pa.table(
            {
                "user_id": _strings("U", ucode, 9),
                "account_id": _strings("A", uacc, 7),
                "created_at": (START + created_s[uacc].astype("timedelta64[s]")).astype(ts_unit),
                "role": pa.array(np.where(np.arange(len(uacc)) % 7 == 0, "admin", "member")),
            }
        ),
        folder / "users.parquet",
    )
    user_offset = np.concatenate([[0], np.cumsum(users_per)[:-1]])
    part, a0, written = 0, 0, 0
    while a0 < n_accounts:
        a1 = a0
        rows = 0
        while a1 < n_accounts and rows < part_rows:
            rows += per_account[a1]
            a1 += 1
        acc = np.repeat(np.arange(a0, a1), per_account[a0:a1])
        span = end_s[acc] - created_s[acc]
        ts = created_s[acc] + (rng.random(len(acc)) ** 0.8 * span).astype(np.int64)
        order = np.lexsort((ts, acc))
        acc, ts = acc[order], ts[order]
        user = user_offset[acc] + (rng.random(len(acc)) * users_per[acc]).astype(np.int64)
        event = rng.choice(n_types, len(acc), p=probs)
        names = pa.array([f"event_{k:02d}" for k in range(n_types)])
        table = pa.table(
            {
                "account_id": _strings("A", acc, 7),
                "user_id": _strings("U", user, 9),
                "timestamp": (START + ts.astype("timedelta64[s]")).astype(ts_unit),
                "event": pa.DictionaryArray.from_arrays(pa.array(event.astype(np.int32)), names).cast(
                    pa.string()
                ),
                "quantity": np.ones(len(acc)),
            }
        )
        pq.write_table(table, folder / "usage_events" / f"part-{part:05d}.parquet", row_group_size=1_000_000)
        written += len(acc)
        part, a0 = part + 1, a1
    data_end = str(START + np.timedelta64(SPAN_S, "s"))
    (folder / "validation_report.json").write_text(json.dumps({"data_end": data_end}), encoding="utf-8")
    return {"accounts": n_accounts, "events": written, "parts": part}


def _child(step: str, folder: Path, work: Path, threads: int) -> None:
    """Run one step in this (fresh) process and print its wall time, CPU time and peak RSS as JSON."""
    start = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = start.ru_utime + start.ru_stime
    t0 = time.perf_counter()
    if step == "scan":
        import duckdb

        con = duckdb.connect()
        con.execute(f"SET threads = {threads}")
        con.execute(
            f"""SELECT account_id, COUNT(*), COUNT(DISTINCT user_id), COUNT(DISTINCT event), MAX(timestamp)
            FROM read_parquet('{folder}/usage_events/*.parquet') GROUP BY account_id"""
        ).fetchall()
    elif step == "snapshots":
        from features.snapshots import SnapshotParams
        from pipeline import snapshots

        snapshots.run(validated=folder, out=work / "snapshots.parquet", params=SnapshotParams())
    else:
        from features.build import EngineParams, FeatureParams
        from features.health import HealthParams
        from models.split import SplitParams
        from pipeline import features

        features.run(
            validated=folder,
            snapshots=work / "snapshots.parquet",
            out=work / "features.parquet",
            text_model=work / "text_model",
            metrics=work / "features.json",
            params=FeatureParams(
                engine=EngineParams(
                    threads=threads, memory_limit="4GB", temp_directory=str(work / "duckdb_tmp")
                )
            ),
            health=HealthParams(),
            split=SplitParams(),
        )
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu0
    print(json.dumps({"step": step, "wall_s": wall, "cpu_s": cpu, "peak_mb": usage.ru_maxrss / 1024}))


def _run_child(step: str, folder: Path, work: Path, threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", step, "--folder", str(folder), "--work", str(work)]
    cmd += ["--threads", str(threads)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/churnguard_bench/validated"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/churnguard_bench/work"))
    parser.add_argument("--reuse", action="store_true", help="reuse an existing synthetic folder")
    parser.add_argument("--child", choices=["scan", "snapshots", "features"])
    parser.add_argument("--save-reference", type=Path, help="copy this run's feature table here")
    parser.add_argument("--check", type=Path, help="assert this run's feature table equals this file")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.folder, args.work, args.threads)
        return
    if not args.reuse:
        t0 = time.perf_counter()
        info = write_company(args.folder, args.events, args.seed)
        print(f"generated {info['events']:,} events, {info['accounts']:,} accounts, {info['parts']} parts "
              f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    args.work.mkdir(parents=True, exist_ok=True)
    n = pq.ParquetDataset(str(args.folder / "usage_events")).read(columns=["quantity"]).num_rows
    results = {
        s: _run_child(s, args.folder, args.work, args.threads) for s in ("scan", "snapshots", "features")
    }
    total = results["snapshots"]["wall_s"] + results["features"]["wall_s"]
    scan = results["scan"]["wall_s"]
    cpu_total = results["snapshots"]["cpu_s"] + results["features"]["cpu_s"]
    cpu_scan = results["scan"]["cpu_s"]
    print(f"events: {n:,}  threads: {args.threads}")
    for step, r in results.items():
        rate = n / r["wall_s"] / 1e6
        print(
            f"{step:>10}: {r['wall_s']:8.1f} s wall  {r['cpu_s']:8.1f} s CPU  {rate:7.2f} M events/s  "
            f"peak {r['peak_mb']:8.0f} MB"
        )
    peak = max(results["snapshots"]["peak_mb"], results["features"]["peak_mb"])
    print(
        f"snapshots+features: {total:.1f} s = {total / scan:.1f} plain DuckDB scans; "
        f"{n / total / 1e6:.2f} M events/s; peak {peak:.0f} MB"
    )
    # On a shared machine wall time depends on the neighbours; CPU time much less so.
    load = os.getloadavg()[0]
    print(f"CPU: {cpu_total:.1f} s = {cpu_total / cpu_scan:.1f} scans' CPU; load average {load:.1f}")
    f = results["features"]
    print(
        f"features alone: {f['wall_s'] / scan:.1f} scans wall, {f['cpu_s'] / cpu_scan:.1f} scans CPU; "
        f"{n / f['cpu_s'] / 1e6:.2f} M events per CPU-s"
    )
    built = args.work / "features.parquet"
    if args.save_reference:
        shutil.copyfile(built, args.save_reference)
        print(f"reference saved to {args.save_reference}")
    if args.check:
        import pandas as pd

        pd.testing.assert_frame_equal(pd.read_parquet(built), pd.read_parquet(args.check), check_exact=True)
        print(f"feature table identical to {args.check}")


if __name__ == "__main__":
    main()
