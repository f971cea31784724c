"""Feature stage on a small hand-made validated company (no simulator needed), unit checks
of individual feature families, and the stage contract (columns, keys, metrics, artefact)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

T = pd.Timestamp
START = T("2024-01-01")
END = T("2025-06-30 20:00")

EN = [
    "Too expensive for what we get",
    "Great tool, easy to use",
    "Support never answers our tickets",
    "We are switching to a competitor",
    "Buggy and slow, crashes daily",
    "Love it, the team relies on it",
]
JA = [
    "価格が高すぎる。競合の方が安い。",
    "とても使いやすいです",
    "バグが多くて困っている",
    "解約を検討しています",
]
ZH = ["价格太贵了", "非常好用，推荐", "客服回复太慢", "我们打算换成别的产品"]
GOOD = {"Great tool, easy to use", "Love it, the team relies on it", "とても使いやすいです", "非常好用，推荐"}


def write_company(folder: Path, n_accounts: int = 24, seed: int = 3, subscriptions: bool = True) -> Path:
    """A small clean company in the validated layout, with churns, departures and comments."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"acc{i:03d}" for i in range(n_accounts)]
    created = [START + pd.Timedelta(days=int(d)) for d in rng.integers(0, 200, n_accounts)]
    accounts = pd.DataFrame(
        {
            "account_id": ids,
            "created_at": created,
            "name": ids,
            "segment": rng.choice(["smb", "mid_market", "enterprise"], n_accounts),
            "industry": "software",
            "country": "JP",
        }
    )
    subs, users, events, tickets, surveys = [], [], [], [], []
    for i, acc in enumerate(ids):
        annual = i % 3 == 0
        churn_at = created[i] + pd.Timedelta(days=int(rng.integers(150, 700)))
        term = pd.DateOffset(years=1) if annual else pd.DateOffset(months=1)
        s, k = created[i], 0
        while s < min(churn_at, END):
            e = s + term
            canceled = e - pd.Timedelta(days=10) if e >= churn_at else pd.NaT
            subs.append(
                (
                    acc,
                    f"{acc}-s{k}",
                    s,
                    e,
                    float(rng.integers(50, 500)),
                    "pro" if i % 2 else "basic",
                    "annual" if annual else "monthly",
                    int(rng.integers(3, 20)),
                    canceled,
                )
            )
            s, k = e, k + 1
        last_day = min(churn_at, END)
        n_users = int(rng.integers(2, 8))
        for u in range(n_users):
            role = "admin" if u == 0 else "champion" if u == 1 else "member"
            uc = created[i] + pd.Timedelta(days=int(rng.integers(0, 60)))
            deact = uc + pd.Timedelta(days=int(rng.integers(60, 600))) if rng.random() < 0.4 else pd.NaT
            if pd.notna(deact) and deact > END:
                deact = pd.NaT
            users.append((f"{acc}-u{u}", acc, uc, role, deact))
            stop = min(last_day, deact) if pd.notna(deact) else last_day
            span = (stop - uc).days
            if span <= 0:
                continue
            n = int(rng.integers(5, 60)) * max(span // 30, 1) // 3
            offs = rng.integers(0, span * 86400, n)
            for o in offs:
                events.append(
                    (
                        acc,
                        f"{acc}-u{u}",
                        uc + pd.Timedelta(seconds=int(o)),
                        rng.choice(
                            ["login", "report", "export", "share", "admin"], p=[0.4, 0.3, 0.15, 0.1, 0.05]
                        ),
                    )
                )
        for j in range(int(rng.integers(0, 8))):
            c = created[i] + pd.Timedelta(
                hours=int(rng.integers(0, max((last_day - created[i]).days, 1) * 24))
            )
            fr = c + pd.Timedelta(hours=float(rng.exponential(12))) if rng.random() < 0.9 else pd.NaT
            rs = c + pd.Timedelta(hours=float(rng.exponential(200))) if rng.random() < 0.8 else pd.NaT
            if pd.notna(fr) and fr > END:
                fr = pd.NaT
            if pd.notna(rs) and rs > END:
                rs = pd.NaT
            tickets.append(
                (
                    f"{acc}-t{j}",
                    acc,
                    c,
                    rng.choice(["bug", "question", "feature_request", "other"]),
                    rng.choice(["low", "medium", "high", "urgent"]),
                    fr,
                    rs,
                    bool(rng.random() < 0.2),
                    float(rng.integers(1, 6)) if pd.notna(rs) else np.nan,
                )
            )
        for j, q in enumerate(pd.date_range(created[i] + pd.Timedelta(days=30), last_day, freq="90D")):
            pool = [EN, JA, ZH][i % 3]
            comment = pool[int(rng.integers(0, len(pool)))] if rng.random() < 0.8 else None
            nps = float(rng.integers(8, 11) if comment in GOOD else rng.integers(0, 7))
            surveys.append(
                (
                    f"{acc}-r{j}",
                    acc,
                    q + pd.Timedelta(hours=int(rng.integers(0, 48))),
                    f"{acc}-u0",
                    nps if rng.random() < 0.9 else np.nan,
                    comment,
                )
            )
    us = "datetime64[us]"
    accounts["created_at"] = accounts["created_at"].astype(us)
    accounts.to_parquet(folder / "accounts.parquet", index=False)
    if subscriptions:
        frame = pd.DataFrame(
            subs,
            columns=[
                "account_id",
                "subscription_id",
                "start_date",
                "end_date",
                "mrr",
                "plan",
                "billing_period",
                "seats",
                "canceled_at",
            ],
        )
        for c in ("start_date", "end_date", "canceled_at"):
            frame[c] = frame[c].astype(us)
        frame["seats"] = frame["seats"].astype(float)
        frame.to_parquet(folder / "subscriptions.parquet", index=False)
    frame = pd.DataFrame(users, columns=["user_id", "account_id", "created_at", "role", "deactivated_at"])
    frame[["created_at", "deactivated_at"]] = frame[["created_at", "deactivated_at"]].astype(us)
    frame.to_parquet(folder / "users.parquet", index=False)
    ev = pd.DataFrame(events, columns=["account_id", "user_id", "timestamp", "event"])
    ev = ev[ev["timestamp"] <= END].sort_values(["account_id", "timestamp"])
    ev["timestamp"] = ev["timestamp"].astype(us)
    ev["quantity"] = 1.0
    (folder / "usage_events").mkdir(exist_ok=True)
    half = len(ev) // 2
    ev.iloc[:half].to_parquet(folder / "usage_events" / "part-0.parquet", index=False)
    ev.iloc[half:].to_parquet(folder / "usage_events" / "part-1.parquet", index=False)
    frame = pd.DataFrame(
        tickets,
        columns=[
            "ticket_id",
            "account_id",
            "created_at",
            "category",
            "severity",
            "first_response_at",
            "resolved_at",
            "escalated",
            "csat",
        ],
    )
    for c in ("created_at", "first_response_at", "resolved_at"):
        frame[c] = frame[c].astype(us)
    frame["escalated"] = frame["escalated"].astype("boolean")
    frame[frame["created_at"] <= END].to_parquet(folder / "tickets.parquet", index=False)
    frame = pd.DataFrame(
        surveys, columns=["response_id", "account_id", "submitted_at", "user_id", "nps", "comment"]
    )
    frame["submitted_at"] = frame["submitted_at"].astype(us)
    frame[frame["submitted_at"] <= END].to_parquet(folder / "surveys.parquet", index=False)
    (folder / "validation_report.json").write_text(
        json.dumps({"data_end": END.isoformat()}), encoding="utf-8"
    )
    return folder


def write_params(path: Path, **sections: dict) -> Path:
    repo = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8"))
    repo["split"].update(test_months=3, valid_months=2)
    repo["features"]["text"]["min_comments"] = 10
    for name, values in sections.items():
        repo[name].update(values)
    path.write_text(yaml.safe_dump(repo), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pipeline import features, snapshots

    root = tmp_path_factory.mktemp("company")
    validated = write_company(root / "validated")
    params = write_params(root / "params.yaml")
    paths = {
        "root": root,
        "validated": validated,
        "params": params,
        "snapshots": root / "snapshots.parquet",
        "features": root / "features.parquet",
        "text_model": root / "text_model",
        "metrics": root / "metrics" / "features.json",
    }
    snapshots.main(["--validated", str(validated), "--out", str(paths["snapshots"]), "--params", str(params)])
    features.main(
        [
            "--validated",
            str(validated),
            "--snapshots",
            str(paths["snapshots"]),
            "--out",
            str(paths["features"]),
            "--text-model",
            str(paths["text_model"]),
            "--metrics",
            str(paths["metrics"]),
            "--params",
            str(params),
        ]
    )
    return paths


def test_stage_writes_keyed_features_for_every_snapshot_row(company: dict[str, Path]) -> None:
    snaps = pd.read_parquet(company["snapshots"])
    feats = pd.read_parquet(company["features"])
    assert len(feats) == len(snaps) > 0
    assert not feats.duplicated(["account_id", "snapshot_date"]).any()
    merged = snaps.merge(feats, on=["account_id", "snapshot_date"], how="left", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert feats["snapshot_date"].dtype == "datetime64[us]"
    for col in (
        "active_users_30d",
        "tickets_bug_90d",
        "nps_last",
        "comments_theme_price_180d",
        "comment_sentiment_last",
        "champions_departed_90d",
        "tenure_days",
        "health_score",
    ):
        assert col in feats, col
    assert feats["health_score"].between(0, 100).all()
    assert set(feats["health_tier"].unique()) <= {"red", "yellow", "green"}


def test_metrics_and_text_artefact(company: dict[str, Path]) -> None:
    metrics = json.loads(company["metrics"].read_text(encoding="utf-8"))
    assert metrics["rows"] > 0 and metrics["feature_count"] > 50
    assert set(metrics["languages"]) == {"en", "ja", "zh"}
    assert metrics["core_events_source"] == "inferred" and len(metrics["core_events"]) == 3
    meta = json.loads((company["text_model"] / "metadata.json").read_text(encoding="utf-8"))
    assert meta["fitted"] and meta["n_comments"] > 0 and len(meta["version"]) == 16
    assert T(meta["fit_cutoff"]) == T(metrics["train_cutoff"])
    assert metrics["text_model"]["heldout"]["n_heldout"] > 0


def test_activity_definition_without_subscriptions(tmp_path: Path) -> None:
    from pipeline import features, snapshots

    validated = write_company(tmp_path / "validated", n_accounts=8, subscriptions=False)
    params = write_params(tmp_path / "params.yaml", snapshots={"definition": "activity"})
    snapshots.main(
        ["--validated", str(validated), "--out", str(tmp_path / "s.parquet"), "--params", str(params)]
    )
    snaps = pd.read_parquet(tmp_path / "s.parquet")
    assert len(snaps) > 0 and snaps["mrr"].isna().all()
    features.main(
        [
            "--validated",
            str(validated),
            "--snapshots",
            str(tmp_path / "s.parquet"),
            "--out",
            str(tmp_path / "f.parquet"),
            "--text-model",
            str(tmp_path / "tm"),
            "--metrics",
            str(tmp_path / "m.json"),
            "--params",
            str(params),
        ]
    )
    feats = pd.read_parquet(tmp_path / "f.parquet")
    # Subscriptions absent: contract features absent, not zero-filled.
    assert "mrr_change_90d" not in feats and "tenure_days" not in feats
    assert "active_users_30d" in feats


def test_contract_definition_without_subscriptions_fails_clearly(tmp_path: Path) -> None:
    from churnguard.errors import InputError
    from pipeline import snapshots

    validated = write_company(tmp_path / "validated", n_accounts=4, subscriptions=False)
    params = write_params(tmp_path / "params.yaml")
    with pytest.raises(InputError, match="definition: activity"):
        snapshots.main(
            ["--validated", str(validated), "--out", str(tmp_path / "s.parquet"), "--params", str(params)]
        )


def test_account_batches_give_the_same_features_as_one_global_pass(tmp_path: Path) -> None:
    """Event parts that each hold whole accounts are processed batch by batch, identically."""
    from churnguard import tables as tables_mod
    from features.build import FeatureParams, build_features, fit_feature_state
    from features.engine import Engine
    from features.health import HealthParams
    from features.snapshots import SnapshotParams, build_snapshots
    from features.usage import plan_event_batches, prepare_event_aggregates, raw_event_source

    validated = write_company(tmp_path / "validated", n_accounts=12, seed=21)
    events = pd.read_parquet(validated / "usage_events")
    split = tmp_path / "by_account"
    split.mkdir()
    ids = sorted(events["account_id"].unique())
    for k in range(3):  # each file holds whole accounts
        events[events["account_id"].isin(ids[k::3])].to_parquet(split / f"part-{k}.parquet", index=False)
    loaded = {
        n: tables_mod.read_clean(validated, n)
        for n in ("accounts", "subscriptions", "users", "tickets", "surveys")
    }
    days = events.assign(day=events["timestamp"].dt.normalize())[["account_id", "day"]].drop_duplicates()
    accounts = loaded["accounts"]
    assert accounts is not None
    snaps = build_snapshots(accounts, loaded["subscriptions"], days, START, END, SnapshotParams())
    cutoff = T("2024-11-01")
    files = sorted(str(p) for p in split.glob("*.parquet"))

    glob = Engine(threads=1)
    prepare_event_aggregates(glob, glob.dialect.parquet(str(split / "*.parquet")))
    state = fit_feature_state(glob, loaded["surveys"], cutoff, FeatureParams())
    expected = build_features(glob, snaps, loaded, FeatureParams(), HealthParams(), state)

    eng = Engine(threads=1)
    plan = plan_event_batches(eng, files, max_rows=len(events) // 2)
    assert plan is not None and len(plan) == 3
    state_b = fit_feature_state(
        eng,
        loaded["surveys"],
        cutoff,
        FeatureParams(),
        raw_event_source(eng.dialect.parquet(str(split / "*.parquet"))),
    )
    assert state_b.core_events == state.core_events and state_b.n_event_types == state.n_event_types
    batches = [(eng.dialect.parquet_files(fs), acc) for fs, acc in plan]
    got = build_features(eng, snaps, loaded, FeatureParams(), HealthParams(), state, batches)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    # Row-split parts (accounts spread over files) cannot be batched.
    assert (
        plan_event_batches(eng, sorted(str(p) for p in (validated / "usage_events").glob("*.parquet")), 10)
        is None
    )
