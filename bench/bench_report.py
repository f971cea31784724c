"""Benchmark the report stage on a company built by the real stages (default: params.yaml's company).

    .venv/bin/python bench/bench_report.py --root /tmp/rep_default [--build]

`--build` runs simulate .. score into ROOT first (minutes; once). Then the report stage
runs `--repeat` times and the figures printed are: wall time of the whole stage, of its
parts (retention, monitoring, HTML), and the ratio to a baseline measured in the same run
(just reading the stage's input files). Acceptance: the stage under 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd


def _paths(root: Path) -> dict[str, Path]:
    return {
        "params": root / "params.yaml",
        "raw": root / "data" / "simulated",
        "truth": root / "data" / "sim_truth",
        "validated": root / "data" / "validated",
        "snapshots": root / "data" / "snapshots.parquet",
        "features": root / "data" / "features.parquet",
        "model": root / "artifacts" / "model",
        "scores": root / "data" / "scores",
        "metrics": root / "metrics",
    }


def build(root: Path, params: Path) -> None:
    """Run the stages before `report` exactly as dvc.yaml does."""
    import os

    from pipeline import explain, features, score, simulate, snapshots, train, validate

    p = _paths(root)
    summary, expl = root / "artifacts" / "train_summary.json", root / "data" / "explanations.parquet"
    root.mkdir(parents=True, exist_ok=True)
    p["params"].write_text(params.read_text(encoding="utf-8"), encoding="utf-8")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    a = ["--params", str(p["params"])]
    steps = [
        (simulate.main, ["--out", str(p["raw"]), "--truth-out", str(p["truth"])]),
        (validate.main, ["--input", str(p["raw"]), "--out", str(p["validated"])]),
        (snapshots.main, ["--validated", str(p["validated"]), "--out", str(p["snapshots"])]),
        (features.main, ["--validated", str(p["validated"]), "--snapshots", str(p["snapshots"]),
                         "--out", str(p["features"]), "--text-model", str(root / "artifacts" / "text_model"),
                         "--metrics", str(p["metrics"] / "features.json")]),
        (train.main, ["--features", str(p["features"]), "--snapshots", str(p["snapshots"]),
                      "--validation-report", str(p["validated"] / "validation_report.json"),
                      "--model-out", str(p["model"]), "--summary", str(summary)]),
        (explain.main, ["--model", str(p["model"]), "--features", str(p["features"]),
                        "--snapshots", str(p["snapshots"]), "--out", str(expl),
                        "--global-metrics", str(p["metrics"] / "shap_global.json"),
                        "--plots", str(root / "plots_explain")]),
        (score.main, ["--model", str(p["model"]), "--features", str(p["features"]),
                      "--snapshots", str(p["snapshots"]), "--explanations", str(expl),
                      "--accounts", str(p["validated"] / "accounts.parquet"), "--out", str(p["scores"])]),
    ]  # fmt: skip
    for fn, argv in steps:
        t0 = time.perf_counter()
        fn(argv + a)
        print(f"built {fn.__module__}: {time.perf_counter() - t0:.1f} s")


def _report_argv(root: Path) -> list[str]:
    p = _paths(root)
    return [
        "--validated", str(p["validated"]), "--snapshots", str(p["snapshots"]),
        "--features", str(p["features"]), "--scores", str(p["scores"]), "--model", str(p["model"]),
        "--metrics", str(p["metrics"] / "report.json"), "--monitoring", str(p["metrics"] / "monitoring.json"),
        "--html", str(root / "reports" / "report.html"), "--params", str(p["params"]),
    ]  # fmt: skip


def cross_check(root: Path, subs: pd.DataFrame, grace_days: int, data_end: pd.Timestamp) -> None:
    """On a simulated company: the report's churns and renewals against the simulator's records."""
    import json

    from features import retention

    path = _paths(root)["truth"] / "churn_events.parquet"
    if not path.exists():
        return
    ev = pd.read_parquet(path)
    ev["churn_date"] = pd.to_datetime(ev["churn_date"])
    if ev["churn_date"].dt.tz is not None:
        ev["churn_date"] = ev["churn_date"].dt.tz_convert("UTC").dt.tz_localize(None)
    derived = retention.derive_churn_events(subs, grace_days, data_end)
    known = ev[ev["churn_date"] + pd.Timedelta(days=grace_days) <= data_end]
    same = set(zip(derived["account_id"], derived["churn_date"].dt.floor("D"), strict=True)) == set(
        zip(known["account_id"], known["churn_date"].dt.floor("D"), strict=True)
    )
    doc = json.loads((_paths(root)["metrics"] / "report.json").read_text(encoding="utf-8"))
    churn_bad = renewal_bad = 0
    for month, row in doc["by_month"].items():
        start = pd.Timestamp(month + "-01")
        end = start + pd.offsets.MonthBegin(1)
        churn_bad += row["churned_logos"] != int(
            ((ev["churn_date"] > start) & (ev["churn_date"] <= end)).sum()
        )
        lost = int((ev["churn_date"].dt.to_period("M") == pd.Period(month, "M")).sum())
        renewal_bad += row["terms_up_for_renewal"] - row["terms_renewed"] != lost
    print(
        f"simulator cross-check: {len(derived)} derived churns vs {len(known)} recorded -> "
        f"{'identical' if same else 'DIFFERENT'}; months with churned-logo mismatch {churn_bad}, "
        f"with non-renewal mismatch {renewal_bad} (of {len(doc['by_month'])})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--build", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.build:
        build(args.root, args.params)

    from features import retention
    from pipeline import report

    p = _paths(args.root)
    t0 = time.perf_counter()
    subs = pd.read_parquet(p["validated"] / "subscriptions.parquet")
    accounts = pd.read_parquet(p["validated"] / "accounts.parquet")
    snaps = pd.read_parquet(p["snapshots"])
    feats = pd.read_parquet(p["features"])
    read_s = time.perf_counter() - t0
    print(
        f"inputs: {len(subs):,} subscriptions, {len(accounts):,} accounts, {len(snaps):,} snapshot rows, "
        f"{feats.shape[0]:,} x {feats.shape[1]} features"
    )
    print(f"baseline (read the inputs): {read_s:.2f} s")

    ctx = report.load_context(p["params"])
    data_end = report._read_data_end(p["validated"])
    t0 = time.perf_counter()
    res = retention.compute_contract_retention(subs, accounts, ctx.grace_days, data_end)
    print(f"retention metrics (full subscription history, {res.overall['months']} months): "
          f"{time.perf_counter() - t0:.2f} s")  # fmt: skip

    times, cpu = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        report.main(_report_argv(args.root))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    best, worst = min(times), max(times)
    cross_check(args.root, subs, ctx.grace_days, data_end)
    verdict = "OK" if worst < 30 else "TOO SLOW"
    print(f"report stage: best {best:.2f} s, worst {worst:.2f} s over {args.repeat} runs "
          f"({best / read_s:.1f}x the read baseline; CPU {min(cpu):.2f} s, load-independent); "
          f"limit 30 s -> {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
