"""Probability calibration: a monotone map from the booster's raw score to a probability.

`models.train` fits it on scores the booster (or boosters of the same recipe,
cross-fitted) did not train on. Two methods: `isotonic` (monotone, non-parametric) and
`sigmoid` (Platt scaling on the log-odds). The isotonic map is interpolated between the
centres of its constant blocks so it is strictly increasing inside the fitted range:
calibration must not turn distinct scores into ties, which would cost ranking quality
(ROC-AUC, top-decile capture). Both are stored as plain numbers so a bundle can be saved
as JSON.

The isotonic steps are pooled until each holds at least `min_block_size(n)` calibration
rows (params.yaml `train.calibration.min_block_rows` / `min_block_share`), and the map is
squeezed into [0.5/(n0+1), 1 - 0.5/(n1+1)] (n0, n1: rows of the bottom and top steps),
so a handful of all-churned or all-retained accounts never yields 0% or 100%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression

Method = Literal["isotonic", "sigmoid", "identity"]

_EPS = 1e-5  # calibrated probabilities stay in [EPS, 1 - EPS] so log loss stays finite
# Defaults of params.yaml train.calibration.{min_block_rows, min_block_share}: the fewest
# calibration rows behind one isotonic step is max(rows, share x all calibration rows).
MIN_BLOCK_ROWS = 20
MIN_BLOCK_SHARE = 0.01


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from raw model probability to calibrated probability."""

    method: Method
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def transform(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw probabilities `p`."""
        p = np.asarray(p, dtype=float)
        if self.method == "isotonic":
            out = np.interp(p, np.asarray(self.x), np.asarray(self.y))
        elif self.method == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-(self.a * _logit(p) + self.b)))
        else:
            out = p
        return np.clip(out, _EPS, 1.0 - _EPS)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": list(self.x), "y": list(self.y), "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        return cls(
            method=d["method"],
            x=tuple(float(v) for v in d.get("x", [])),
            y=tuple(float(v) for v in d.get("y", [])),
            a=float(d.get("a", 1.0)),
            b=float(d.get("b", 0.0)),
        )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def fit_calibrator(
    p_raw: np.ndarray,
    y: np.ndarray,
    method: Method,
    min_block_rows: int = MIN_BLOCK_ROWS,
    min_block_share: float = MIN_BLOCK_SHARE,
) -> Calibrator:
    """Fit a calibrator on (raw probability, 0/1 label) pairs the booster did not train on.

    Isotonic steps hold at least `min_block_size(n, min_block_rows, min_block_share)` rows.
    """
    p_raw = np.asarray(p_raw, dtype=float)
    y = np.asarray(y, dtype=float)
    if method == "identity" or len(np.unique(y)) < 2:
        return Calibrator(method="identity")
    if method == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6, max_iter=1000)
        lr.fit(_logit(p_raw).reshape(-1, 1), y.astype(int))
        return Calibrator(method="sigmoid", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    fitted = iso.fit(p_raw, y).predict(p_raw)
    order = np.argsort(p_raw, kind="stable")
    xs, ys = p_raw[order], fitted[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ys) != 0) + 1]
    starts = _pool_small_blocks(starts, len(xs), min_block_size(len(xs), min_block_rows, min_block_share))
    counts = np.diff(np.r_[starts, len(xs)])
    # Block centres (mean raw score) and levels (observed churn rate) of the pooled steps.
    centres = np.add.reduceat(xs, starts) / counts
    levels = np.add.reduceat(y[order], starts) / counts
    if len(centres) < 2:
        return Calibrator(method="identity")
    # Extend the first and last segments linearly to the observed range, so scores in the
    # outer half-blocks (where the highest risks sit) keep their order too.
    lo = levels[0] - (levels[1] - levels[0]) * (centres[0] - xs[0]) / (centres[1] - centres[0])
    hi = levels[-1] + (levels[-1] - levels[-2]) * (xs[-1] - centres[-1]) / (centres[-1] - centres[-2])
    x = np.r_[xs[0], centres, xs[-1]]
    yv = np.r_[min(max(lo, 0.0), levels[0]), levels, max(min(hi, 1.0), levels[-1])]
    # No 0% / 100%: a step of n accounts can't support a rate beyond [0.5/(n+1), 1-0.5/(n+1)]
    # (Jeffreys-style), so the whole map is squeezed affinely into the end steps' bounds;
    # affine keeps every distinct score distinct.
    floor, ceiling = 0.5 / (counts[0] + 1), 1.0 - 0.5 / (counts[-1] + 1)
    yv = floor + (ceiling - floor) * yv
    x, keep = np.unique(x, return_index=True)
    return Calibrator(method="isotonic", x=tuple(map(float, x)), y=tuple(map(float, yv[keep])))


def min_block_size(n: int, min_rows: int = MIN_BLOCK_ROWS, min_share: float = MIN_BLOCK_SHARE) -> int:
    """Fewest calibration rows behind one isotonic step: `min_share` of the rows, at least `min_rows`."""
    return max(min_rows, math.ceil(min_share * n))


def _pool_small_blocks(starts: np.ndarray, n: int, min_size: int) -> np.ndarray:
    """Merge consecutive isotonic blocks until each holds >= `min_size` rows (last one joins
    its left neighbour). Pooling neighbours of a monotone step function keeps it monotone."""
    ends = np.r_[starts[1:], n]
    out: list[int] = []
    begin = int(starts[0])
    for end in ends:
        if end - begin >= min_size:
            out.append(begin)
            begin = int(end)
    if not out:  # fewer than `min_size` rows in all: one step
        out.append(0)
    # a short remainder at the top (begin < n) simply stays part of the last step
    return np.asarray(out, dtype=int)
