"""The real DVC CLI over the real dvc.yaml, on a tiny company, in a throw-away git repo.

Checks that `dvc repro` builds every stage's outputs, that a second `dvc repro` with
nothing changed runs nothing, and that `dvc metrics show` reads the metrics files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, tiny_params

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SOURCES = ("churnguard", "pipeline", "features", "models", "serving", "dvc.yaml", ".gitignore")


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("dvcrepo")
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False), encoding="utf-8")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    env["PYTHONPATH"] = str(root)
    env["DVC_NO_ANALYTICS"] = "1"
    _run(["git", "init", "-q"], root, env)
    _run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init"],
        root,
        env,
    )
    _run([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], root, env)
    _run([sys.executable, "-m", "dvc", "repro"], root, env)
    return root, env


def test_repro_builds_every_stage_output(dvc_repo: tuple[Path, dict[str, str]]) -> None:
    root, _ = dvc_repo
    stages = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    declared = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert set(stages) == set(declared)
    evaluation = json.loads((root / "metrics" / "evaluate.json").read_text(encoding="utf-8"))
    assert 0.5 < evaluation["test"]["roc_auc"] <= 1.0
    assert (root / "data" / "scores" / "latest.parquet").exists()


def test_second_repro_runs_nothing(dvc_repo: tuple[Path, dict[str, str]]) -> None:
    root, env = dvc_repo
    before = (root / "dvc.lock").read_text(encoding="utf-8")
    result = _run([sys.executable, "-m", "dvc", "repro"], root, env)
    assert "Running stage" not in result.stdout + result.stderr
    assert (root / "dvc.lock").read_text(encoding="utf-8") == before


def test_metrics_show_reads_stable_keys(dvc_repo: tuple[Path, dict[str, str]]) -> None:
    root, env = dvc_repo
    result = _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], root, env)
    shown = json.dumps(json.loads(result.stdout))
    for key in ("roc_auc", "arr_capture_top_decile", "net_revenue_retention"):
        assert key in shown
