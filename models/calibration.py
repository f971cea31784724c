"""Probability calibration fitted on the validation months.

Two methods: `isotonic` (monotone, non-parametric) and `sigmoid` (Platt scaling on the
log-odds). The isotonic map is interpolated between the centres of its constant blocks
so it is strictly increasing inside the fitted range: calibration must not turn distinct
scores into ties, which would cost ranking quality (ROC-AUC, top-decile capture).
Both are stored as plain numbers so a bundle can be saved as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression

Method = Literal["isotonic", "sigmoid", "identity"]

_EPS = 1e-5  # calibrated probabilities stay in [EPS, 1 - EPS] so log loss stays finite


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


def fit_calibrator(p_raw: np.ndarray, y: np.ndarray, method: Method) -> Calibrator:
    """Fit a calibrator on (raw probability, 0/1 label) pairs from the validation months."""
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
    # Block centres: mean raw score of each constant block of the step function.
    order = np.argsort(p_raw, kind="stable")
    xs, ys = p_raw[order], fitted[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ys) != 0) + 1]
    centres = np.add.reduceat(xs, starts) / np.diff(np.r_[starts, len(xs)])
    levels = ys[starts]
    if len(centres) < 2:
        return Calibrator(method="identity")
    # Extend the first and last segments linearly to the observed range, so scores in the
    # outer half-blocks (where the highest risks sit) keep their order too.
    lo = levels[0] - (levels[1] - levels[0]) * (centres[0] - xs[0]) / (centres[1] - centres[0])
    hi = levels[-1] + (levels[-1] - levels[-2]) * (xs[-1] - centres[-1]) / (centres[-1] - centres[-2])
    x = np.r_[xs[0], centres, xs[-1]]
    yv = np.r_[min(max(lo, 0.0), levels[0]), levels, max(min(hi, 1.0), levels[-1])]
    yv = _EPS + (1 - 2 * _EPS) * yv  # squeeze into [EPS, 1 - EPS] without flattening anything
    x, keep = np.unique(x, return_index=True)
    return Calibrator(method="isotonic", x=tuple(map(float, x)), y=tuple(map(float, yv[keep])))
