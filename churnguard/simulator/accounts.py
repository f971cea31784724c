"""Accounts: who the customers are, their commercial terms and their latent traits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from churnguard.simulator.config import (
    ANNUAL_DISCOUNT,
    COUNTRIES,
    INDUSTRIES,
    SEGMENTS,
    US_PER_DAY,
    US_PER_HOUR,
    month_starts,
)
from churnguard.simulator.latent import Static

_NAME_A = (
    "North", "Blue", "Bright", "Silver", "Green", "Iron", "Cedar", "Harbor", "Summit", "Red",
    "Golden", "Clear", "Swift", "Polar", "Coral", "Maple", "Stone", "Sky", "River", "Nova",
    "Pine", "Crest", "Lumen", "Oak", "Vertex", "Atlas", "Delta", "Echo", "Orbit", "Sakura",
    "Kite", "Aurora", "Lotus", "Jade", "Fuji", "Everest", "Pacific", "Granite", "Willow", "Zen",
)  # fmt: skip
_NAME_B = (
    "wind", "field", "point", "gate", "bridge", "stone", "wave", "path", "line", "works",
    "light", "peak", "forge", "mark", "leaf", "port", "view", "ridge", "hub", "loop",
)  # fmt: skip
_NAME_C = (
    "Logistics", "Systems", "Labs", "Retail", "Health", "Partners", "Foods", "Analytics", "Media",
    "Holdings", "Studio", "Group", "Capital", "Networks", "Robotics", "Clinic", "Academy", "Hotels",
)  # fmt: skip


@dataclass(frozen=True)
class Accounts:
    """Static facts about every account, index-aligned arrays."""

    account_id: np.ndarray
    name: np.ndarray
    segment: np.ndarray  # index into SEGMENTS
    annual: np.ndarray  # bool: annual billing
    term_months: np.ndarray  # 1 or 12
    anchor_day: np.ndarray  # 2..28: day of month the terms start and end
    start_month: np.ndarray  # month index of the first term (negative = before the data)
    created_at: np.ndarray  # µs
    country: np.ndarray  # index into COUNTRIES
    tz_hours: np.ndarray
    industry: np.ndarray
    seats0: np.ndarray
    utilisation: np.ndarray  # share of seats with an active user
    discount: np.ndarray  # negotiated price multiplier
    static: Static

    def __len__(self) -> int:
        return len(self.account_id)

    def price_per_seat(self) -> np.ndarray:
        base = np.array([s.price_per_seat for s in SEGMENTS])[self.segment]
        return base * np.where(self.annual, 1.0 - ANNUAL_DISCOUNT, 1.0) * self.discount


def hex_ids(rng: np.random.Generator, prefix: str, n: int, digits: int) -> np.ndarray:
    """Unique random hex ids like 'acc_0001f3'."""
    space = 16**digits
    values = rng.choice(space, size=n, replace=False) if n < space // 4 else rng.permutation(space)[:n]
    return np.array([f"{prefix}{v:0{digits}x}" for v in values], dtype=object)


def draw_accounts(rng: np.random.Generator, n: int, months: int, start: str, preexisting: float) -> Accounts:
    """Draw n accounts: segment, billing, size, country, creation month and latent traits."""
    shares = np.array([s.share for s in SEGMENTS])
    segment = rng.choice(len(SEGMENTS), size=n, p=shares / shares.sum())
    monthly_share = np.array([s.monthly_share for s in SEGMENTS])[segment]
    annual = rng.random(n) >= monthly_share
    term_months = np.where(annual, 12, 1)
    anchor_day = rng.integers(2, 29, size=n)
    pre = rng.random(n) < preexisting
    last_new = max(months - 2, 0)
    start_month = np.where(pre, rng.integers(-36, 0, size=n), rng.integers(0, last_new + 1, size=n))
    ms = month_starts(start, int(start_month.min()), int(start_month.max()))
    first_day = ms[start_month - start_month.min()] + (anchor_day - 1) * US_PER_DAY
    created_at = first_day + rng.integers(8 * US_PER_HOUR, 18 * US_PER_HOUR, size=n)

    cshare = np.array([c[1] for c in COUNTRIES])
    country = rng.choice(len(COUNTRIES), size=n, p=cshare / cshare.sum())
    tz_hours = np.array([c[2] for c in COUNTRIES])[country]
    industry = np.asarray(INDUSTRIES, dtype=object)[rng.integers(0, len(INDUSTRIES), size=n)]
    med = np.array([s.seats_median for s in SEGMENTS])[segment]
    sd = np.array([s.seats_sigma for s in SEGMENTS])[segment]
    seats0 = np.maximum(1, np.round(med * np.exp(sd * rng.standard_normal(n)))).astype(np.int64)
    utilisation = rng.uniform(0.55, 0.95, size=n)
    discount = np.where(
        segment == 2, rng.uniform(0.7, 0.95, n), np.where(segment == 1, rng.uniform(0.85, 1.0, n), 1.0)
    )
    discount = np.round(discount, 2)

    names = np.array(
        [
            f"{_NAME_A[a]}{_NAME_B[b]} {_NAME_C[c]}"
            for a, b, c in zip(
                rng.integers(0, len(_NAME_A), n),
                rng.integers(0, len(_NAME_B), n),
                rng.integers(0, len(_NAME_C), n),
                strict=True,
            )
        ],
        dtype=object,
    )
    base_logit = np.where(
        annual,
        np.array([s.base_logit_annual for s in SEGMENTS])[segment],
        np.array([s.base_logit_monthly for s in SEGMENTS])[segment],
    )
    # Asian accounts are served from a thinner support queue: slower answers.
    slow_p = np.where(tz_hours >= 5, 0.45, 0.15)
    static = Static(
        mu=0.45 * rng.standard_normal(n),
        onboarding=rng.standard_normal(n),
        price_sensitivity=rng.beta(1.4, 3.0, n) + np.where(segment == 0, 0.1, 0.0),
        slow_support=(rng.random(n) < slow_p).astype(np.float64),
        bugginess=rng.lognormal(0.0, 0.6, n),
        bug_fix_p=rng.uniform(0.35, 0.9, n),
        base_logit=base_logit,
    )
    return Accounts(
        account_id=hex_ids(rng, "acc_", n, 6),
        name=names,
        segment=segment,
        annual=annual,
        term_months=term_months,
        anchor_day=anchor_day,
        start_month=start_month,
        created_at=created_at,
        country=country,
        tz_hours=tz_hours,
        industry=industry,
        seats0=seats0,
        utilisation=utilisation,
        discount=discount,
        static=static,
    )


def accounts_frame(acc: Accounts) -> pd.DataFrame:
    """The accounts table of the data contract."""
    return pd.DataFrame(
        {
            "account_id": acc.account_id.astype(str),
            "created_at": pd.to_datetime(acc.created_at, unit="us", utc=True),
            "name": acc.name.astype(str),
            "segment": np.asarray([s.name for s in SEGMENTS], dtype=object)[acc.segment].astype(str),
            "industry": acc.industry.astype(str),
            "country": np.asarray([c[0] for c in COUNTRIES], dtype=object)[acc.country].astype(str),
        }
    )


def term_end(start: str, month_index: np.ndarray, anchor_day: np.ndarray) -> np.ndarray:
    """µs timestamp of the anchor day (00:00 UTC) in the given month indices."""
    base = np.datetime64(start, "M")
    months = (base + month_index.astype(np.int64)).astype("datetime64[us]").astype(np.int64)
    return months + (anchor_day.astype(np.int64) - 1) * US_PER_DAY
