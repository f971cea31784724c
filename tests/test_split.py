"""Split by snapshot date: chronological, never random."""

from __future__ import annotations

import pandas as pd
import pytest

from churnguard.errors import InputError
from models.split import purge_overlapping, split_by_snapshot, train_cutoff


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


def _purge_case() -> tuple[pd.Series, pd.Series]:
    # Hand-made: train 2025-01-01..2025-03-01, valid from 2025-04-01, test from 2025-05-01.
    dates = pd.Series(
        pd.to_datetime(
            ["2025-01-01", "2025-01-31", "2025-02-01", "2025-03-01", "2025-04-01", "2025-04-05",
             "2025-04-15", "2025-05-01", "2025-05-10", "2025-06-01"]
        )
    )  # fmt: skip
    parts = pd.Series(["train"] * 4 + ["valid"] * 3 + ["test"] * 2 + [None], dtype="object")
    return dates, parts


def test_purge_drops_train_rows_whose_window_reaches_valid() -> None:
    dates, parts = _purge_case()
    before = (dates.copy(), parts.copy())
    purged = purge_overlapping(dates, parts, horizon_days=60, lead_days=0)
    # window [t, t + 60d): 2025-01-31 + 60 d = 2025-04-01 == first valid date -> kept (end exclusive);
    # 2025-02-01 + 60 d = 2025-04-02 crosses into valid -> dropped; 2025-03-01 too.
    assert purged.train.tolist() == [True, True, False, False] + [False] * 6
    assert purged.purged_train == 2
    pd.testing.assert_series_equal(dates, before[0])
    pd.testing.assert_series_equal(parts, before[1])


def test_purge_refit_excludes_rows_whose_window_reaches_test() -> None:
    dates, parts = _purge_case()
    purged = purge_overlapping(dates, parts, horizon_days=20, lead_days=5)
    # window end t + 25 d vs first test 2025-05-01: 2025-04-05 + 25 d = 2025-04-30 kept,
    # 2025-04-15 + 25 d = 2025-05-10 dropped, 2025-04-01 kept; train rows all end before.
    assert purged.refit.tolist() == [True] * 4 + [True, True, False] + [False] * 3
    assert purged.purged_refit == 1
    # vs first valid 2025-04-01: 2025-03-01 + 25 d = 2025-03-26 kept -> nothing purged from train
    assert purged.train.tolist() == [True] * 4 + [False] * 6 and purged.purged_train == 0
    # lead days count: the same rows with lead 0 and horizon 25 are purged identically
    same = purge_overlapping(dates, parts, horizon_days=25, lead_days=0)
    assert same.refit.tolist() == purged.refit.tolist()


def test_purge_rejects_bad_window() -> None:
    dates, parts = _purge_case()
    with pytest.raises(InputError, match="horizon_days"):
        purge_overlapping(dates, parts, horizon_days=0, lead_days=0)
