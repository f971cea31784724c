"""Typed params.yaml sections of the train, evaluate and explain stages (and the split they read)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from churnguard.params import Section
from models.calibration import MIN_BLOCK_ROWS, MIN_BLOCK_SHARE


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
    # The champion is compared only on test months it never saw a label of; fewer churners
    # than this there (or none of those months) -> `no_fair_window` decides.
    min_compare_churners: int = Field(default=20, ge=1)
    no_fair_window: Literal["keep_champion", "promote"] = "keep_champion"


class CalibrationParams(Section):
    method: Literal["isotonic", "sigmoid"] = "isotonic"
    min_block_rows: int = Field(default=MIN_BLOCK_ROWS, ge=1)
    min_block_share: float = Field(default=MIN_BLOCK_SHARE, ge=0.0, lt=1.0)
    crossfit_folds: int = Field(default=5, ge=2)  # account folds calibrating the refit model


class TrainParams(Section):
    seed: int = 42
    lightgbm: LightGBMParams = LightGBMParams()
    search_trials: int = Field(default=6, ge=1)
    calibration: CalibrationParams = CalibrationParams()
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

    @field_validator("calibration", mode="before")
    @classmethod
    def _method_alone(cls, value: Any) -> Any:
        """`calibration: sigmoid` (the older form) still means the method with default minimums."""
        return {"method": value} if isinstance(value, str) else value


class EvaluateParams(Section):
    top_k: int = Field(default=50, ge=1)
    calibration_bins: int = 10


class ExplainParams(Section):
    top_reasons: int = Field(default=3, ge=1)
    language: Literal["en", "ja"] = "en"
