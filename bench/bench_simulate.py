"""Simulator throughput (events/s) and peak memory at ~10 M events.

    .venv/bin/python bench/bench_simulate.py [--accounts 4000] [--months 24] [--dirty]

Each measurement runs in its own process so peak RSS (ru_maxrss) is that run's alone.
Baseline measured in the same run: writing the same number of random event rows to
Parquet with pyarrow (the I/O floor any generator pays), so the ratio shows how much the
simulation itself costs on top of writing its output.
Targets (issue 2): 10 M events in < 60 s, peak RSS < 4 GB on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

_CHILD_SIM = """
import json, resource, sys, time
from pathlib import Path
from pipeline.simulate import run
a = json.loads(sys.argv[1])
t = time.perf_counter()
counts = run(out=Path(a["out"]) / "raw", truth_out=Path(a["out"]) / "truth", accounts=a["accounts"],
             months=a["months"], seed=42, dirty=a["dirty"], start="2024-01-01",
             events_per_user_day=a["epud"])
secs = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": secs, "events": counts["usage_events"], "cpu_seconds": ru.ru_utime + ru.ru_stime,
                  "peak_rss_mb": ru.ru_maxrss / 1024}))
"""

_CHILD_BASELINE = """
import json, resource, sys, time
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from pathlib import Path
a = json.loads(sys.argv[1])
n, parts = a["events"], a["months"]
rng = np.random.default_rng(0)
ids = pa.array([f"acc_{i:06x}" for i in range(4000)])
users = pa.array([f"u_{i:08x}" for i in range(100000)])
names = pa.array(["login", "dashboard_viewed", "report_created", "api_call"])
t = time.perf_counter()
for p in range(parts):
    m = n // parts
    table = pa.table({
        "account_id": ids.take(pa.array(rng.integers(0, 4000, m))),
        "user_id": users.take(pa.array(rng.integers(0, 100000, m))),
        "timestamp": pa.array(np.sort(rng.integers(0, 2**40, m)), type=pa.timestamp("us", tz="UTC")),
        "event": names.take(pa.array(rng.integers(0, 4, m))),
        "quantity": pa.array(np.ones(m)),
    })
    pq.write_table(table, Path(a["out"]) / f"part-{p:05d}.parquet", compression="snappy")
secs = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": secs, "events": n, "cpu_seconds": ru.ru_utime + ru.ru_stime,
                  "peak_rss_mb": ru.ru_maxrss / 1024}))
"""


def _child(code: str, args: dict[str, object]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=4000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--events-per-user-day", type=float, default=0.4)
    parser.add_argument("--dirty", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sim = _child(
            _CHILD_SIM,
            {
                "out": tmp,
                "accounts": args.accounts,
                "months": args.months,
                "dirty": args.dirty,
                "epud": args.events_per_user_day,
            },
        )
    with tempfile.TemporaryDirectory() as tmp:
        base = _child(_CHILD_BASELINE, {"out": tmp, "events": int(sim["events"]), "months": args.months})
    rate = sim["events"] / sim["seconds"]
    base_rate = base["events"] / base["seconds"]
    print(f"simulate: {args.accounts} accounts x {args.months} months, dirty={args.dirty}")
    print(f"  events           {sim['events']:,.0f}")
    print(f"  wall time        {sim['seconds']:.1f} s  (target < 60 s at 10 M)")
    print(f"  CPU time         {sim['cpu_seconds']:.1f} s  (wall > CPU when the machine is shared)")
    per_cpu = sim["events"] / sim["cpu_seconds"]
    print(f"  throughput       {rate:,.0f} events/s wall, {per_cpu:,.0f} events/CPU-s")
    print(f"  peak RSS         {sim['peak_rss_mb']:,.0f} MB  (target < 4096 MB)")
    print(f"baseline: write the same number of random rows to Parquet: {base['seconds']:.1f} s wall,")
    print(f"  {base['cpu_seconds']:.1f} s CPU, {base_rate:,.0f} rows/s wall")
    print(f"  simulate / baseline CPU ratio: {sim['cpu_seconds'] / base['cpu_seconds']:.1f}x")


if __name__ == "__main__":
    main()
