"""Calibration: no 0% / 100% from a few accounts, steps backed by enough rows, still calibrated."""

from __future__ import annotations

import numpy as np

from models.calibration import _pool_small_blocks, fit_calibrator, min_block_size
from models.metrics import expected_calibration_error


def test_a_small_all_churned_top_step_does_not_show_100_percent() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 0.6, 4000)
    y = (rng.uniform(size=4000) < raw * 0.3).astype(float)
    raw = np.r_[raw, np.linspace(0.9, 0.99, 6)]  # six top scores, all churned
    y = np.r_[y, np.ones(6)]
    cal = fit_calibrator(raw, y, "isotonic")
    top = cal.transform(np.array([0.99, 1.0]))
    assert top.max() < 0.99  # six accounts are no evidence for 100% (was 0.99999)
    bottom = cal.transform(np.array([0.0]))
    assert bottom[0] > 0.0005  # nor for 0%
    assert expected_calibration_error(y, cal.transform(raw)) < 0.03


def test_every_step_holds_the_minimum_count() -> None:
    rng = np.random.default_rng(1)
    raw = rng.uniform(size=3000)
    y = (rng.uniform(size=3000) < raw).astype(float)
    cal = fit_calibrator(raw, y, "isotonic")
    centres = np.asarray(cal.x[1:-1])  # x = [min, step centres..., max]
    assert 5 <= len(centres) <= 3000 // min_block_size(3000)
    assert np.all(np.diff(cal.y[len(cal.y) // 2 :]) > 0)  # upper half strictly increasing: no ties


def test_pooling_merges_small_blocks_and_keeps_the_remainder_in_the_last_step() -> None:
    starts = np.array([0, 5, 30, 31, 60, 95])
    assert _pool_small_blocks(starts, 100, 20).tolist() == [0, 30, 60]
    assert _pool_small_blocks(np.array([0, 3]), 10, 20).tolist() == [0]


def test_top_step_of_all_churners_with_enough_rows_may_be_high_but_not_certain() -> None:
    raw = np.r_[np.linspace(0, 0.5, 500), np.linspace(0.9, 1.0, 200)]
    y = np.r_[np.zeros(500), np.ones(200)]
    cal = fit_calibrator(raw, y, "isotonic")
    p = cal.transform(np.array([1.0]))[0]
    assert 0.99 < p < 1.0 - 1e-3


def test_block_minimum_comes_from_the_parameters() -> None:
    rng = np.random.default_rng(2)
    raw = rng.uniform(size=3000)
    y = (rng.uniform(size=3000) < raw).astype(float)
    assert min_block_size(3000) == 30 and min_block_size(100) == 20  # the params.yaml defaults
    assert min_block_size(3000, min_rows=100, min_share=0.0) == 100
    assert min_block_size(3000, min_rows=1, min_share=0.1) == 300
    fine = fit_calibrator(raw, y, "isotonic")
    coarse = fit_calibrator(raw, y, "isotonic", min_block_rows=300, min_block_share=0.0)
    assert len(coarse.x) - 2 <= 3000 // 300 < len(fine.x) - 2  # x = [min, step centres..., max]


def test_params_yaml_calibration_section_and_its_older_string_form() -> None:
    from pathlib import Path

    from churnguard.params import load_section
    from models.calibration import MIN_BLOCK_ROWS, MIN_BLOCK_SHARE
    from models.config import TrainParams

    repo = load_section("train", TrainParams, Path(__file__).parents[1] / "params.yaml").calibration
    assert (repo.method, repo.min_block_rows, repo.min_block_share) == (
        "isotonic",
        MIN_BLOCK_ROWS,
        MIN_BLOCK_SHARE,
    )
    old = TrainParams.model_validate({"calibration": "sigmoid"}).calibration
    assert (old.method, old.min_block_rows) == ("sigmoid", MIN_BLOCK_ROWS)
