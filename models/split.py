"""Train / validation / test split by snapshot date, never at random.

Over the *labelled* snapshot dates (rows with `label_observable`), latest first:
test = the labelled dates in the last `test_months` calendar months, valid = those in
the `valid_months` months before them, train = the rest. With a monthly calendar this
is exactly "the last N labelled snapshot dates"; with weekly or daily calendars the
months still mean calendar months.

The features stage uses `train_cutoff` (the first validation snapshot date) to fit its
only learnt part (the text sentiment model) on data submitted before that date.
"""

from __future__ import annotations

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
