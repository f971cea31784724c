"""Batch reason rendering: the same sentences as rendering row by row, and never a healthy reading."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from models import reasons
from models.reasons import (
    HERE,
    benign_readings,
    classify_feature,
    reasons_from_contributions,
    render_reason_with_reading,
)


def _row_by_row(
    X: pd.DataFrame, names: list[str], contrib: np.ndarray, top_n: int, language: str, reference: Any,
    benign: Any = benign_readings,
) -> list[list[tuple[Any, ...]]]:  # fmt: skip
    """The documented rule, one row and one candidate at a time, rendering every candidate."""
    out = []
    for i, row in enumerate(X.to_dict(orient="records")):
        reasons: list[tuple[Any, ...]] = []
        seen: set[str] = set()
        for j in np.argsort(-contrib[i, : len(names)], kind="stable"):
            if contrib[i, j] <= 0 or len(reasons) == top_n:
                break
            family, text, reading = render_reason_with_reading(names[j], row, language, reference)
            if family in seen or reading in benign(names[j]):
                continue
            seen.add(family)
            reasons.append((names[j], family, text))
        out.append(reasons)
    return out


@pytest.mark.slow
def test_batch_reasons_equal_row_by_row_rendering(tiny_model: Any) -> None:
    """On the tiny simulated company's model and features (rows repeated, some values made
    -0.0 or NaN so the memo sees equal, signed and missing values), en and ja."""
    from models.bundle import ModelBundle

    bundle = ModelBundle.load(tiny_model.model)
    names = bundle.feature_names
    feats = pd.read_parquet(tiny_model.features)
    X = pd.concat([feats, feats.head(50)], ignore_index=True)[names]
    numeric = [n for n in names if n not in bundle.spec.categories]
    rng = np.random.default_rng(0)
    for name in numeric[:: max(1, len(numeric) // 10)]:
        col = X[name].to_numpy(dtype=float, copy=True)
        col[rng.random(len(col)) < 0.05] = -0.0
        col[rng.random(len(col)) < 0.05] = np.nan
        X[name] = col
    contrib = bundle.contributions(X)
    for language, top_n, reference in (("en", 3, bundle.feature_reference), ("ja", 5, None)):
        batch = reasons_from_contributions(X, names, contrib, top_n, language, reference)
        got = [[(r.feature, r.family, r.text) for r in rs] for rs in batch]
        assert got == _row_by_row(X, names, contrib, top_n, language, reference)
        assert sum(map(len, got)) > len(X)  # most rows have reasons: the comparison is not empty


def test_a_healthy_reading_is_never_shown_as_a_risk() -> None:
    """Active users rose (5 -> 7) and the plan is annual: both contribute to risk here, yet
    neither reads as one, so the next contributors are shown instead."""
    row = {
        "active_users_30d": 7.0,
        "active_users_prev_30d": 5.0,
        "billing_annual": 1.0,
        "nps_last": 3.0,
        "bugs_high_open": 2.0,
    }
    names = list(row)
    X = pd.DataFrame([row, {**row, "active_users_30d": 3.0}])
    contrib = np.array([[0.9, 0.0, 0.8, 0.3, 0.2, 0.0]] * 2)
    first, second = reasons_from_contributions(X, names, contrib, top_n=3)
    assert [r.feature for r in first] == ["nps_last", "bugs_high_open"]  # fewer than 3: none left
    assert not any("up from" in r.text or "annual" in r.text for r in first)
    # the same feature is shown when its reading is a risk: users down from 5 to 3
    assert second[0].feature == "active_users_30d" and "down from 5" in second[0].text
    assert render_reason_with_reading("active_users_30d", row, "en", None)[2] == "up"


def test_benign_readings_name_real_variants() -> None:
    """Each `benign` entry in rules.yaml is a variant its template can produce (a typo would
    silently never match)."""
    rules = yaml.safe_load((HERE / "templates" / "rules.yaml").read_text(encoding="utf-8"))["rules"]
    texts = yaml.safe_load((HERE / "templates" / "en.yaml").read_text(encoding="utf-8"))["templates"]
    directions = {"up", "down", "flat"}
    for rule in rules:
        for reading in rule.get("benign", []):
            assert isinstance(reading, str), rule  # YAML turns bare yes/no into booleans
            allowed = set(texts.get(rule["template"], {})) | {"missing"}
            if rule["template"] == "generic":
                allowed |= directions
            assert reading in allowed, (rule["pattern"], reading)
    assert benign_readings("active_users_30d") == {"up", "missing"}
    assert benign_readings("tickets_sev_high_30d") == {"down"}
    assert classify_feature("csat_mean_90d")[:2] == ("bug_escalation", "generic")
    assert benign_readings("csat_mean_90d") == {"up"}
    assert benign_readings("weird_unknown_column") == frozenset()


def _random_frame(n: int, seed: int) -> pd.DataFrame:
    """Rows that exercise every column plan and the one-by-one templates: windowed counts and
    levels with and without companions, plain values, renewal with text and numeric plans,
    flags, NPS, ratio / change / trend / slope / open-ticket / seat sentences with and without
    their companion columns, text columns; values repeated, zero, -0.0, NaN, and companions
    that are missing or zero."""
    rng = np.random.default_rng(seed)

    def col(scale: float, ints: bool = False) -> np.ndarray:
        x = rng.choice([0.0, -0.0, 1.0, 2.0, 7.0], n) if ints else rng.gamma(1.5, scale, n)
        x = np.where(rng.random(n) < 0.3, np.round(x), x)
        x[rng.random(n) < 0.1] = 0.0
        x[rng.random(n) < 0.05] = -0.0
        x[rng.random(n) < 0.12] = np.nan
        return x

    return pd.DataFrame(
        {
            "active_users_30d": col(20),
            "active_users_prev_30d": col(20),
            "events_7d": col(50),
            "events_30d": col(200),
            "events_90d": col(600),
            "csat_mean_90d": col(2),
            "login_rate_30d": col(0.3),
            "login_rate_90d": col(0.3),
            "tickets_question_30d": col(3, ints=True),
            "mystery_score": col(1000),
            "health_score": col(50),
            "health_usage": col(40),
            "days_since_last_login": col(10),
            "days_to_renewal": col(120),
            "billing_period": rng.choice(np.array(["monthly", "annual", " Monthly", None], dtype=object), n),
            "billing_monthly": col(1, ints=True),
            "billing_annual": col(1, ints=True),
            "billing_code": col(2),
            "nps_change_last": col(3, ints=True),
            "champions_departed_90d": col(1, ints=True),
            "seat_utilisation_30d": col(0.5),
            "nps_last": col(4),
            "comment_sentiment_mean_180d": col(4),
            "comments_theme_price_180d": col(1, ints=True),
            "comments_theme_cancel": col(1, ints=True),
            "admins_enabled": col(1, ints=True),
            "cancellation_recorded": col(1, ints=True),
            "events_30d_vs_prev_30d_ratio": col(0.7),
            "bugs_high_open": col(1, ints=True),
            "bugs_high_open_max_age_days": col(20),
            "tickets_open": col(2, ints=True),
            "nps_prev": col(4),
            "mrr_change_90d_ratio": col(0.3) - 0.2,
            "mrr_90d_ago": col(500),
            "mrr": col(500),
            "users_change_90d_ratio": col(0.3) - 0.2,
            "users_enabled": col(10),
            "usage_trend_30d_pct": col(30) - 40,
            "usage_30d": col(100),
            "events_slope_90d_rel": col(0.05) - 0.05,
            "events_slope_90d_per_day": col(2) - 2,
            "sessions_slope_30d_per_day": col(0.5) - 0.3,
            "segment": rng.choice(np.array(["smb", "mid", "enterprise", None], dtype=object), n),
            "plan": rng.choice(np.array(["starter", "pro", np.nan], dtype=object), n),
        }
    )


@pytest.mark.parametrize(("seed", "text_dtype"), [(0, object), (1, "str"), (2, object)])
def test_batch_reasons_equal_row_by_row_on_random_rows(seed: int, text_dtype: Any) -> None:
    """Column-wise rendering equals the one-row renderer on random rows, contributions and
    references (some missing), en and ja, several `top_n`; text columns as objects (the API's
    frames) or pandas strings (read from Parquet)."""
    X = _random_frame(400, seed)
    for name in ("segment", "plan", "billing_period"):
        X[name] = X[name].astype(text_dtype)
    names = list(X.columns)
    rng = np.random.default_rng(seed + 10)
    contrib = rng.normal(0, 1, (len(X), len(names) + 1))
    contrib[rng.random(contrib.shape) < 0.2] = 0.0  # ties at zero and equal contributions
    reference = {name: float(v) for name, v in zip(names, rng.gamma(2, 10, len(names)), strict=True)}
    reference["events_7d"] = 0.0
    reference.pop("mystery_score")
    reference["login_rate_30d"] = float("nan")
    for language, top_n, ref in (
        ("en", 3, reference),
        ("ja", 5, reference),
        ("en", 12, None),
        ("ja", 8, None),
    ):
        batch = reasons_from_contributions(X, names, contrib, top_n, language, ref)
        got = [[(r.feature, r.family, r.text) for r in rs] for rs in batch]
        assert got == _row_by_row(X, names, contrib, top_n, language, ref)
        assert sum(map(len, got)) > len(X)
        for i, rs in enumerate(batch):
            for r in rs:
                assert r.shap == contrib[i, names.index(r.feature)] > 0
                v = X.at[i, r.feature]
                assert r.value == (None if isinstance(v, str) or pd.isna(v) else float(v))
    kinds = {reasons._static_fields(f, "en")[1] for f in names}  # every template kind is in play
    assert {
        "ratio_vs_prev",
        "change_ratio",
        "trend_pct",
        "slope_rel",
        "slope_per_day",
        "tickets_open",
    } <= kinds
    assert {"open_age", "seat_utilisation", "nps_change", "billing", "days_to_renewal"} <= kinds


def test_batch_reasons_equal_row_by_row_without_benign_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no healthy readings declared, every reading is shown, so the plan-dependent
    families (an annual plan's renewal_annual) decide the de-dup: still equal row by row."""
    monkeypatch.setattr(reasons, "benign_readings", lambda feature: frozenset())
    reasons._plan_column.cache_clear()
    reasons._feature_facts.cache_clear()
    try:
        X = _random_frame(300, 7)
        names = list(X.columns)
        contrib = np.random.default_rng(7).normal(0, 1, (len(X), len(names) + 1))
        batch = reasons_from_contributions(X, names, contrib, 4, "en", None)
        got = [[(r.feature, r.family, r.text) for r in rs] for rs in batch]
        assert got == _row_by_row(X, names, contrib, 4, "en", None, benign=lambda f: frozenset())
        assert any(r.family == "renewal_annual" and r.feature == "billing_annual" for rs in batch for r in rs)
    finally:
        reasons._plan_column.cache_clear()
        reasons._feature_facts.cache_clear()


def test_batch_reasons_equal_row_by_row_with_odd_object_columns() -> None:
    """Columns that the column plans cannot read as floats or text: a text column holding
    numbers and flags, and companions stored as objects (the previous window, the total
    behind a daily slope, the value before a change). Rendered one by one: still equal row by row."""
    X = _random_frame(300, 3)
    X["segment"] = np.array(["smb", 3, 2.5, None, True, np.nan] * 50, dtype=object)
    for name in ("active_users_prev_30d", "usage_30d", "mrr", "nps_prev"):
        X[name] = X[name].astype(object)
    names = list(X.columns)
    contrib = np.random.default_rng(3).normal(0, 1, (len(X), len(names)))
    reference = {name: 5.0 for name in names}
    for language, top_n in (("en", 3), ("ja", 5), ("en", 8)):
        batch = reasons_from_contributions(X, names, contrib, top_n, language, reference)
        got = [[(r.feature, r.family, r.text) for r in rs] for rs in batch]
        assert got == _row_by_row(X, names, contrib, top_n, language, reference)
        shown = {r.feature for rs in batch for r in rs}
        assert {"segment", "active_users_30d", "usage_trend_30d_pct", "mrr_change_90d_ratio"} <= shown


def test_equal_contributions_keep_feature_order_across_ranks() -> None:
    """Ties among positive contributions rank in feature order (a stable sort), also past the
    first block of ranks and for rows with more positive contributors than features shown."""
    X = _random_frame(60, 4)
    names = list(X.columns)
    contrib = np.tile(np.array([0.5, 0.5, 0.2] * (len(names) // 3) + [0.5] * (len(names) % 3)), (len(X), 1))
    contrib[::2, ::5] = 0.9
    for top_n in (1, 3, 8):
        batch = reasons_from_contributions(X, names, contrib, top_n, "en", None)
        got = [[(r.feature, r.family, r.text) for r in rs] for rs in batch]
        assert got == _row_by_row(X, names, contrib, top_n, "en", None)
        assert sum(map(len, got)) >= len(X) * min(top_n, 2)


def test_reference_formatting_equals_rounding_then_formatting() -> None:
    """`_fmt_ref` (from the one-decimal string) prints what `_compare` prints: `_fmt` of the
    reference rounded to 0.1 below 100, else to a whole number; ties, signs, near 1 and 100."""
    rng = np.random.default_rng(5)
    values = np.concatenate(
        [
            rng.normal(0, 1, 20_000),
            rng.normal(0, 40, 20_000),
            np.arange(-2_000, 2_000) / 100 + 0.05,  # halfway cases: 0.05, 0.15, ...
            np.arange(-400, 400) / 20,
            [0.0, -0.0, 0.95, -0.95, 0.05, -0.05, 0.0499999, 99.95, 99.96, -99.95, 100.0, 1e-12, 5e-324],
        ]
    )
    for v in values.tolist():
        assert reasons._fmt_ref(v) == reasons._fmt(round(v, 1) if abs(v) < 100 else round(v)), v


@pytest.mark.parametrize("total_dtype", ["int64", object, "float64"])
def test_slope_per_day_reads_its_total_whatever_the_total_column_type(total_dtype: Any) -> None:
    """A small slope against a large daily average reads "flat" (shown, not skipped as a healthy
    "up") in both renderers, also when the total is an integer or object column, as in real
    Parquet exports."""
    X = pd.DataFrame(
        {
            "events_slope_90d_per_day": [0.05, 3.0, -0.05, np.nan],
            "events_90d": np.array([9000, 90, 9000, 9000]).astype(total_dtype),
            "nps_last": [3.0, 3.0, 3.0, 3.0],
        }
    )
    names = list(X.columns)
    contrib = np.array([[1.0, 0.0, 0.5, 0.0]] * len(X))
    for language in ("en", "ja"):
        got = [[(r.feature, r.family, r.text) for r in rs] for rs in reasons_from_contributions(
            X, names, contrib, 3, language, None
        )]  # fmt: skip
        assert got == _row_by_row(X, names, contrib, 3, language, None)
        assert got[0][0][0] == "events_slope_90d_per_day"  # flat: shown
