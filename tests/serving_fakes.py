"""Test doubles for the score stage and the service, independent of the training stages.

`FakeBundle` is a real LightGBM model (trained on random data with signal) wrapped to the
`models.bundle.ModelBundle` interface; `fake_explain_rows` mirrors `models.reasons.explain_rows`
from its LightGBM contributions. `make_company` writes the files the score stage reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.reasons import Reason

FEATURES = [
    "active_users_30d",
    "logins_change_30d",
    "tickets_bug_high_open",
    "nps_last",
    "seats",
    "days_to_renewal",
]


class FakeBundle:
    """A small real LightGBM booster with the ModelBundle interface."""

    def __init__(self, booster: lgb.Booster, version: str) -> None:
        self.booster = booster
        self.feature_names = list(FEATURES)
        self.version = version
        self.trained_at = "2026-03-01T00:00:00"
        self.metrics = {"roc_auc": 0.8, "pr_auc": 0.4, "brier": 0.1}

    @classmethod
    def train(cls, seed: int = 0, version: str = "1", n_estimators: int = 40) -> FakeBundle:
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(600, len(FEATURES)))
        logit = -1.0 - 1.5 * X[:, 0] + 1.2 * X[:, 2] - 0.8 * X[:, 3]
        y = (rng.random(600) < 1 / (1 + np.exp(-logit))).astype(int)
        booster = lgb.train(
            {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": seed},
            lgb.Dataset(pd.DataFrame(X, columns=FEATURES), y),
            num_boost_round=n_estimators,
        )
        return cls(booster, version)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.booster.predict(X.loc[:, self.feature_names]), dtype=float)

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.booster.predict(X.loc[:, self.feature_names], pred_contrib=True), dtype=float)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / "model.txt"))
        (path / "meta.json").write_text(json.dumps({"version": self.version}), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> FakeBundle:
        meta = json.loads((Path(path) / "meta.json").read_text(encoding="utf-8"))
        return cls(lgb.Booster(model_file=str(Path(path) / "model.txt")), meta["version"])


def load_fake(uri: str, tracking_uri: str | None = None) -> FakeBundle:
    return FakeBundle.load(Path(uri))


def fake_explain_rows(
    bundle: Any, X: pd.DataFrame, top_n: int = 3, language: str = "en"
) -> list[list[Reason]]:
    contrib = bundle.contributions(X)[:, :-1]
    values = X.loc[:, bundle.feature_names].to_numpy(dtype=float)
    out = []
    for i in range(len(X)):
        order = np.argsort(-contrib[i])[:top_n]
        out.append(
            [
                Reason(
                    feature=bundle.feature_names[j],
                    family="usage" if j < 2 else "support",
                    value=None if np.isnan(values[i, j]) else float(values[i, j]),
                    shap=float(contrib[i, j]),
                    text=f"{bundle.feature_names[j]} pushes risk up",
                    playbook_id="training_session" if j < 2 else "bug_escalation",
                    action="Book a training session" if j < 2 else "Escalate the open bugs",
                )
                for j in order
                if contrib[i, j] > 0
            ]
        )
    return out


@dataclass(frozen=True)
class Company:
    root: Path
    model: Path
    features: Path
    snapshots: Path
    explanations: Path
    accounts: Path
    scores: Path


def make_company(root: Path, n_accounts: int = 40, seed: int = 0, dates: int = 3) -> Company:
    """Features, snapshots, explanations and accounts for a small fake company; model saved."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    bundle = FakeBundle.train(seed)
    bundle.save(root / "model")
    ids = [f"acc-{i:03d}" for i in range(n_accounts)]
    snap_dates = pd.date_range("2026-01-01", periods=dates, freq="MS").astype("datetime64[us]")
    rows = []
    for d_i, d in enumerate(snap_dates):
        for i, a in enumerate(ids):
            if d_i == dates - 1 and i % 10 == 9:
                continue  # churned before the last date: not active, not scored
            rows.append({"account_id": a, "snapshot_date": d})
    keys = pd.DataFrame(rows)
    n = len(keys)
    feats = keys.copy()
    for f in FEATURES:
        feats[f] = rng.normal(size=n)
    feats.loc[rng.random(n) < 0.1, "nps_last"] = np.nan
    feats["health_score"] = rng.uniform(0, 100, n)
    feats["health_tier"] = np.where(
        feats["health_score"] < 40, "red", np.where(feats["health_score"] < 70, "yellow", "green")
    )
    feats["health_usage"] = rng.uniform(0, 100, n)
    feats["health_support"] = rng.uniform(0, 100, n)
    snaps = keys.copy()
    snaps["label"] = np.nan
    snaps["arr"] = rng.choice([1200.0, 12000.0, 60000.0], n)
    snaps["mrr"] = snaps["arr"] / 12
    snaps["segment"] = rng.choice(["smb", "mid_market", "enterprise"], n)
    snaps["billing_period"] = rng.choice(["monthly", "annual"], n)
    snaps["days_to_renewal"] = rng.integers(0, 365, n)
    snaps["renewal_date"] = (
        snaps["snapshot_date"] + pd.to_timedelta(snaps["days_to_renewal"], unit="D")
    ).astype("datetime64[us]")
    snaps["is_scoring_date"] = snaps["snapshot_date"] == snap_dates[-1]
    last = feats.loc[snaps["is_scoring_date"]].reset_index(drop=True)
    X = last.loc[:, FEATURES]
    exp_rows = []
    for a, reasons in zip(last["account_id"], fake_explain_rows(bundle, X), strict=True):
        for rank, r in enumerate(reasons, start=1):
            exp_rows.append(
                {
                    "account_id": a, "snapshot_date": snap_dates[-1], "rank": rank, "feature": r.feature,
                    "shap": r.shap, "value": r.value, "reason_family": r.family, "reason_text": r.text,
                    "playbook_id": r.playbook_id, "playbook_action": r.action,
                }
            )  # fmt: skip
    accounts = pd.DataFrame({"account_id": ids, "name": [f"Company {i}" for i in range(n_accounts)]})
    c = Company(
        root=root,
        model=root / "model",
        features=root / "features.parquet",
        snapshots=root / "snapshots.parquet",
        explanations=root / "explanations.parquet",
        accounts=root / "accounts.parquet",
        scores=root / "scores",
    )
    feats.to_parquet(c.features, index=False)
    snaps.to_parquet(c.snapshots, index=False)
    pd.DataFrame(exp_rows).to_parquet(c.explanations, index=False)
    accounts.to_parquet(c.accounts, index=False)
    return c


def set_scoring_date(c: Company, index: int) -> pd.Timestamp:
    """Make the `index`-th snapshot date the scoring date (to build a score history)."""
    snaps = pd.read_parquet(c.snapshots)
    dates = sorted(snaps["snapshot_date"].unique())
    snaps["is_scoring_date"] = snaps["snapshot_date"] == dates[index]
    snaps.to_parquet(c.snapshots, index=False)
    return pd.Timestamp(dates[index])


def score_history(c: Company, model_version: str = "1", currency: str = "EUR") -> None:
    """Run the score stage for every snapshot date in turn, as weekly runs would.

    Fake companies report in euros: a unit that is not the params default (USD) shows
    where a figure's currency is really carried through.
    """
    import pipeline.score as stage
    from churnguard.scores import ScoreParams

    n = pd.read_parquet(c.snapshots)["snapshot_date"].nunique()
    for i in range(n):
        d = set_scoring_date(c, i)
        stage.run(
            model=c.model, features=c.features, snapshots=c.snapshots, explanations=c.explanations,
            accounts=c.accounts, out=c.scores, params=ScoreParams(), currency=currency,
            scored_at=d + pd.Timedelta(hours=6),
        )  # fmt: skip


API_KEY = "read-key-for-tests"
ADMIN_KEY = "admin-key-for-tests"
READ = {"Authorization": f"Bearer {API_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def patch_stage(monkeypatch: Any) -> None:
    """Make the score stage use the fake bundle and reasons."""
    import pipeline.score as stage

    monkeypatch.setattr(stage, "load_bundle", FakeBundle.load)
    monkeypatch.setattr(stage, "explain", lambda b, X, n: fake_explain_rows(b, X, n))


def scored_company(root: Path, n_accounts: int = 40, seed: int = 0) -> Company:
    """A fake company with three weekly scoring runs already written to `scores/`."""
    import pipeline.score as stage

    saved = stage.load_bundle, stage.explain
    stage.load_bundle = FakeBundle.load  # type: ignore[assignment]
    stage.explain = lambda b, X, n: fake_explain_rows(b, X, n)  # type: ignore[assignment]
    try:
        c = make_company(root, n_accounts=n_accounts, seed=seed)
        score_history(c)
    finally:
        stage.load_bundle, stage.explain = saved  # type: ignore[assignment]
    return c


def settings_for(c: Company, **overrides: Any) -> Any:
    from serving.config import Settings

    values: dict[str, Any] = {
        "api_key": API_KEY,
        "admin_key": ADMIN_KEY,
        "model_uri": str(c.model),
        "scores_dir": c.scores,
        "params_path": c.root / "params.yaml",
        # the company's own report files (absent unless a test writes them), never the
        # working directory's metrics/ of a pipeline run
        "report_path": c.root / "metrics" / "report.json",
        "monitoring_path": c.root / "metrics" / "monitoring.json",
        "poll_seconds": 0,
        **overrides,
    }
    return Settings(**values)


def app_for(c: Company, **overrides: Any) -> Any:
    from serving.app import create_app

    return create_app(settings_for(c, **overrides), model_loader=load_fake, explainer=fake_explain_rows)


class ServerThread:
    """A real uvicorn server on 127.0.0.1 (ephemeral port) in a background thread."""

    def __init__(self, app: Any) -> None:
        import threading

        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def company_at(root: Path) -> Company:
    """The `Company` written by `make_company(root)`."""
    return Company(
        root=root,
        model=root / "model",
        features=root / "features.parquet",
        snapshots=root / "snapshots.parquet",
        explanations=root / "explanations.parquet",
        accounts=root / "accounts.parquet",
        scores=root / "scores",
    )


if __name__ == "__main__":  # serve a fake company in a real uvicorn process (browser test)
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--company", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app_for(company_at(args.company)), host="127.0.0.1", port=args.port, log_level="warning")
