"""Integration: train against a real `mlflow server` on loopback and load the champion back by alias."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from models.bundle import load_from_registry
from models.synthetic import make_company

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("mlflow server did not become healthy")


@pytest.fixture()
def mlflow_server(tmp_path: Path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination", str(tmp_path / "artifacts"),
        ],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )  # fmt: skip
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_train_against_server_and_load_champion(mlflow_server: str, tmp_path: Path, monkeypatch) -> None:
    from pipeline import train

    features, snapshots = make_company(250, 12, seed=9)
    features.to_parquet(tmp_path / "features.parquet")
    snapshots.drop(columns="p_true").to_parquet(tmp_path / "snapshots.parquet")
    params = {
        "split": {"test_months": 2, "valid_months": 2},
        "train": {"search_trials": 1, "lightgbm": {"n_estimators": 80, "early_stopping_rounds": 10},
                  "gate": {"metric": "roc_auc", "min_improvement": 0.002, "max_ece": 1.0}},
    }  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)  # nothing may land in a local ./mlflow.db or ./mlruns
    train.main([
        "--features", str(tmp_path / "features.parquet"), "--snapshots", str(tmp_path / "snapshots.parquet"),
        "--validation-report", str(tmp_path / "missing.json"), "--model-out", str(tmp_path / "model"),
        "--summary", str(tmp_path / "summary.json"), "--params", str(tmp_path / "params.yaml"),
    ])  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tracking_uri"] == mlflow_server and summary["alias"] == "champion"
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()

    champion = load_from_registry(mlflow_server, "churnguard", "champion")
    assert champion.version == summary["model_version"]
    X = features.tail(25)
    local = pd.read_parquet(tmp_path / "features.parquet").tail(25)
    from models.bundle import ModelBundle

    np.testing.assert_allclose(
        champion.predict_proba(X), ModelBundle.load(tmp_path / "model").predict_proba(local)
    )
    assert (tmp_path / "artifacts").is_dir() and any((tmp_path / "artifacts").rglob("booster.txt"))
