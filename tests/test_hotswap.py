"""Hot swap: new scores and a new model are picked up while requests run, with zero failures."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pandas as pd

import pipeline.score as stage
from churnguard.scores import ScoreParams
from tests.serving_fakes import ADMIN, FEATURES, READ, FakeBundle, ServerThread, app_for, scored_company


def _hammer(base: str, stop: threading.Event, failures: list[str], counts: list[int], versions: set) -> None:
    body = {"rows": [{"id": "x", "features": {f: 0.1 for f in FEATURES}}] * 5}
    with httpx.Client(base_url=base, headers=READ, timeout=10) as client:
        while not stop.is_set():
            for method, path, json in (
                ("GET", "/v1/accounts/acc-001", None),
                ("GET", "/v1/at-risk?limit=20&tier=high", None),
                ("POST", "/v1/score", body),
            ):
                try:
                    r = client.request(method, path, json=json)
                except httpx.HTTPError as exc:
                    failures.append(f"{path}: {exc!r}")
                    continue
                counts[0] += 1
                if r.status_code != 200:
                    failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                else:
                    versions.add(r.json()["model_version"])


def test_scores_and_model_swap_without_failed_requests(tmp_path: Path, monkeypatch) -> None:
    company = scored_company(tmp_path / "co", n_accounts=30)
    monkeypatch.setattr(stage, "load_bundle", FakeBundle.load)
    app = app_for(company, poll_seconds=0.1)
    failures: list[str] = []
    counts = [0]
    versions: set[str] = set()
    stop = threading.Event()
    with ServerThread(app) as base:
        workers = [
            threading.Thread(target=_hammer, args=(base, stop, failures, counts, versions)) for _ in range(3)
        ]
        for w in workers:
            w.start()
        try:
            for i in range(2, 5):
                time.sleep(0.4)
                # A new model written in place (not atomically: the poller may see half of it,
                # fail to load, and must keep serving the last good one) ...
                FakeBundle.train(seed=i, version=str(i)).save(company.model)
                # ... then the score stage writes new scores with it.
                stage.run(
                    model=company.model, features=company.features, snapshots=company.snapshots,
                    explanations=company.explanations, accounts=company.accounts, out=company.scores,
                    params=ScoreParams(), currency="EUR",
                    scored_at=pd.Timestamp("2026-03-02") + pd.Timedelta(hours=i),
                )  # fmt: skip
                if i == 3:
                    httpx.post(f"{base}/v1/admin/reload", headers=ADMIN, timeout=10).raise_for_status()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                model = httpx.get(f"{base}/v1/model", headers=READ, timeout=10).json()
                if model["version"] == "4" and model["scores_model_version"] == "4":
                    break
                time.sleep(0.1)
            time.sleep(0.3)
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=20)
    assert failures == []
    assert counts[0] > 100
    assert model["version"] == "4" and model["scores_model_version"] == "4"
    assert {"1", "4"} <= versions  # requests were served by the old and the new model
