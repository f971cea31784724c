"""Typed params.yaml sections of the train, evaluate and explain stages (and the split they read)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from churnguard.params import Section


class SplitParams(BaseModel):
    """The `split` section (owned by models/split.py; read here, extra keys tolerated)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    test_months: int = 6
    valid_months: int = 3


class LightGBMParams(Section):
    learning_rate: float = 0.05
    num_leaves: int = 15
    max_depth: int = 6
    min_child_samples: int = 40
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    n_estimators: int = 600
    early_stopping_rounds: int = 50
    num_threads: int = 1  # more threads only spin on a busy 2-core box; 1 is also reproducible
    scale_pos_weight: float = 1.0


class GateParams(Section):
    metric: Literal["roc_auc", "pr_auc", "arr_capture_top_decile"] = "roc_auc"
    min_improvement: float = 0.002
    max_ece: float = 0.05


class TrainParams(Section):
    seed: int = 42
    lightgbm: LightGBMParams = LightGBMParams()
    search_trials: int = Field(default=6, ge=1)
    calibration: Literal["isotonic", "sigmoid"] = "isotonic"
    refit_on_valid: bool = True
    logistic_c: float = Field(default=0.5, gt=0)
    gate: GateParams = GateParams()
    # Features whose name matches (re.search) are constrained so risk never decreases /
    # increases with them: "more open high-severity bugs never lowers risk".
    monotone_increasing: tuple[str, ...] = ("(bug|high|urgent)[a-z_]*_open$",)
    monotone_decreasing: tuple[str, ...] = ()
    max_categories: int = 50
    model_name: str = "churnguard"
    experiment: str = "churnguard"


class EvaluateParams(Section):
    top_k: int = Field(default=50, ge=1)
    calibration_bins: int = 10


class ExplainParams(Section):
    top_reasons: int = Field(default=3, ge=1)
    language: Literal["en", "ja"] = "en"
