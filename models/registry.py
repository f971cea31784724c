"""MLflow: the pyfunc wrapper, saving/logging the model, and the registry promotion gate.

The tracking URI comes from `MLFLOW_TRACKING_URI`, defaulting to a local SQLite file
that needs no server. The registered model is `churnguard`; the version that wins the
gate holds the `champion` alias, others get `challenger`.

The gate compares the new model and the champion on the new test months, but only on
those the champion saw no label of (`comparison_window`): a champion fitted, early-stopped
or calibrated on rows whose churn falls in a test month would be scored in-sample there.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
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
class ComparisonWindow:
    """The test dates on which the champion is out-of-sample, and why the others are not."""

    dates: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    champion_label_end: str | None = None
    note: str = ""


def champion_label_end(meta: dict[str, Any], horizon_days: int, lead_days: int) -> pd.Timestamp | None:
    """The (exclusive) end of the latest label window the champion saw, from its bundle meta.

    Bundles record it (`meta["label_end"]`); for older ones every non-test date of their
    `split_dates` counts as seen (fitted, early-stopped or calibrated on), with their
    `label_window` or else today's. None when the bundle has no split dates at all.
    """
    if meta.get("label_end"):
        return pd.Timestamp(meta["label_end"])
    split_dates = meta.get("split_dates") or {}
    seen = [pd.Timestamp(d) for part, dates in split_dates.items() if part != "test" for d in dates]
    if not seen:
        return None
    window = meta.get("label_window") or {}
    days = int(window.get("horizon_days", horizon_days)) + int(window.get("lead_days", lead_days))
    return max(seen) + pd.Timedelta(days=days)


def comparison_window(
    test_dates: Iterable[Any], champion_meta: dict[str, Any], horizon_days: int, lead_days: int
) -> ComparisonWindow:
    """Test dates whose label window [t + lead, ...) starts at or after the champion's label end."""
    dates = sorted({pd.Timestamp(d) for d in test_dates})
    iso = [str(d.date()) for d in dates]
    end = champion_label_end(champion_meta, horizon_days, lead_days)
    if end is None:
        return ComparisonWindow(tuple(iso), note="champion's fitted months unknown (no split dates)")
    lead = pd.Timedelta(days=lead_days)
    keep = [d + lead >= end for d in dates]
    return ComparisonWindow(
        dates=tuple(i for i, k in zip(iso, keep, strict=True) if k),
        excluded=tuple(i for i, k in zip(iso, keep, strict=True) if not k),
        champion_label_end=str(end.date()),
    )


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
    compared_dates: tuple[str, ...] = ()
    excluded_dates: tuple[str, ...] = ()
    champion_label_end: str | None = None
    compared_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_promotion(
    new: dict[str, float],
    champion: dict[str, float] | None,
    gate: GateParams,
    champion_version: str | None,
    *,
    new_on_window: dict[str, float] | None = None,
    window: ComparisonWindow | None = None,
) -> GateDecision:
    """Champion only if calibrated within bound and better than the champion by the margin.

    `new` are the new model's metrics on its whole test window (the ECE bound is checked
    there). With a `window`, `champion` and `new_on_window` are both computed on the test
    rows of `window.dates` only; when those hold fewer than `gate.min_compare_churners`
    churners (or there is no such date) there is no fair comparison and
    `gate.no_fair_window` decides: `keep_champion` (the new model becomes a challenger)
    or `promote`.
    """
    ece = float(new.get("ece", float("nan")))
    full = float(new.get(gate.metric, float("nan")))
    on = new_on_window if window is not None and new_on_window is not None else new
    value = float(on.get(gate.metric, float("nan")))
    old = float(champion.get(gate.metric, float("nan"))) if champion is not None else None
    n_rows = float(on.get("n_rows", 0.0))
    churners = round(n_rows * float(on.get("churn_rate", 0.0))) if n_rows else 0

    def decision(promoted: bool, reason: str, compared: float = value) -> GateDecision:
        alias = CHAMPION if promoted else CHALLENGER
        where: dict[str, Any] = {}
        if window is not None and champion is not None:
            where = {
                "compared_dates": window.dates,
                "excluded_dates": window.excluded,
                "champion_label_end": window.champion_label_end,
                "compared_rows": int(n_rows),
            }
        version = champion_version
        return GateDecision(alias, promoted, reason, gate.metric, compared, ece, version, old, **where)

    if not np.isfinite(full) or not np.isfinite(ece):
        return decision(False, f"test {gate.metric}/ece not computable", full)
    if ece > gate.max_ece:
        return decision(False, f"ece {ece:.4f} > max_ece {gate.max_ece}", full)
    if old is None:
        return decision(True, "no current champion", full)
    scope = ""
    if window is not None:
        seen = f"champion v{champion_version} saw churn labels up to {window.champion_label_end}"
        if not window.dates or churners < gate.min_compare_churners:
            left = (
                f"{len(window.dates)} test month(s) left with {churners} churners "
                f"< train.gate.min_compare_churners {gate.min_compare_churners}"
                if window.dates
                else "no test month left"
            )
            why = f"no fair comparison: {seen} ({left})"
            if gate.no_fair_window == "promote":
                return decision(True, f"{why}; promoted (train.gate.no_fair_window: promote)", full)
            return decision(False, f"{why}; champion kept (train.gate.no_fair_window: keep_champion)", full)
        if window.excluded:
            scope = (
                f" on test months {window.dates[0]}..{window.dates[-1]} ({int(n_rows)} rows; "
                f"{len(window.excluded)} earlier month(s) excluded: {seen})"
            )
        elif window.note:
            scope = f" on the whole test window ({window.note})"
    if not np.isfinite(old):
        return decision(True, f"champion v{champion_version} cannot be scored on this test window")
    versus = f"champion v{champion_version} {old:.4f} + {gate.min_improvement}{scope}"
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
