"""MLflow: the pyfunc wrapper, saving/logging the model, and the registry promotion gate.

The tracking URI comes from `MLFLOW_TRACKING_URI`, defaulting to a local SQLite file
that needs no server. The registered model is `churnguard`; the version that wins the
gate holds the `champion` alias, others get `challenger`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel

from models.bundle import BUNDLE_ARTIFACT, ModelBundle
from models.config import GateParams

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
CHAMPION = "champion"
CHALLENGER = "challenger"
_REQUIREMENTS = ("lightgbm", "pandas", "numpy", "scikit-learn", "mlflow", "pyyaml", "pyarrow", "pydantic")


def tracking_uri() -> str:
    """The MLflow tracking URI: `MLFLOW_TRACKING_URI` or a local SQLite file."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class ChurnguardModel(PythonModel):
    """pyfunc wrapper: feature rows in, calibrated churn probability out."""

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.load_bundle_dir(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.bundle.predict_proba(frame)


def _pinned_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return out


def example_frame(bundle: ModelBundle, rows: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """Input example in the model's own schema: numbers as float, categories as strings."""
    ex = rows.loc[:, bundle.feature_names].head(n).copy()
    for col in ex.columns:
        if col in bundle.spec.categories:
            ex[col] = ex[col].astype(object).where(ex[col].notna(), None)
        else:
            ex[col] = pd.to_numeric(ex[col], errors="coerce").astype(float)
    return ex


def _model_kwargs(bundle: ModelBundle, example: pd.DataFrame, bundle_dir: Path) -> dict[str, Any]:
    example = example_frame(bundle, example)
    signature = infer_signature(example, np.asarray(bundle.predict_proba(example), dtype=float))
    return {
        "python_model": ChurnguardModel(),
        "artifacts": {BUNDLE_ARTIFACT: str(bundle_dir)},
        "signature": signature,
        "input_example": example,
        "pip_requirements": _pinned_requirements(),
    }


def save_pyfunc(bundle: ModelBundle, path: Path, example: pd.DataFrame) -> Path:
    """Write the MLflow pyfunc directory (replacing what was there)."""
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        bdir = bundle.save(Path(tmp) / BUNDLE_ARTIFACT)
        mlflow.pyfunc.save_model(str(path), **_model_kwargs(bundle, example, bdir))
    return path


def log_pyfunc(bundle: ModelBundle, example: pd.DataFrame, registered_name: str) -> tuple[str, str]:
    """Log the model to the active run and register it; returns (model uri, registry version)."""
    with tempfile.TemporaryDirectory() as tmp:
        bdir = bundle.save(Path(tmp) / BUNDLE_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name="model", registered_model_name=registered_name, **_model_kwargs(bundle, example, bdir)
        )
    return info.model_uri, str(info.registered_model_version)


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the promotion gate."""

    alias: str
    promoted: bool
    reason: str
    metric: str
    new_value: float
    new_ece: float
    champion_version: str | None = None
    champion_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_promotion(
    new: dict[str, float], champion: dict[str, float] | None, gate: GateParams, champion_version: str | None
) -> GateDecision:
    """Champion only if calibrated within bound and better than the champion by the margin."""
    value = float(new.get(gate.metric, float("nan")))
    ece = float(new.get("ece", float("nan")))
    old = float(champion.get(gate.metric, float("nan"))) if champion is not None else None

    def decision(promoted: bool, reason: str) -> GateDecision:
        alias = CHAMPION if promoted else CHALLENGER
        return GateDecision(alias, promoted, reason, gate.metric, value, ece, champion_version, old)

    if not np.isfinite(value) or not np.isfinite(ece):
        return decision(False, f"test {gate.metric}/ece not computable")
    if ece > gate.max_ece:
        return decision(False, f"ece {ece:.4f} > max_ece {gate.max_ece}")
    if old is None:
        return decision(True, "no current champion")
    versus = f"champion v{champion_version} {old:.4f} + {gate.min_improvement}"
    if not np.isfinite(old):
        return decision(True, f"champion v{champion_version} cannot be scored on this test window")
    if value >= old + gate.min_improvement:
        return decision(True, f"{gate.metric} {value:.4f} >= {versus}")
    return decision(False, f"{gate.metric} {value:.4f} < {versus}")


def current_champion(client: MlflowClient, name: str) -> tuple[str, ModelBundle] | None:
    """(version, bundle) of the model holding the champion alias, or None."""
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}"))
    bundle = ModelBundle.load(local)
    bundle.version = str(mv.version)
    return str(mv.version), bundle


def apply_decision(client: MlflowClient, name: str, version: str, decision: GateDecision) -> None:
    """Set the alias and record the decision on the model version."""
    client.set_registered_model_alias(name, decision.alias, version)
    client.set_model_version_tag(name, version, "gate_decision", decision.alias)
    client.set_model_version_tag(name, version, "gate_reason", decision.reason)


def file_md5(path: Path) -> str | None:
    """MD5 of a file (what DVC records for a file output), or None when absent."""
    import hashlib

    if not path.is_file():
        return None
    h = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit(cwd: Path | None = None) -> str:
    """The current git commit (with '-dirty' when the work tree has changes), or 'unknown'."""
    import subprocess

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")
