"""Train / validation / test split by snapshot date, never at random.

Over the *labelled* snapshot dates (rows with `label_observable`), latest first:
test = the labelled dates in the last `test_months` calendar months; then an
**embargo**: the dates before the test months whose label window reaches into them
(t + `embargo_days` > first test date, `embargo_days` = snapshots.lead_days +
horizon_days); valid = the dates in the `valid_months` calendar months before the
embargo; train = the rest. With a monthly calendar and no embargo this is exactly "the
last N labelled snapshot dates"; with weekly or daily calendars the months still mean
calendar months.

Why the embargo: a row at t is labelled by churn in [t + lead_days, t + lead_days +
horizon_days), so the last months before the test months are labelled by churn events
that happen *in* the test months, the same events the test rows are labelled by.
Embargoed rows are never fitted, early-stopped on, searched on or calibrated on.
Between train and valid the same overlap exists; `purge_overlapping` drops those train
rows from fitting (purging, as for any overlapping-label time series split).

The features stage uses `train_cutoff` (the first validation snapshot date) to fit its
only learnt parts (no churn labels) on data before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from churnguard.errors import InputError
from churnguard.params import Section


class SplitParams(Section):
    """params.yaml `split` section."""

    test_months: int = 6
    valid_months: int = 3


TRAIN = "train"
VALID = "valid"
EMBARGO = "embargo"
TEST = "test"


def _month_periods(dates: pd.Series) -> pd.Series:
    return pd.to_datetime(dates).dt.to_period("M")


def _not_enough(
    have: int, test_months: int, valid_months: int, embargoed: int, embargo_days: int
) -> InputError:
    embargo = (
        f" + {embargoed} embargoed month(s) (label windows of snapshots.lead_days + horizon_days = "
        f"{embargo_days} days reaching the test months)"
        if embargoed
        else ""
    )
    lower = "; lower split.test_months / split.valid_months"
    if embargoed:
        lower += " or snapshots.horizon_days / lead_days"
    return InputError(
        f"split: {have} labelled snapshot month(s) but test_months={test_months} + "
        f"valid_months={valid_months}{embargo} + at least 1 training month are needed{lower}, "
        "or provide more history"
    )


def split_by_snapshot(
    dates: pd.Series, test_months: int, valid_months: int, embargo_days: int = 0
) -> pd.Series:
    """Label each (labelled) snapshot date 'train', 'valid', 'embargo' or 'test'.

    `dates` are the snapshot dates of labelled rows (duplicates allowed, any order); the
    result is aligned with `dates`. `embargo_days` (lead + horizon of the label window;
    0 = none) marks the dates before the test months whose window [t, t + embargo_days)
    ends after the first test date. Raises InputError when there are not enough labelled
    months to leave at least one for training.
    """
    if test_months < 1 or valid_months < 0 or embargo_days < 0:
        raise InputError(
            f"split: test_months must be >= 1 and valid_months >= 0 (got {test_months}, {valid_months})"
        )
    d = pd.to_datetime(dates)
    months = _month_periods(d)
    distinct = sorted(months.dropna().unique())
    if len(distinct) < test_months + valid_months + 1:
        raise _not_enough(len(distinct), test_months, valid_months, 0, embargo_days)
    test_set = set(distinct[-test_months:])
    is_test = months.isin(test_set)
    first_test = d[is_test].min()
    embargoed = ~is_test & (d + pd.Timedelta(days=embargo_days) > first_test)
    rest = sorted(months[~is_test & ~embargoed].dropna().unique())
    n_embargo = len(set(months[embargoed].dropna()) - set(rest))
    if len(rest) < valid_months + 1:
        raise _not_enough(len(distinct), test_months, valid_months, n_embargo, embargo_days)
    valid_set = set(rest[len(rest) - valid_months :]) if valid_months else set()
    out = pd.Series(TRAIN, index=dates.index, dtype="object")
    out[months.isin(valid_set) & ~embargoed] = VALID
    out[embargoed.to_numpy()] = EMBARGO
    out[is_test.to_numpy()] = TEST
    return out


def train_cutoff(
    dates: pd.Series, test_months: int, valid_months: int, embargo_days: int = 0
) -> pd.Timestamp:
    """The first snapshot date not in train: fitted feature parts use data before it.

    That is the first validation snapshot date (the first test date when valid_months=0).
    With `embargo_days` (snapshots.lead_days + horizon_days, as `models.train` splits) it
    is the model's own first validation date; without, the later one of the split without
    an embargo, which still precedes every test date.
    """
    split = split_by_snapshot(dates, test_months, valid_months, embargo_days)
    return pd.Timestamp(pd.to_datetime(dates[split != TRAIN]).min())


@dataclass(frozen=True)
class PurgedRows:
    """Rows usable for fitting once label windows that reach a later part are purged.

    `train`: training rows whose label window ends on or before the first validation
    date (for the booster fitted with early stopping on validation). `valid`: validation
    rows whose window ends on or before the first test date (early stopping, the search
    and calibration); with the embargoed split (`split_by_snapshot(..., embargo_days)`)
    that is all of them. `refit`: training and validation rows whose window ends on or
    before the first test date (the refit on train + valid, the baselines and the
    cross-fitted calibrator). All are boolean Series aligned with the input; embargoed
    and test rows are never fitted.
    """

    train: pd.Series
    valid: pd.Series
    refit: pd.Series
    purged_train: int
    purged_valid: int
    purged_refit: int


def label_window_end(dates: pd.Series, horizon_days: int, lead_days: int) -> pd.Series:
    """The exclusive end of each row's label window: t + lead_days + horizon_days."""
    return pd.to_datetime(dates) + pd.Timedelta(days=lead_days + horizon_days)


def purge_overlapping(dates: pd.Series, parts: pd.Series, horizon_days: int, lead_days: int) -> PurgedRows:
    """Drop fitting rows whose label window [t + lead, t + lead + horizon) reaches a later part.

    A churn event inside the window of a late training row can be the same event that
    labels an early validation (or test) row of the same account; fitting on that row
    would leak the later part's label. Rows are kept when their window ends on or before
    the first date of the part after them (window end is exclusive, so a window ending
    exactly on the first validation date is kept). `parts` holds 'train'/'valid'/
    'embargo'/'test' or NA (unlabelled rows, never fitted). Pure: inputs are not modified.
    """
    if horizon_days < 1 or lead_days < 0:
        raise InputError(
            f"snapshots: horizon_days must be >= 1 and lead_days >= 0 (got {horizon_days}, {lead_days})"
        )
    d = pd.to_datetime(dates)
    end = label_window_end(d, horizon_days, lead_days)
    is_train = (parts == TRAIN).fillna(False).astype(bool)
    is_valid = (parts == VALID).fillna(False).astype(bool)
    is_embargo = (parts == EMBARGO).fillna(False).astype(bool)
    is_test = (parts == TEST).fillna(False).astype(bool)
    later_than_train = d[is_valid | is_embargo | is_test]
    first_valid = later_than_train.min() if len(later_than_train) else pd.NaT
    first_test = d[is_test].min() if is_test.any() else pd.NaT
    train = is_train & (end <= first_valid) if pd.notna(first_valid) else is_train
    valid = is_valid & (end <= first_test) if pd.notna(first_test) else is_valid
    fit = is_train | is_valid
    refit = fit & (end <= first_test) if pd.notna(first_test) else fit
    return PurgedRows(
        train=train.astype(bool),
        valid=valid.astype(bool),
        refit=refit.astype(bool),
        purged_train=int(is_train.sum() - train.sum()),
        purged_valid=int(is_valid.sum() - valid.sum()),
        purged_refit=int(fit.sum() - refit.sum()),
    )
