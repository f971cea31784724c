"""Snapshot calendar, eligibility, churn labels and censoring (pure functions).

Time convention (docs/features.md): a snapshot at t is taken at 00:00 of its day and
knows facts with a timestamp `< t`. Everything at or after t is the future of t, so the
label window of a snapshot is the half-open interval [t + lead, t + lead + horizon):
the facts that become known between the snapshot and the end of the horizon.

Churn definitions:
- contract: terms are merged into spells (a term starting within `grace_days` of the
  spell's end continues it); a spell's end is a churn once `grace_days` have passed with
  no new term. Eligible at t: a term known at t (start < t) covers t (t <= end).
- activity: eligible at t when the account has activity in [t - active_days, t);
  churned when it has no activity in the label window.

A row's label is observable only when the data reach far enough past the window for the
outcome to be known: window end (+ grace for contracts) <= data_end. Unobservable rows
keep NaN labels and serve only scoring.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from churnguard.errors import InputError
from churnguard.params import Section

DAY = pd.Timedelta(days=1)

SNAPSHOT_COLUMNS = [
    "account_id",
    "snapshot_date",
    "label",
    "label_observable",
    "churn_date",
    "mrr",
    "arr",
    "segment",
    "billing_period",
    "seats",
    "renewal_date",
    "days_to_renewal",
    "is_scoring_date",
]


class SnapshotParams(Section):
    """params.yaml `snapshots` section."""

    freq: Literal["monthly", "weekly", "daily"] = "monthly"
    start: str | None = None
    warmup_days: int = 90
    definition: Literal["contract", "activity"] = "contract"
    horizon_days: int = 90
    grace_days: int = 30
    active_days: int = 30
    lead_days: int = 0


def scoring_date(data_end: pd.Timestamp) -> pd.Timestamp:
    """The scoring snapshot: the midnight after the data's end, so it sees every fact."""
    return pd.Timestamp(data_end).normalize() + DAY


def _align(ts: pd.Timestamp, freq: str) -> pd.Timestamp:
    """The first calendar boundary at or after `ts`."""
    ts = pd.Timestamp(ts)
    day = ts.normalize()
    if day < ts:
        day += DAY
    if freq == "daily":
        return day
    if freq == "weekly":  # Mondays
        return day + pd.Timedelta(days=(7 - day.dayofweek) % 7)
    if day.day == 1:
        return day
    return (day + pd.offsets.MonthBegin(1)).normalize()


def make_calendar(
    data_start: pd.Timestamp, data_end: pd.Timestamp, params: SnapshotParams
) -> pd.DatetimeIndex:
    """Snapshot dates: the regular calendar from the first date, then the scoring date.

    The first date is `params.start` or the first boundary after data_start + warmup.
    Monthly = 1st of each month, weekly = Mondays, daily = every day; the last date is
    always `scoring_date(data_end)` (merged with a calendar date when they coincide).
    """
    last = scoring_date(data_end)
    if params.start is not None:
        first = _align(pd.Timestamp(params.start), params.freq)
    else:
        first = _align(pd.Timestamp(data_start) + pd.Timedelta(days=params.warmup_days), params.freq)
    step = {"monthly": "MS", "weekly": "W-MON", "daily": "D"}[params.freq]
    regular = pd.date_range(first, last, freq=step) if first <= last else pd.DatetimeIndex([])
    dates = regular.union(pd.DatetimeIndex([last]))
    return pd.DatetimeIndex(dates[dates <= last].astype("datetime64[us]"))


def contract_spells(subscriptions: pd.DataFrame, grace_days: int) -> pd.DataFrame:
    """Merge each account's terms into spells of continuous paid coverage.

    A term starting no later than `grace_days` after the running end of the spell so far
    continues it. Returns account_id, spell_start, spell_end, next_start (the start of the
    account's next spell, NaT when none).
    """
    subs = subscriptions[["account_id", "start_date", "end_date"]].sort_values(["account_id", "start_date"])
    grace = pd.Timedelta(days=grace_days)
    running_end = subs.groupby("account_id", sort=False)["end_date"].cummax()
    prev_end = running_end.groupby(subs["account_id"], sort=False).shift(1)
    new_spell = prev_end.isna() | (subs["start_date"] > prev_end + grace)
    spell_no = new_spell.astype(int).groupby(subs["account_id"], sort=False).cumsum()
    spells = (
        subs.assign(spell=spell_no.to_numpy())
        .groupby(["account_id", "spell"], sort=True)
        .agg(spell_start=("start_date", "min"), spell_end=("end_date", "max"))
        .reset_index()
    )
    spells["next_start"] = spells.groupby("account_id")["spell_start"].shift(-1)
    return spells.drop(columns="spell")


def contract_churn_dates(
    subscriptions: pd.DataFrame, grace_days: int, data_end: pd.Timestamp
) -> pd.DataFrame:
    """Confirmed churns: spell ends with no new term within `grace_days`, grace elapsed by data_end.

    Returns account_id, churn_date (one row per churn; an account that comes back later
    can churn again).
    """
    spells = contract_spells(subscriptions, grace_days)
    grace = pd.Timedelta(days=grace_days)
    confirmed = spells["next_start"].notna() | (spells["spell_end"] + grace <= pd.Timestamp(data_end))
    out = spells.loc[confirmed, ["account_id", "spell_end"]].rename(columns={"spell_end": "churn_date"})
    return out.reset_index(drop=True)


def active_terms_at(subscriptions: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """For each date t, each account's term known at t (start < t) covering t (t <= end).

    When several overlap, the one that started last wins. Returns account_id,
    snapshot_date and the term's columns.
    """
    subs = subscriptions.sort_values(["account_id", "start_date"]).reset_index(drop=True)
    parts = []
    for t in dates:
        # One vectorised filter per snapshot date over the (small) subscriptions table.
        known = subs[(subs["start_date"] < t) & (subs["end_date"] >= t)]
        if known.empty:
            continue
        last = known.drop_duplicates("account_id", keep="last").assign(snapshot_date=t)
        parts.append(last)
    if not parts:
        return subs.iloc[0:0].assign(snapshot_date=pd.Series(dtype="datetime64[us]"))
    return pd.concat(parts, ignore_index=True)


def term_facts(subscriptions: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """MRR, ARR, billing period, seats and renewal date of the term covering each t."""
    terms = active_terms_at(subscriptions, dates)
    nan = pd.Series(np.nan, index=terms.index)
    rows = pd.DataFrame(
        {
            "account_id": terms["account_id"],
            "snapshot_date": terms["snapshot_date"],
            "mrr": terms["mrr"].astype(float),
            "arr": terms["mrr"].astype(float) * 12.0,
            "billing_period": terms.get("billing_period", nan),
            "seats": terms["seats"].astype(float) if "seats" in terms else nan,
            "renewal_date": terms["end_date"],
        }
    )
    rows["days_to_renewal"] = (rows["renewal_date"] - rows["snapshot_date"]).dt.days.astype(float)
    return rows


def _attach_labels(
    rows: pd.DataFrame, churns: pd.DataFrame, lead: pd.Timedelta, horizon: pd.Timedelta
) -> pd.DataFrame:
    """churn_date = the first confirmed churn in [t + lead, t + lead + horizon), else NaT."""
    pairs = rows[["account_id", "snapshot_date"]].merge(churns, on="account_id", how="inner")
    in_window = (pairs["churn_date"] >= pairs["snapshot_date"] + lead) & (
        pairs["churn_date"] < pairs["snapshot_date"] + lead + horizon
    )
    first = pairs[in_window].groupby(["account_id", "snapshot_date"], as_index=False)["churn_date"].min()
    return rows.merge(first, on=["account_id", "snapshot_date"], how="left")


def _finish(rows: pd.DataFrame, observable: pd.Series, last: pd.Timestamp) -> pd.DataFrame:
    out = rows.copy()
    out["label_observable"] = observable.to_numpy(dtype=bool)
    out["label"] = np.where(out["churn_date"].notna(), 1.0, 0.0)
    out.loc[~out["label_observable"], "label"] = np.nan
    out["is_scoring_date"] = out["snapshot_date"] == last
    for col in SNAPSHOT_COLUMNS:
        if col not in out.columns:
            out[col] = np.nan
    for col in ("snapshot_date", "churn_date", "renewal_date"):
        out[col] = pd.to_datetime(out[col]).astype("datetime64[us]")
    out["account_id"] = out["account_id"].astype("string")
    out = out[SNAPSHOT_COLUMNS].sort_values(["snapshot_date", "account_id"]).reset_index(drop=True)
    return out


def build_contract_snapshots(
    accounts: pd.DataFrame,
    subscriptions: pd.DataFrame | None,
    dates: pd.DatetimeIndex,
    data_end: pd.Timestamp,
    params: SnapshotParams,
) -> pd.DataFrame:
    """Snapshot rows under the contract definition (needs the subscriptions table)."""
    if subscriptions is None:
        raise InputError(
            "snapshots.definition: 'contract' needs the subscriptions table, which is absent "
            "from the validated folder; use `definition: activity` in params.yaml"
        )
    lead = pd.Timedelta(days=params.lead_days)
    horizon = pd.Timedelta(days=params.horizon_days)
    grace = pd.Timedelta(days=params.grace_days)
    rows = _with_segment(term_facts(subscriptions, dates), accounts)
    churns = contract_churn_dates(subscriptions, params.grace_days, data_end)
    rows = _attach_labels(rows, churns, lead, horizon)
    observable = rows["snapshot_date"] + lead + horizon + grace <= pd.Timestamp(data_end)
    return _finish(rows, observable, dates.max())


def _with_segment(rows: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    seg = accounts[["account_id"]].copy()
    seg["segment"] = accounts.get("segment", pd.NA)
    return rows.merge(seg, on="account_id", how="left")


def _count_days_in(keys: np.ndarray, codes: np.ndarray, lo: pd.Series, hi: pd.Series) -> np.ndarray:
    """Number of activity days with key in [code*K + lo, code*K + hi) via binary search."""
    lo_k = codes * _K + _day_number(lo)
    hi_k = codes * _K + _day_number(hi)
    return np.searchsorted(keys, hi_k, side="left") - np.searchsorted(keys, lo_k, side="left")


_K = np.int64(10_000_000)


def _day_number(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    ts = pd.to_datetime(values).astype("datetime64[s]")
    return np.asarray(ts.to_numpy().astype("datetime64[D]").astype(np.int64), dtype=np.int64)


def build_activity_snapshots(
    accounts: pd.DataFrame,
    activity_days: pd.DataFrame,
    subscriptions: pd.DataFrame | None,
    dates: pd.DatetimeIndex,
    data_end: pd.Timestamp,
    params: SnapshotParams,
) -> pd.DataFrame:
    """Snapshot rows under the activity definition.

    `activity_days` holds one row per (account_id, day) with any usage (day = midnight).
    Contract facts (mrr, renewal date) are attached when subscriptions exist.
    """
    lead = pd.Timedelta(days=params.lead_days)
    horizon = pd.Timedelta(days=params.horizon_days)
    active = pd.Timedelta(days=params.active_days)
    ids = pd.Index(sorted(set(accounts["account_id"]) | set(activity_days["account_id"])))
    codes_days = ids.get_indexer(activity_days["account_id"]).astype(np.int64)
    keys = np.sort(codes_days * _K + _day_number(activity_days["day"]))
    grid = pd.DataFrame(
        {
            "account_id": np.repeat(ids.to_numpy(), len(dates)),
            "snapshot_date": np.tile(dates.to_numpy(), len(ids)),
        }
    )
    codes = np.repeat(np.arange(len(ids), dtype=np.int64), len(dates))
    t = grid["snapshot_date"]
    eligible = _count_days_in(keys, codes, t - active, t) > 0
    rows = grid[eligible].reset_index(drop=True)
    codes = codes[eligible]
    t = rows["snapshot_date"]
    in_window = _count_days_in(keys, codes, t + lead, t + lead + horizon)
    # Churn date = the day the silence began: the day after the last activity before the window.
    before = np.searchsorted(keys, codes * _K + _day_number(t + lead), side="left") - 1
    last_day = (keys[before] - codes * _K).astype("datetime64[D]").astype("datetime64[us]")
    rows["churn_date"] = pd.Series(last_day, index=rows.index) + DAY
    rows.loc[in_window > 0, "churn_date"] = pd.NaT
    rows = _with_segment(rows, accounts)
    if subscriptions is not None:
        rows = rows.merge(term_facts(subscriptions, dates), on=["account_id", "snapshot_date"], how="left")
    observable = rows["snapshot_date"] + lead + horizon <= pd.Timestamp(data_end)
    return _finish(rows, observable, dates.max())


def build_snapshots(
    accounts: pd.DataFrame,
    subscriptions: pd.DataFrame | None,
    activity_days: pd.DataFrame | None,
    data_start: pd.Timestamp,
    data_end: pd.Timestamp,
    params: SnapshotParams,
) -> pd.DataFrame:
    """All snapshot rows with labels, per the definition in `params`."""
    dates = make_calendar(data_start, data_end, params)
    if params.definition == "contract":
        return build_contract_snapshots(accounts, subscriptions, dates, data_end, params)
    if activity_days is None:
        raise InputError("snapshots.definition: 'activity' needs the usage_events table")
    return build_activity_snapshots(accounts, activity_days, subscriptions, dates, data_end, params)
