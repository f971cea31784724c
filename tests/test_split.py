"""Split by snapshot date: chronological, never random."""

from __future__ import annotations

import pandas as pd
import pytest

from churnguard.errors import InputError
from models.split import split_by_snapshot, train_cutoff


def _monthly(n: int, rows_per_date: int = 2) -> pd.Series:
    dates = pd.date_range("2024-01-01", periods=n, freq="MS").repeat(rows_per_date)
    return pd.Series(dates[::-1])  # unsorted on purpose


def test_split_takes_latest_months_for_test_then_valid() -> None:
    dates = _monthly(10)
    split = split_by_snapshot(dates, test_months=3, valid_months=2)
    by_date = pd.DataFrame({"d": dates, "s": split}).drop_duplicates().set_index("d")["s"].sort_index()
    assert list(by_date) == ["train"] * 5 + ["valid"] * 2 + ["test"] * 3
    assert split.index.equals(dates.index)


def test_train_dates_all_precede_valid_and_test() -> None:
    dates = _monthly(12)
    split = split_by_snapshot(dates, 4, 3)
    assert dates[split == "train"].max() < dates[split == "valid"].min()
    assert dates[split == "valid"].max() < dates[split == "test"].min()


def test_train_cutoff_is_first_validation_date() -> None:
    dates = _monthly(10)
    assert train_cutoff(dates, 3, 2) == pd.Timestamp("2024-06-01")
    assert train_cutoff(dates, 3, 0) == pd.Timestamp("2024-08-01")


def test_weekly_dates_are_split_by_calendar_month() -> None:
    dates = pd.Series(pd.date_range("2024-01-01", "2024-06-30", freq="W-MON"))
    split = split_by_snapshot(dates, 1, 1)
    assert set(dates[split == "test"].dt.month) == {6}
    assert set(dates[split == "valid"].dt.month) == {5}


def test_too_few_months_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="test_months"):
        split_by_snapshot(_monthly(4), 3, 1)
