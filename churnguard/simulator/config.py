"""Parameters of the simulated company and its calendar.

`SimulateParams` is the `simulate` section of params.yaml. The segment table and the
behavioural coefficients below are the company's "physics": they are documented in
docs/simulator.md and tuned so the realism targets hold on the default company.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field, field_validator

from churnguard.params import Section

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000


class SimulateParams(Section):
    """The `simulate` section of params.yaml."""

    accounts: int = Field(2000, ge=1)
    months: int = Field(24, ge=1)
    seed: int = 42
    dirty: bool = False
    start: str = "2024-01-01"
    events_per_user_day: float = Field(0.4, gt=0)
    oracle_paths: int = Field(256, ge=8)
    dirty_rate: float = Field(0.003, ge=0, le=0.05)
    horizon_days: int = Field(90, ge=1)
    grace_days: int = Field(30, ge=0)
    preexisting_share: float = Field(0.55, ge=0, le=1)

    @field_validator("start")
    @classmethod
    def _start_is_a_date(cls, value: str) -> str:
        try:
            np.datetime64(value, "D")
        except ValueError as exc:
            raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from exc
        return value


@dataclass(frozen=True)
class Segment:
    """Commercial shape of one customer segment."""

    name: str
    share: float
    seats_median: float
    seats_sigma: float
    price_per_seat: float
    plan: str
    monthly_share: float
    base_logit_monthly: float
    base_logit_annual: float


SEGMENTS: tuple[Segment, ...] = (
    Segment("smb", 0.62, 7.0, 0.55, 29.0, "starter", 0.72, -5.55, -3.5),
    Segment("mid_market", 0.29, 32.0, 0.5, 49.0, "business", 0.35, -5.6, -3.8),
    Segment("enterprise", 0.09, 110.0, 0.45, 75.0, "enterprise", 0.06, -5.9, -4.1),
)
ANNUAL_DISCOUNT = 0.17

COUNTRIES: tuple[tuple[str, float, float], ...] = (
    # code, share, UTC offset in hours (business-hours centre)
    ("US", 0.31, -6.0),
    ("CA", 0.05, -5.0),
    ("GB", 0.08, 0.0),
    ("DE", 0.07, 1.0),
    ("FR", 0.04, 1.0),
    ("NL", 0.03, 1.0),
    ("JP", 0.15, 9.0),
    ("CN", 0.08, 8.0),
    ("TW", 0.04, 8.0),
    ("SG", 0.03, 8.0),
    ("AU", 0.05, 10.0),
    ("IN", 0.07, 5.5),
)
LANGUAGE_BY_COUNTRY = {"JP": "ja", "CN": "zh", "TW": "zh"}

INDUSTRIES = (
    "software", "retail", "logistics", "healthcare", "financial_services", "manufacturing",
    "education", "media", "professional_services", "hospitality", "real_estate", "nonprofit",
)  # fmt: skip

CORE_EVENTS = ("login", "dashboard_viewed", "report_created", "report_viewed")
CORE_WEIGHTS = (0.34, 0.33, 0.13, 0.20)
PERIPHERAL_EVENTS = (
    "export_csv", "integration_sync", "invite_sent", "api_call", "comment_added",
    "alert_configured", "workflow_automated", "search_performed", "file_uploaded", "settings_changed",
)  # fmt: skip
PERIPHERAL_WEIGHTS = (0.12, 0.10, 0.03, 0.14, 0.16, 0.05, 0.08, 0.18, 0.09, 0.05)
EVENT_NAMES = CORE_EVENTS + PERIPHERAL_EVENTS


@dataclass(frozen=True)
class Behaviour:
    """Coefficients of the latent process and the churn decision (see docs/simulator.md)."""

    # engagement: e' = e + kappa (target - e) + sigma N(0,1) - drift z + shock
    mu_sd: float = 0.45
    kappa: float = 0.25
    sigma: float = 0.12
    drift: float = 0.4
    shock_p: float = 0.05
    avg_weight: float = 0.3  # weight of the current month in the engagement moving average
    shock_scale: float = 0.5
    onboarding_gap: float = 0.55  # engagement deficit in the first 3 months, scaled by poor onboarding
    # disengagement regime z (evaluating a competitor, budget cut, lost sponsor)
    z_base: float = -3.6
    z_champion: float = 1.3
    z_bugs: float = 0.35
    z_price: float = 0.6
    z_onboarding: float = 0.9
    z_slow: float = 0.5
    z_exit: float = 0.12
    # champion turnover
    champ_leave: float = 0.018
    champ_hire: float = 0.22
    champ_recent_months: int = 4
    # high-severity bugs: arrivals per month and monthly resolution probability
    bug_rate: float = 0.07
    # churn decision logit = base[segment, billing] + these terms
    w_engagement: float = 0.6
    w_decline: float = 3.5
    w_z: float = 0.6
    w_champion: float = 0.8
    w_bugs: float = 0.45
    w_onboarding: float = 0.9
    w_price: float = 0.5
    w_slow: float = 0.45
    onboarding_months: int = 12


BEHAVIOUR = Behaviour()


def month_starts(start: str, first: int, last: int) -> np.ndarray:
    """Month starts (int64 µs since epoch, UTC) for month indices first..last inclusive."""
    base = np.datetime64(start, "M")
    months = base + np.arange(first, last + 1)
    return months.astype("datetime64[us]").astype(np.int64)


def day_weights(day_starts_us: np.ndarray) -> np.ndarray:
    """Relative activity per calendar day: weekdays busy, weekends quiet, year-end lull."""
    days = day_starts_us // US_PER_DAY
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday -> Monday = 0
    w = np.where(weekday < 5, 1.0, np.where(weekday == 5, 0.16, 0.1))
    d = day_starts_us.astype("datetime64[us]").astype("datetime64[D]")
    md = (d - d.astype("datetime64[Y]")).astype(np.int64)  # day of year, 0-based
    year_end = md >= 357  # ~24-31 December
    new_year = md == 0
    return np.where(year_end | new_year, w * 0.4, w)
