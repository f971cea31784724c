"""Shared fixtures: a tiny simulated company run through the real stages, once per session.

Each fixture runs one stage's `main(argv)` exactly as `dvc.yaml` does, against a tiny
params file in a temporary folder, so stage tests exercise the real entry points.
Fixtures are lazy: a test that needs only validated tables never trains a model.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Tiny:
    """Paths of the tiny company's pipeline, laid out like the real one under `root`."""

    root: Path

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def raw(self) -> Path:
        return self.root / "data" / "simulated"

    @property
    def truth(self) -> Path:
        return self.root / "data" / "sim_truth"

    @property
    def validated(self) -> Path:
        return self.root / "data" / "validated"

    @property
    def snapshots(self) -> Path:
        return self.root / "data" / "snapshots.parquet"

    @property
    def features(self) -> Path:
        return self.root / "data" / "features.parquet"

    @property
    def text_model(self) -> Path:
        return self.root / "artifacts" / "text_model"

    @property
    def model(self) -> Path:
        return self.root / "artifacts" / "model"

    @property
    def train_summary(self) -> Path:
        return self.root / "artifacts" / "train_summary.json"

    @property
    def explanations(self) -> Path:
        return self.root / "data" / "explanations.parquet"

    @property
    def scores(self) -> Path:
        return self.root / "data" / "scores"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def report_html(self) -> Path:
        return self.root / "reports" / "report.html"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"


def tiny_params() -> dict:
    """The repo's params.yaml, shrunk to a company that runs end to end in seconds."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["simulate"].update(accounts=150, months=18, seed=7, dirty=False)
    params["split"].update(test_months=3, valid_months=2)
    # min_child_samples scaled to the company: 80 rows per leaf would leave the tiny model a stump
    params["train"]["lightgbm"].update(n_estimators=150, early_stopping_rounds=20, min_child_samples=15)
    params["train"]["search_trials"] = 2
    params["evaluate"]["top_k"] = 10
    return params


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """The tiny company's folder with its params.yaml (no stage run yet)."""
    root = tmp_path_factory.mktemp("tiny")
    t = Tiny(root)
    t.params.write_text(yaml.safe_dump(tiny_params(), sort_keys=False), encoding="utf-8")
    return t


def simulate_stage(t: Tiny) -> Tiny:
    from pipeline import simulate

    simulate.main(["--out", str(t.raw), "--truth-out", str(t.truth), "--params", str(t.params)])
    return t


def validate_stage(t: Tiny) -> Tiny:
    from pipeline import validate

    validate.main(["--input", str(t.raw), "--out", str(t.validated), "--params", str(t.params)])
    return t


def snapshots_stage(t: Tiny) -> Tiny:
    from pipeline import snapshots

    snapshots.main(["--validated", str(t.validated), "--out", str(t.snapshots), "--params", str(t.params)])
    return t


def features_stage(t: Tiny) -> Tiny:
    from pipeline import features

    features.main(
        [
            "--validated", str(t.validated),
            "--snapshots", str(t.snapshots),
            "--out", str(t.features),
            "--text-model", str(t.text_model),
            "--metrics", str(t.metrics / "features.json"),
            "--params", str(t.params),
        ]
    )  # fmt: skip
    return t


def train_stage(t: Tiny) -> Tiny:
    from pipeline import train

    os.environ["MLFLOW_TRACKING_URI"] = t.tracking_uri
    train.main(
        [
            "--features", str(t.features),
            "--snapshots", str(t.snapshots),
            "--validation-report", str(t.validated / "validation_report.json"),
            "--model-out", str(t.model),
            "--summary", str(t.train_summary),
            "--params", str(t.params),
        ]
    )  # fmt: skip
    return t


@pytest.fixture(scope="session")
def tiny_raw(tiny: Tiny) -> Tiny:
    return simulate_stage(tiny)


@pytest.fixture(scope="session")
def tiny_validated(tiny_raw: Tiny) -> Tiny:
    return validate_stage(tiny_raw)


@pytest.fixture(scope="session")
def tiny_snapshots(tiny_validated: Tiny) -> Tiny:
    return snapshots_stage(tiny_validated)


@pytest.fixture(scope="session")
def tiny_features(tiny_snapshots: Tiny) -> Tiny:
    return features_stage(tiny_snapshots)


@pytest.fixture(scope="session")
def tiny_model(tiny_features: Tiny) -> Tiny:
    return train_stage(tiny_features)


def run_stages_to_model(t: Tiny) -> Tiny:
    """simulate -> validate -> snapshots -> features -> train for the company in `t` (its params.yaml)."""
    return train_stage(features_stage(snapshots_stage(validate_stage(simulate_stage(t)))))


@pytest.fixture(scope="session")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """The default simulated company (the repo's params.yaml, unchanged), trained: for the
    acceptance checks of model behaviour, which need a model with enough churners to learn
    from (the tiny company has about 20; a 600-account one was not enough either)."""
    t = Tiny(tmp_path_factory.mktemp("default"))
    shutil.copyfile(REPO / "params.yaml", t.params)
    return run_stages_to_model(t)


def evaluate_stage(t: Tiny) -> Tiny:
    from pipeline import evaluate

    evaluate.main(
        [
            "--model", str(t.model),
            "--features", str(t.features),
            "--snapshots", str(t.snapshots),
            "--metrics", str(t.metrics / "evaluate.json"),
            "--plots", str(t.plots),
            "--params", str(t.params),
        ]
    )  # fmt: skip
    return t


def explain_stage(t: Tiny) -> Tiny:
    from pipeline import explain

    explain.main(
        [
            "--model", str(t.model),
            "--features", str(t.features),
            "--snapshots", str(t.snapshots),
            "--out", str(t.explanations),
            "--global-metrics", str(t.metrics / "shap_global.json"),
            "--plots", str(t.root / "plots_explain"),
            "--params", str(t.params),
        ]
    )  # fmt: skip
    return t


def score_stage(t: Tiny) -> Tiny:
    from pipeline import score

    score.main(
        [
            "--model", str(t.model),
            "--features", str(t.features),
            "--snapshots", str(t.snapshots),
            "--explanations", str(t.explanations),
            "--accounts", str(t.validated / "accounts.parquet"),
            "--out", str(t.scores),
            "--params", str(t.params),
        ]
    )  # fmt: skip
    return t


def report_stage(t: Tiny) -> Tiny:
    from pipeline import report

    report.main(
        [
            "--validated", str(t.validated),
            "--snapshots", str(t.snapshots),
            "--features", str(t.features),
            "--scores", str(t.scores),
            "--model", str(t.model),
            "--metrics", str(t.metrics / "report.json"),
            "--monitoring", str(t.metrics / "monitoring.json"),
            "--html", str(t.report_html),
            "--params", str(t.params),
        ]
    )  # fmt: skip
    return t


@pytest.fixture(scope="session")
def tiny_explained(tiny_model: Tiny) -> Tiny:
    return explain_stage(tiny_model)


@pytest.fixture(scope="session")
def tiny_scores(tiny_explained: Tiny) -> Tiny:
    return score_stage(tiny_explained)


@pytest.fixture(scope="session")
def tiny_reported(tiny_scores: Tiny) -> Tiny:
    return report_stage(tiny_scores)
