"""Load benchmark of the service on loopback: req/s and p50/p99 per endpoint, at 16 and 64
connections, side by side with a bare FastAPI endpoint returning a constant (same run); a
1,000-row batch score with reasons; a soak run counting errors.

The server is a real uvicorn process (one worker) on 127.0.0.1; the load generator is `wrk`
(Debian package) in its own process, or, without wrk, a Python asyncio/httpx generator in
a subprocess. With no `--model/--scores`, a realistic setup is built in a temp folder: the
synthetic company of `models.synthetic` widened to ~60 features, a LightGBM bundle trained
by `models.train.train_model`, and scores written by the real score stage.

    .venv/bin/python bench/bench_serving.py                # ~5 minutes
    .venv/bin/python bench/bench_serving.py --duration 5 --soak 0   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KEY = "bench-read-key"

BARE_APP = """
from fastapi import FastAPI
app = FastAPI()

@app.get("/constant")
async def constant() -> dict[str, str]:
    return {"status": "ok"}
"""


def build_setup(root: Path, n_accounts: int, extra_features: int) -> tuple[Path, Path, list[dict]]:
    """A trained bundle and scores for a synthetic company; returns (model, scores, 1000 rows)."""
    from churnguard.scores import ScoreParams
    from models.bundle import select_features
    from models.config import LightGBMParams, SplitParams, TrainParams
    from models.synthetic import make_company
    from models.train import join_snapshots, train_model
    from pipeline import score as stage

    features, snapshots = make_company(n_accounts=n_accounts, n_months=14, seed=3)
    rng = np.random.default_rng(5)
    base = features["active_users_30d"].to_numpy()
    extra = {
        f"usage_metric_{i:02d}_30d": base * rng.uniform(0.1, 3) + rng.normal(0, 5, len(features))
        for i in range(extra_features)
    }
    features = pd.concat([features, pd.DataFrame(extra, index=features.index)], axis=1)
    frame = join_snapshots(features, snapshots)
    params = TrainParams(
        search_trials=1, lightgbm=LightGBMParams(n_estimators=300, early_stopping_rounds=300)
    )
    result = train_model(
        frame, select_features(features), params, SplitParams(test_months=3, valid_months=2), "bench"
    )
    bundle = result.bundle
    model = bundle.save(root / "model")
    features.to_parquet(root / "features.parquet", index=False)
    snapshots.drop(columns=["p_true"]).to_parquet(root / "snapshots.parquet", index=False)
    ids = features["account_id"].unique()
    pd.DataFrame({"account_id": ids, "name": [f"Account {i}" for i in range(len(ids))]}).to_parquet(
        root / "accounts.parquet", index=False
    )
    stage.run(
        model=model,
        features=root / "features.parquet",
        snapshots=root / "snapshots.parquet",
        explanations=root / "no-explanations.parquet",  # the stage explains every account itself
        accounts=root / "accounts.parquet",
        out=root / "scores",
        params=ScoreParams(),
        currency="USD",
    )
    rows_frame = features.sample(1000, replace=len(features) < 1000, random_state=0)
    rows = []
    for rec in rows_frame[bundle.feature_names].to_dict(orient="records"):
        rows.append({"features": {k: (None if pd.isna(v) else v) for k, v in rec.items()}})
    print(
        f"setup: {len(ids)} accounts, {len(bundle.feature_names)} features, "
        f"{bundle.booster.num_trees()} trees, model {bundle.version}"
    )
    return model, root / "scores", rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], url: str) -> subprocess.Popen:
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "server died")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{url} not ready")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def run_wrk(url: str, connections: int, duration: float, headers: dict[str, str]) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{int(duration)}s", "--latency", "--timeout", "10s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # the distribution lines only ("85.50%" in the thread stats must not match "50%")
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(g) for g in sock.groups()) if sock else 0)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": total, "errors": errors}


PY_LOADGEN = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import httpx
    url, conns, duration, headers = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
    lat, errors = [], 0
    async def worker(client, end):
        global errors
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                r = await client.get(url, headers=headers)
                if r.status_code >= 400: errors += 1
            except Exception:
                errors += 1
            lat.append(time.perf_counter() - t)
    async def main():
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            start = time.perf_counter(); end = start + duration
            await asyncio.gather(*(worker(client, end) for _ in range(conns)))
            return time.perf_counter() - start
    elapsed = asyncio.run(main())
    lat.sort()
    print(json.dumps({"rps": len(lat) / elapsed, "p50_ms": lat[len(lat) // 2] * 1000,
                      "p99_ms": lat[int(len(lat) * 0.99)] * 1000, "requests": len(lat), "errors": errors}))
    """
)


def run_python(url: str, connections: int, duration: float, headers: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PY_LOADGEN, url, str(connections), str(duration), json.dumps(headers)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def _cpu_seconds(pid: int, task: int | None = None) -> float:
    """User + system CPU seconds of process `pid` (all its threads; or thread `task`), from /proc."""
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _minor_faults(pid: int) -> int:
    """Minor page faults of process `pid` so far (all threads)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def batch_latency(base: str, rows: list[dict], repeats: int, pid: int | None = None) -> dict[str, float]:
    """POST /v1/score with 1,000 rows and reasons, end to end over HTTP (+ server CPU per call).

    The body is encoded once, as a load generator (or a dashboard caching its request) would
    send it: the timed span is the request on the wire, the server's work and the response
    read back. The client's own JSON encoding of the rows is timed apart (`client_encode_ms`).
    """
    times = []
    payload = {"rows": rows, "reasons": True}
    t = time.perf_counter()
    body = json.dumps(payload).encode()
    encode_ms = (time.perf_counter() - t) * 1000
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        client.post("/v1/score", json={"rows": rows[:10]}).raise_for_status()  # warm up
        client.post("/v1/score", content=body).raise_for_status()
        cpu0 = _cpu_seconds(pid) if pid else 0.0
        loop0 = _cpu_seconds(pid, task=pid) if pid else 0.0  # the main thread runs the event loop
        faults0 = _minor_faults(pid) if pid else 0
        for _ in range(repeats):
            t = time.perf_counter()
            r = client.post("/v1/score", content=body)
            r.read()
            times.append(time.perf_counter() - t)
            r.raise_for_status()
        cpu = (_cpu_seconds(pid) - cpu0) / repeats if pid else float("nan")
        loop = (_cpu_seconds(pid, task=pid) - loop0) / repeats if pid else float("nan")
        faults = (_minor_faults(pid) - faults0) / repeats if pid else float("nan")
        assert len(r.json()["rows"]) == len(rows)
    times.sort()
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": float(np.percentile(times, 99)) * 1000,
        "min_ms": times[0] * 1000,
        "max_ms": times[-1] * 1000,
        "server_cpu_ms": cpu * 1000,
        "loop_cpu_ms": loop * 1000,
        "page_faults": faults,
        "client_encode_ms": encode_ms,
        "body_mb": len(body) / 1e6,
        "n": len(times),
    }


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median wall ms, median process CPU ms, all threads) of `fn`."""
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def batch_in_process(
    model: Path, scores: Path, rows: list[dict], repeats: int
) -> dict[str, tuple[float, float]]:
    """The same batch without HTTP, step by step: (wall ms, CPU ms) per step, medians."""
    from churnguard.scores import ScoreParams
    from models.bundle import ModelBundle
    from models.reasons import explain_rows, reason_table, reasons_from_contributions
    from serving.config import Settings
    from serving.routers.score import _fast_batch, _score
    from serving.state import ServingState

    bundle = ModelBundle.load(model)
    bundle.warm_up()
    X = pd.DataFrame([r["features"] for r in rows])[bundle.feature_names]
    state = ServingState(Settings(model_uri=str(model), scores_dir=scores, poll_seconds=0))  # type: ignore[call-arg]
    state.reload(force=True)
    served, settings, tiers = state.current.model, state.settings, ScoreParams().tiers
    assert served is not None, state.model_error
    body = json.dumps({"rows": rows, "reasons": True}).encode()
    C = bundle.contributions(X)
    ref = bundle.feature_reference
    names = bundle.feature_names
    return {
        "whole handler (`_score`: parse .. response bytes)": _timed(
            lambda: _score(body, "application/json", served, state, settings, tiers), repeats
        ),
        "body parse (msgspec fast path) + frame": _timed(lambda: _fast_batch(served, body), repeats),
        "predict_proba (encode + predict + calibrate)": _timed(lambda: bundle.predict_proba(X), repeats),
        "SHAP, LightGBM pred_contrib (baseline)": _timed(
            lambda: bundle.contributions(X, method="lightgbm"), repeats
        ),
        "SHAP, table kernel, 1 thread": _timed(lambda: bundle.contributions(X, threads=1), repeats),
        "SHAP, table kernel, default threads": _timed(lambda: bundle.contributions(X), repeats),
        "reasons (top 3, en), columns (what the API uses)": _timed(
            lambda: reason_table(X, names, C, top_n=3, reference=ref), repeats
        ),
        "reasons (top 3, en) as Reason objects": _timed(
            lambda: reasons_from_contributions(X, names, C, top_n=3, reference=ref), repeats
        ),
        "predict_proba + explain_rows (total)": _timed(
            lambda: (bundle.predict_proba(X), explain_rows(bundle, X, top_n=3)), repeats
        ),
    }


def print_batch(batch: dict[str, float], inproc: dict[str, tuple[float, float]]) -> None:
    print(f"POST /v1/score, 1,000 rows with reasons ({batch['body_mb']:.1f} MB body), over HTTP: "
          f"p50 {batch['p50_ms']:.0f} ms, p99 {batch['p99_ms']:.0f} ms, min {batch['min_ms']:.0f} ms, "
          f"max {batch['max_ms']:.0f} ms; server CPU {batch['server_cpu_ms']:.0f} ms per call "
          f"({batch['n']} runs; target < 100 ms), of which the event-loop thread "
          f"{batch['loop_cpu_ms']:.1f} ms; {batch['page_faults']:.0f} minor page faults per call; "
          f"client JSON encode of the body "
          f"{batch['client_encode_ms']:.0f} ms, not in the timed span")  # fmt: skip
    print("  same batch in process, median of runs (wall / CPU of all threads):")
    for name, (wall, cpu) in inproc.items():
        print(f"    {name:50s} {wall:7.1f} ms / {cpu:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="A model dir (default: build a synthetic one).")
    parser.add_argument("--scores", type=Path, help="A scores dir written by the score stage.")
    parser.add_argument("--features", type=Path, help="features.parquet to draw batch rows from.")
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--extra-features", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0, help="Seconds per load run (<= 60).")
    parser.add_argument("--soak", type=float, default=60.0, help="Seconds of the error-count run (0 = skip).")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds per endpoint.")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--batch-repeats", type=int, default=30, help="Timed calls of the batch score.")
    parser.add_argument(
        "--batch-only", action="store_true", help="Only the 1,000-row batch score (no load runs, no soak)."
    )
    args = parser.parse_args()
    duration, soak = min(args.duration, 60.0), min(args.soak, 60.0)

    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        if args.model and args.scores:
            model, scores = args.model, args.scores
            from models.bundle import ModelBundle

            names = ModelBundle.load(model).feature_names
            if args.features is None:
                parser.error("--features is needed with --model/--scores (rows for the batch score)")
            feats = pd.read_parquet(args.features).sample(1000, replace=True, random_state=0)
            rows = [
                {"features": {k: (None if pd.isna(v) else v) for k, v in rec.items()}}
                for rec in feats[names].to_dict(orient="records")
            ]
        else:
            model, scores, rows = build_setup(tmp, args.accounts, args.extra_features)
        latest = pd.read_parquet(scores / "latest.parquet")
        account = str(latest["account_id"].iloc[len(latest) // 2])

        use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk"))
        load = run_wrk if use_wrk else run_python
        print(f"load generator: {'wrk' if use_wrk else 'python asyncio/httpx subprocess'}; "
              f"server: 1 uvicorn worker on 127.0.0.1; {os.cpu_count()} CPUs (shared)")  # fmt: skip

        env = {
            **os.environ,
            "CHURNGUARD_API_KEY": KEY,
            "CHURNGUARD_ADMIN_KEY": KEY + "-admin",
            "CHURNGUARD_MODEL_URI": str(model),
            "CHURNGUARD_SCORES_DIR": str(scores),
            "CHURNGUARD_POLL_SECONDS": "0",
            "PYTHONPATH": str(REPO),
        }
        (tmp / "bare_app.py").write_text(BARE_APP, encoding="utf-8")
        uv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        results: dict[str, dict[int, dict[str, float]]] = {}
        auth = {"Authorization": f"Bearer {KEY}"}

        # Both servers up at once (an idle one costs nothing); endpoints run interleaved in
        # `rounds` rounds so that load from other processes hits all of them alike; the table
        # shows the median per endpoint, ratios are medians of the per-round ratios.
        bare_port, port = free_port(), free_port()
        base = f"http://127.0.0.1:{port}"
        bare = start([*uv, "--port", str(bare_port), "--app-dir", str(tmp), "bare_app:app"], env,
                     f"http://127.0.0.1:{bare_port}/constant")  # fmt: skip
        app = start([*uv, "--port", str(port), "--factory", "serving.app:create_app"], env, f"{base}/readyz")
        runs: dict[str, dict[int, list[dict[str, float]]]] = {}
        try:
            endpoints = {
                "bare FastAPI constant": (f"http://127.0.0.1:{bare_port}/constant", {}),
                "/healthz (our app, constant)": (f"{base}/healthz", {}),
                "/v1/accounts/{id}": (f"{base}/v1/accounts/{account}", auth),
                "/v1/at-risk?limit=50": (f"{base}/v1/at-risk?limit=50", auth),
                "/v1/at-risk filtered": (
                    f"{base}/v1/at-risk?tier=high&renewal_within_days=90&limit=50",
                    auth,
                ),
            }
            if args.batch_only:
                endpoints, soak = {}, 0.0
            for c in args.connections if endpoints else []:
                for _ in range(args.rounds):
                    for name, (url, hdrs) in endpoints.items():
                        runs.setdefault(name, {}).setdefault(c, []).append(load(url, c, duration, hdrs))
            batch = batch_latency(base, rows, repeats=args.batch_repeats, pid=app.pid)
            soak_result = (
                load(f"{base}/v1/accounts/{account}", max(args.connections), soak, auth) if soak else None
            )
        finally:
            stop(app)
            stop(bare)
        inproc = batch_in_process(model, scores, rows, repeats=7)
        for name, runs_by_c in runs.items():
            for c, rs in runs_by_c.items():
                results.setdefault(name, {})[c] = {
                    "rps": statistics.median(r["rps"] for r in rs),
                    "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                    "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                    "errors": sum(r["errors"] for r in rs),
                }

        print(f"\n{'endpoint':32} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for name, by_c in results.items():
            for c, r in by_c.items():
                line = f"{r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}"
                print(f"{name:32} {c:>5} {line}")
        print()
        for c in args.connections if runs else []:
            acct = runs["/v1/accounts/{id}"][c]
            vs_bare = statistics.median(
                a["rps"] / b["rps"] for a, b in zip(acct, runs["bare FastAPI constant"][c], strict=True)
            )
            vs_own = statistics.median(
                a["rps"] / b["rps"]
                for a, b in zip(acct, runs["/healthz (our app, constant)"][c], strict=True)
            )
            print(f"{c} conns: account lookup / bare FastAPI = {vs_bare:.0%} (target >= 80%); "
                  f"account lookup / our app's constant /healthz = {vs_own:.0%} "
                  f"(median of {args.rounds} paired rounds)")  # fmt: skip
        print_batch(batch, inproc)
        if soak_result:
            print(f"soak: /v1/accounts/{{id}} {soak:.0f} s at {max(args.connections)} conns: "
                  f"{soak_result['requests']} requests, {soak_result['errors']} errors, "
                  f"{soak_result['rps']:.0f} req/s")  # fmt: skip
        errors = sum(r["errors"] for by_c in results.values() for r in by_c.values())
        errors += soak_result["errors"] if soak_result else 0
        print(f"total errors: {errors}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
