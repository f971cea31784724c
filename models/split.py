"""Train / validation / test split by snapshot date, never at random.

Over the *labelled* snapshot dates (rows with `label_observable`), latest first:
test = the labelled dates in the last `test_months` calendar months, valid = those in
the `valid_months` months before them, train = the rest. With a monthly calendar this
is exactly "the last N labelled snapshot dates"; with weekly or daily calendars the
months still mean calendar months.

Label windows overlap across the split: a row at t is labelled by churn in
[t + lead_days, t + lead_days + horizon_days), so the last training months see churn
events that also label validation (and test) rows. `purge_overlapping` drops those rows
from fitting (purging, as for any overlapping-label time series split).

The features stage uses `train_cutoff` (the first validation snapshot date) to fit its
only learnt part (the text sentiment model) on data submitted before that date.
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
TEST = "test"


def _month_periods(dates: pd.Series) -> pd.Series:
    return pd.to_datetime(dates).dt.to_period("M")


def split_by_snapshot(dates: pd.Series, test_months: int, valid_months: int) -> pd.Series:
    """Label each (labelled) snapshot date 'train', 'valid' or 'test'.

    `dates` are the snapshot dates of labelled rows (duplicates allowed, any order); the
    result is aligned with `dates`. Raises InputError when there are not enough labelled
    months to leave at least one for training.
    """
    if test_months < 1 or valid_months < 0:
        raise InputError(
            f"split: test_months must be >= 1 and valid_months >= 0 (got {test_months}, {valid_months})"
        )
    months = _month_periods(dates)
    distinct = sorted(months.dropna().unique())
    needed = test_months + valid_months + 1
    if len(distinct) < needed:
        raise InputError(
            f"split: {len(distinct)} labelled snapshot month(s) but test_months={test_months} + "
            f"valid_months={valid_months} + at least 1 training month are needed; "
            "lower split.test_months / split.valid_months or provide more history"
        )
    test_set = set(distinct[-test_months:])
    valid_set = set(distinct[len(distinct) - test_months - valid_months : len(distinct) - test_months])
    out = pd.Series(TRAIN, index=dates.index, dtype="object")
    out[months.isin(valid_set)] = VALID
    out[months.isin(test_set)] = TEST
    return out


def train_cutoff(dates: pd.Series, test_months: int, valid_months: int) -> pd.Timestamp:
    """The first snapshot date not in train: fitted feature parts use data before it.

    That is the first validation snapshot date (the first test date when valid_months=0).
    """
    split = split_by_snapshot(dates, test_months, valid_months)
    return pd.Timestamp(pd.to_datetime(dates[split != TRAIN]).min())


@dataclass(frozen=True)
class PurgedRows:
    """Rows usable for fitting once label windows that reach a later part are purged.

    `train`: training rows whose label window ends on or before the first validation
    date (for the booster fitted with early stopping on validation). `refit`: training
    and validation rows whose window ends on or before the first test date (for the refit
    on train + valid and the baselines fitted next to it). Both are boolean Series
    aligned with the input; validation and test rows are never purged from their own part.
    """

    train: pd.Series
    refit: pd.Series
    purged_train: int
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
    exactly on the first validation date is kept). `parts` holds 'train'/'valid'/'test'
    or NA (unlabelled rows, never fitted). Pure: inputs are not modified.
    """
    if horizon_days < 1 or lead_days < 0:
        raise InputError(
            f"snapshots: horizon_days must be >= 1 and lead_days >= 0 (got {horizon_days}, {lead_days})"
        )
    d = pd.to_datetime(dates)
    end = label_window_end(d, horizon_days, lead_days)
    is_train = (parts == TRAIN).fillna(False).astype(bool)
    is_valid = (parts == VALID).fillna(False).astype(bool)
    is_test = (parts == TEST).fillna(False).astype(bool)
    later_than_train = d[is_valid | is_test]
    first_valid = later_than_train.min() if len(later_than_train) else pd.NaT
    first_test = d[is_test].min() if is_test.any() else pd.NaT
    train = is_train & (end <= first_valid) if pd.notna(first_valid) else is_train
    fit = is_train | is_valid
    refit = fit & (end <= first_test) if pd.notna(first_test) else fit
    return PurgedRows(
        train=train.astype(bool),
        refit=refit.astype(bool),
        purged_train=int(is_train.sum() - train.sum()),
        purged_refit=int(fit.sum() - refit.sum()),
    )
