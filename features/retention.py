"""Retention metrics a CS leader reports: logo and revenue retention, renewals, cohorts, CLV.

Pure functions over the clean tables (docs/retention.md defines every metric). Under the
`contract` definition an account is a customer while it is inside a *spell*: a run of
subscription terms where each term starts no later than `grace_days` after the latest end
so far. A spell ends (the account churns) on the end date of its last term. Periods are
calendar months; a month is reported only once it is *final*: its end plus `grace_days`
is on or before the data's end, so every churn and renewal in it is known.

Under the `activity` definition there are no contracts: the customers at a date are the
accounts in the snapshot table at that date, so only logo metrics are available.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.snapshots import contract_churn_dates, contract_spells

METRIC_NAMES: tuple[str, ...] = (
    "logo_retention_rate",
    "renewal_rate",
    "gross_revenue_retention",
    "net_revenue_retention",
    "logo_churn_rate",
    "mrr_churn_rate",
)
REVENUE_METRICS: tuple[str, ...] = ("gross_revenue_retention", "net_revenue_retention", "mrr_churn_rate")
UNKNOWN_SEGMENT = "unknown"

_COUNT_COLUMNS: tuple[str, ...] = (
    "customers_start",
    "customers_end",
    "retained_logos",
    "churned_logos",
    "new_logos",
    "reactivated_logos",
    "mrr_start",
    "mrr_end",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "new_mrr",
)


@dataclass(frozen=True)
class RetentionResult:
    """All retention tables. Count columns plus the rates of `METRIC_NAMES`."""

    definition: str
    by_month: pd.DataFrame  # index period (Timestamp, month start)
    by_segment_month: pd.DataFrame  # index (segment, period)
    overall: dict[str, float | None]
    overall_by_segment: dict[str, dict[str, float | None]]
    cohorts_logo: pd.DataFrame  # index cohort month, columns age in months
    cohorts_revenue: pd.DataFrame
    cohort_sizes: pd.Series
    renewals_by_billing: pd.DataFrame = field(default_factory=pd.DataFrame)


def _month_start(ts: pd.Series | pd.DatetimeIndex) -> pd.Series:
    return pd.Series(ts).dt.to_period("M").dt.to_timestamp().astype("datetime64[us]")


def build_spells(subscriptions: pd.DataFrame, grace_days: int) -> pd.DataFrame:
    """Merge each account's terms into spells of continuous custom (gaps <= grace_days bridged).

    The same spells the snapshot labels use (`features.snapshots.contract_spells`), so the
    report's churns are the labels' churns. Returns account_id, start, end.
    """
    terms = subscriptions[["account_id", "start_date", "end_date"]].dropna()
    if terms.empty:
        return pd.DataFrame(
            {
                "account_id": pd.Series(dtype="str"),
                "start": pd.Series(dtype="datetime64[us]"),
                "end": pd.Series(dtype="datetime64[us]"),
            }
        )
    spells = contract_spells(terms, grace_days)
    return spells.rename(columns={"spell_start": "start", "spell_end": "end"})[["account_id", "start", "end"]]


def derive_churn_events(subscriptions: pd.DataFrame, grace_days: int, data_end: pd.Timestamp) -> pd.DataFrame:
    """Churns under the contract definition (`features.snapshots.contract_churn_dates`), sorted."""
    terms = subscriptions[["account_id", "start_date", "end_date"]].dropna()
    out = contract_churn_dates(terms, grace_days, pd.Timestamp(data_end))
    return out.sort_values(["churn_date", "account_id"]).reset_index(drop=True)


def account_state_at(
    subscriptions: pd.DataFrame, spells: pd.DataFrame, queries: pd.DataFrame
) -> pd.DataFrame:
    """For each (account_id, at) query: whether the account is a customer at `at`, and its MRR.

    MRR at `at` is the sum over terms covering it (start_date <= at < end_date); inside a
    bridged gap between terms it is the MRR of the latest-ended term(s).
    """
    q = queries[["account_id", "at"]].reset_index(drop=True)
    q = q.assign(_q=np.arange(len(q)))
    js = q.merge(spells, on="account_id")
    covered = js.loc[(js["start"] <= js["at"]) & (js["at"] < js["end"]), "_q"].unique()
    active = np.zeros(len(q), dtype=bool)
    active[covered] = True

    jt = q.merge(subscriptions[["account_id", "start_date", "end_date", "mrr"]], on="account_id")
    cover = jt[(jt["start_date"] <= jt["at"]) & (jt["at"] < jt["end_date"])]
    mrr_cover = cover.groupby("_q")["mrr"].sum()
    ended = jt[jt["end_date"] <= jt["at"]]
    last_end = ended.groupby("_q")["end_date"].transform("max")
    mrr_last = ended[ended["end_date"] == last_end].groupby("_q")["mrr"].sum()
    idx = pd.RangeIndex(len(q))
    has_cover = idx.isin(mrr_cover.index)
    mrr = np.where(
        has_cover,
        mrr_cover.reindex(idx).to_numpy(dtype=float, na_value=0.0),
        mrr_last.reindex(idx).to_numpy(dtype=float, na_value=0.0),
    )
    mrr = np.where(active, mrr, 0.0)
    return queries.reset_index(drop=True).assign(active=active, mrr=mrr)


def final_months(
    first: pd.Timestamp, data_end: pd.Timestamp, grace_days: int, window_start: pd.Timestamp | None = None
) -> pd.DatetimeIndex:
    """Month starts from `first` (not before window_start's month) whose end + grace_days <= data_end."""
    if window_start is not None:
        first = max(pd.Timestamp(first), pd.Timestamp(window_start))
    start = pd.Timestamp(first).to_period("M").to_timestamp()
    last_allowed_end = pd.Timestamp(data_end) - pd.Timedelta(days=grace_days)
    months = pd.date_range(start, last_allowed_end, freq="MS")
    months = months[months + pd.offsets.MonthBegin(1) <= last_allowed_end]
    return pd.DatetimeIndex(months.astype("datetime64[us]"))


def _segments(accounts: pd.DataFrame | None, ids: pd.Series) -> pd.Series:
    """Segment per account id (lower-case string; 'unknown' when absent)."""
    if accounts is None or "segment" not in accounts.columns:
        return pd.Series(UNKNOWN_SEGMENT, index=ids.index, dtype="str")
    seg = accounts.drop_duplicates("account_id").set_index("account_id")["segment"]
    return ids.map(seg).fillna(UNKNOWN_SEGMENT).astype("str")


def build_movements(
    subscriptions: pd.DataFrame,
    accounts: pd.DataFrame | None,
    grace_days: int,
    data_end: pd.Timestamp,
    window_start: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per (account, final month) where the account is a customer at the start or end.

    Columns: account_id, segment, period, active_start, active_end, mrr_start, mrr_end, reactivation.
    """
    spells = build_spells(subscriptions, grace_days)
    empty = pd.DataFrame(
        columns=[
            "account_id",
            "segment",
            "period",
            "active_start",
            "active_end",
            "mrr_start",
            "mrr_end",
            "reactivation",
        ]
    )
    if spells.empty:
        return empty
    months = final_months(spells["start"].min(), data_end, grace_days, window_start)
    if len(months) == 0:
        return empty
    bounds = months.append(pd.DatetimeIndex([months[-1] + pd.offsets.MonthBegin(1)]).astype("datetime64[us]"))
    ids = pd.Series(spells["account_id"].unique(), dtype="str")
    queries = pd.MultiIndex.from_product([ids, bounds], names=["account_id", "at"]).to_frame(index=False)
    state = account_state_at(subscriptions, spells, queries)
    st = state.rename(columns={"at": "period", "active": "active_start", "mrr": "mrr_start"})
    en = state.assign(at=state["at"] - pd.offsets.MonthBegin(1)).rename(
        columns={"at": "period", "active": "active_end", "mrr": "mrr_end"}
    )
    mv = st.merge(en, on=["account_id", "period"], how="inner")
    mv = mv[mv["period"].isin(months) & (mv["active_start"] | mv["active_end"])].reset_index(drop=True)
    first_start = spells.groupby("account_id")["start"].min()
    mv["reactivation"] = (
        (~mv["active_start"]) & mv["active_end"] & (mv["account_id"].map(first_start) < mv["period"])
    )
    mv["segment"] = _segments(accounts, mv["account_id"])
    mv["period"] = mv["period"].astype("datetime64[us]")
    return mv[empty.columns.tolist()]


def _count_movements(mv: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    s, e = mv["active_start"].astype(bool), mv["active_end"].astype(bool)
    retained, churned, new = s & e, s & ~e, ~s & e
    delta = mv["mrr_end"] - mv["mrr_start"]
    counts = pd.DataFrame(
        {
            **{k: mv[k] for k in keys},
            "customers_start": s.astype(int),
            "customers_end": e.astype(int),
            "retained_logos": retained.astype(int),
            "churned_logos": churned.astype(int),
            "new_logos": new.astype(int),
            "reactivated_logos": (new & mv["reactivation"].astype(bool)).astype(int),
            "mrr_start": np.where(s, mv["mrr_start"], 0.0),
            "mrr_end": np.where(e, mv["mrr_end"], 0.0),
            "expansion_mrr": np.where(retained, delta.clip(lower=0), 0.0),
            "contraction_mrr": np.where(retained, (-delta).clip(lower=0), 0.0),
            "churned_mrr": np.where(churned, mv["mrr_start"], 0.0),
            "new_mrr": np.where(new, mv["mrr_end"], 0.0),
        }
    )
    return counts.groupby(keys, sort=True).sum()


def _ratio(num: pd.Series | float, den: pd.Series | float) -> pd.Series | float:
    if isinstance(den, pd.Series):
        return (num / den.where(den > 0)).astype(float)
    n, d = float(num), float(den)  # type: ignore[arg-type]
    return n / d if d > 0 else float("nan")


def add_rates(counts: pd.DataFrame) -> pd.DataFrame:
    """Rates from summed counts (so pooled rates over any grouping come from the same formula)."""
    c = counts
    out = c.copy()
    if "customers_start" in c.columns:
        out["logo_retention_rate"] = _ratio(c["customers_end"] - c["new_logos"], c["customers_start"])
        out["logo_churn_rate"] = _ratio(c["churned_logos"], c["customers_start"])
    if "mrr_start" in c.columns:
        lost = c["contraction_mrr"] + c["churned_mrr"]
        out["gross_revenue_retention"] = _ratio(c["mrr_start"] - lost, c["mrr_start"])
        out["net_revenue_retention"] = _ratio(c["mrr_start"] + c["expansion_mrr"] - lost, c["mrr_start"])
        out["mrr_churn_rate"] = _ratio(c["churned_mrr"], c["mrr_start"])
    else:
        for name in REVENUE_METRICS:
            out[name] = np.nan
    if "terms_up_for_renewal" in c.columns:
        out["renewal_rate"] = _ratio(c["terms_renewed"], c["terms_up_for_renewal"])
    else:
        out["renewal_rate"] = np.nan
    return out


def annualise(monthly_rate: float) -> float:
    """Annual churn from a monthly rate, compounding: 1 - (1 - m)^12."""
    if monthly_rate is None or not np.isfinite(monthly_rate):
        return float("nan")
    return float(1.0 - (1.0 - monthly_rate) ** 12)


def build_renewals(
    subscriptions: pd.DataFrame,
    accounts: pd.DataFrame | None,
    grace_days: int,
    data_end: pd.Timestamp,
    window_start: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Each term whose end_date falls in a final month, and whether it was renewed.

    A term T is renewed when another term S of the same account starts in
    (T.start_date, T.end_date + grace_days] and ends after T.end_date (a renewal, an
    early renewal, or an upgrade that replaces the term).
    """
    cols = ["account_id", "subscription_id", "start_date", "end_date"]
    terms = subscriptions[cols + (["billing_period"] if "billing_period" in subscriptions else [])]
    terms = terms.dropna(subset=["start_date", "end_date"]).reset_index(drop=True)
    if terms.empty:
        return terms.assign(period=pd.Series(dtype="datetime64[us]"), renewed=pd.Series(dtype=bool))
    months = final_months(terms["start_date"].min(), data_end, grace_days, window_start)
    period = _month_start(terms["end_date"])
    up = terms[period.isin(months).to_numpy()].assign(period=period[period.isin(months)].to_numpy())
    up = up.reset_index(drop=True).assign(_t=lambda d: np.arange(len(d)))
    pairs = up[["_t", "account_id", "subscription_id", "start_date", "end_date"]].merge(
        terms[["account_id", "subscription_id", "start_date", "end_date"]],
        on="account_id",
        suffixes=("", "_next"),
    )
    grace = pd.Timedelta(days=grace_days)
    ok = (
        (pairs["subscription_id_next"] != pairs["subscription_id"])
        & (pairs["start_date_next"] > pairs["start_date"])
        & (pairs["start_date_next"] <= pairs["end_date"] + grace)
        & (pairs["end_date_next"] > pairs["end_date"])
    )
    renewed_ids = pairs.loc[ok, "_t"].unique()
    up["renewed"] = up["_t"].isin(renewed_ids)
    up["segment"] = _segments(accounts, up["account_id"])
    if "billing_period" not in up.columns:
        up["billing_period"] = "unknown"
    up["billing_period"] = up["billing_period"].fillna("unknown").astype("str")
    return up.drop(columns="_t")


def _count_renewals(renewals: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = renewals.assign(terms_up_for_renewal=1, terms_renewed=renewals["renewed"].astype(int))
    return g.groupby(keys, sort=True)[["terms_up_for_renewal", "terms_renewed"]].sum()


def cohort_retention(
    subscriptions: pd.DataFrame,
    grace_days: int,
    data_end: pd.Timestamp,
    max_age_months: int = 24,
    window_start: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Cohort curves by start month (month of an account's first term).

    Age k is measured at the end of the k-th calendar month after the start month (k = 0:
    end of the start month). Logo: share of the cohort that is a customer then (returned
    customers count). Revenue: their MRR then / the cohort's MRR on each account's first day.
    Cells whose date + grace_days is after data_end are NaN (not yet known).
    """
    spells = build_spells(subscriptions, grace_days)
    if spells.empty:
        empty = pd.DataFrame()
        return empty, empty, pd.Series(dtype=int)
    first = spells.groupby("account_id")["start"].min().rename("at").reset_index()
    if window_start is not None:  # cohorts that started before the window are survivors only
        first = first[first["at"] >= pd.Timestamp(window_start).to_period("M").to_timestamp()]
        first = first.reset_index(drop=True)
        if first.empty:
            return pd.DataFrame(), pd.DataFrame(), pd.Series(dtype=int)
    initial = account_state_at(subscriptions, spells, first)
    cohort = _month_start(first["at"])
    ages = np.arange(max_age_months + 1)
    q = pd.DataFrame(
        {
            "account_id": np.repeat(first["account_id"].to_numpy(), len(ages)),
            "cohort": np.repeat(cohort.to_numpy(), len(ages)),
            "age": np.tile(ages, len(first)),
        }
    )
    q["at"] = (
        (q["cohort"].dt.to_period("M") + (q["age"] + 1).to_numpy()).dt.to_timestamp().astype("datetime64[us]")
    )
    q = q[q["at"] + pd.Timedelta(days=grace_days) <= data_end]
    state = account_state_at(subscriptions, spells, q)
    state["mrr0"] = state["account_id"].map(initial.set_index("account_id")["mrr"])
    g = state.groupby(["cohort", "age"]).agg(
        n=("active", "size"), active=("active", "sum"), mrr=("mrr", "sum"), mrr0=("mrr0", "sum")
    )
    logo = (g["active"] / g["n"]).unstack("age")
    revenue = (g["mrr"] / g["mrr0"].where(g["mrr0"] > 0)).unstack("age")
    sizes = cohort.value_counts().sort_index().rename("accounts")
    sizes.index = pd.DatetimeIndex(sizes.index).rename("cohort")
    return logo, revenue, sizes


def _overall(counts: pd.DataFrame) -> dict[str, float | None]:
    total = add_rates(counts.sum().to_frame().T).iloc[0]
    out: dict[str, float | None] = {name: _clean(total[name]) for name in METRIC_NAMES}
    out["annualised_logo_churn_rate"] = _clean(annualise(total["logo_churn_rate"]))
    mrr_churn = total.get("mrr_churn_rate", np.nan)
    out["annualised_mrr_churn_rate"] = _clean(annualise(mrr_churn))
    out["months"] = len(counts)
    return out


def _clean(value: object) -> float | None:
    """A JSON-safe float: None for NaN / missing."""
    if value is None:
        return None
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def compute_contract_retention(
    subscriptions: pd.DataFrame,
    accounts: pd.DataFrame | None,
    grace_days: int,
    data_end: pd.Timestamp,
    max_cohort_age: int = 24,
    window_start: pd.Timestamp | None = None,
) -> RetentionResult:
    """All retention metrics from subscriptions (contract definition).

    `window_start`: the first month reported (and the first cohort). Subscriptions often
    reach back further than the rest of the data, but only for accounts that survived
    until the export began; months before it would overstate retention.
    """
    data_end = pd.Timestamp(data_end)
    mv = build_movements(subscriptions, accounts, grace_days, data_end, window_start)
    ren = build_renewals(subscriptions, accounts, grace_days, data_end, window_start)
    by_month = _count_movements(mv, ["period"]).join(_count_renewals(ren, ["period"]), how="left")
    by_seg = _count_movements(mv, ["segment", "period"]).join(
        _count_renewals(ren, ["segment", "period"]), how="left"
    )
    for frame in (by_month, by_seg):
        terms = ["terms_up_for_renewal", "terms_renewed"]
        frame[terms] = frame[terms].fillna(0).astype(int)
    overall_by_segment = {str(seg): _overall(part) for seg, part in by_seg.groupby(level="segment")}
    logo, revenue, sizes = cohort_retention(subscriptions, grace_days, data_end, max_cohort_age, window_start)
    by_billing = add_rates(_count_renewals(ren, ["billing_period"])) if len(ren) else pd.DataFrame()
    return RetentionResult(
        definition="contract",
        by_month=add_rates(by_month),
        by_segment_month=add_rates(by_seg),
        overall=_overall(by_month),
        overall_by_segment=overall_by_segment,
        cohorts_logo=logo,
        cohorts_revenue=revenue,
        cohort_sizes=sizes,
        renewals_by_billing=by_billing[["terms_up_for_renewal", "terms_renewed", "renewal_rate"]]
        if len(by_billing)
        else by_billing,
    )


def compute_activity_retention(
    snapshots: pd.DataFrame, accounts: pd.DataFrame | None = None
) -> RetentionResult:
    """Logo metrics under the activity definition: customers at t = accounts in the snapshot at t.

    Periods run between consecutive snapshot dates; revenue metrics and renewals are
    unavailable (NaN / None).
    """
    snaps = snapshots[["account_id", "snapshot_date"]].drop_duplicates()
    if "segment" in snapshots.columns:
        seg_snap = snapshots.sort_values("snapshot_date").drop_duplicates("account_id", keep="last")
        seg_frame: pd.DataFrame | None = seg_snap[["account_id", "segment"]]
    else:
        seg_frame = accounts
    dates = np.sort(snaps["snapshot_date"].unique())
    rows = []
    first_seen = snaps.groupby("account_id")["snapshot_date"].min()
    members = {d: set(snaps.loc[snaps["snapshot_date"] == d, "account_id"]) for d in dates}
    for start, end in itertools.pairwise(dates):
        s, e = members[start], members[end]
        for acc in s | e:
            rows.append((acc, pd.Timestamp(start), acc in s, acc in e, first_seen[acc] < start))
    mv = pd.DataFrame(rows, columns=["account_id", "period", "active_start", "active_end", "reactivation"])
    mv["segment"] = _segments(seg_frame, mv["account_id"]) if len(mv) else pd.Series(dtype="str")
    mv["mrr_start"] = 0.0
    mv["mrr_end"] = 0.0
    logo_cols = [c for c in _COUNT_COLUMNS if not c.endswith("_mrr") and not c.startswith("mrr")]
    by_month = _count_movements(mv, ["period"])[logo_cols]
    by_seg = _count_movements(mv, ["segment", "period"])[logo_cols]
    return RetentionResult(
        definition="activity",
        by_month=add_rates(by_month),
        by_segment_month=add_rates(by_seg),
        overall=_overall(by_month),
        overall_by_segment={str(s): _overall(p) for s, p in by_seg.groupby(level="segment")},
        cohorts_logo=pd.DataFrame(),
        cohorts_revenue=pd.DataFrame(),
        cohort_sizes=pd.Series(dtype=int),
    )


def customer_lifetime_value(
    subscriptions: pd.DataFrame,
    accounts: pd.DataFrame | None,
    result: RetentionResult,
    grace_days: int,
    data_end: pd.Timestamp,
    acquisition_cost: float | dict[str, float] | None = None,
    max_lifetime_years: float = 10.0,
) -> pd.DataFrame:
    """CLV per segment = ARR per customer x expected lifetime - acquisition cost.

    ARR per customer: mean 12 x MRR of the customers at the end of the last final month.
    Expected lifetime (years) = 1 / annualised logo churn of the segment, capped at
    `max_lifetime_years` (also used when no churn was observed).
    """
    if result.by_month.empty:
        return pd.DataFrame()
    at = result.by_month.index.max() + pd.offsets.MonthBegin(1)
    spells = build_spells(subscriptions, grace_days)
    ids = pd.Series(spells["account_id"].unique(), dtype="str")
    state = account_state_at(subscriptions, spells, pd.DataFrame({"account_id": ids, "at": at}))
    state = state[state["active"]].assign(segment=lambda d: _segments(accounts, d["account_id"]))
    groups = [("all", state), *((str(s), p) for s, p in state.groupby("segment"))]
    rows = []
    for seg, part in groups:
        overall = result.overall if seg == "all" else result.overall_by_segment.get(seg, {})
        annual = overall.get("annualised_logo_churn_rate")
        lifetime = max_lifetime_years if not annual or annual <= 0 else min(1.0 / annual, max_lifetime_years)
        if isinstance(acquisition_cost, dict):
            cac = float(acquisition_cost.get(seg, acquisition_cost.get("all", 0.0)))
        else:
            cac = float(acquisition_cost or 0.0)
        arr = float(12.0 * part["mrr"].mean()) if len(part) else float("nan")
        rows.append(
            {
                "segment": seg,
                "customers": len(part),
                "arr_per_customer": arr,
                "annualised_logo_churn_rate": annual,
                "expected_lifetime_years": lifetime,
                "acquisition_cost": cac,
                "clv": arr * lifetime - cac,
            }
        )
    return pd.DataFrame(rows).set_index("segment")
