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


def test_embargo_moves_validation_before_the_months_whose_window_reaches_test() -> None:
    dates = _monthly(12)  # 2024-01 .. 2024-12, test = 2024-10 .. 2024-12
    split = split_by_snapshot(dates, test_months=3, valid_months=2, embargo_days=90)
    by_date = pd.DataFrame({"d": dates, "s": split}).drop_duplicates().set_index("d")["s"].sort_index()
    # 2024-07-01 + 90 d = 2024-09-29 <= 2024-10-01: usable; 2024-08-01 and 2024-09-01 reach test
    assert list(by_date) == ["train"] * 5 + ["valid"] * 2 + ["embargo"] * 2 + ["test"] * 3
    # the test months are the same with or without the embargo
    plain = split_by_snapshot(dates, 3, 2)
    assert ((plain == "test") == (split == "test")).all()
    assert train_cutoff(dates, 3, 2, embargo_days=90) == dates[split == "valid"].min()
    assert train_cutoff(dates, 3, 2) > dates[split == "valid"].min()  # the features stage's call today


def test_embargo_on_a_weekly_calendar_splits_inside_a_month() -> None:
    dates = pd.Series(pd.date_range("2024-01-01", "2024-06-30", freq="W-MON"))
    split = split_by_snapshot(dates, 1, 1, embargo_days=14)
    first_test = dates[split == "test"].min()
    embargo = dates[split == "embargo"]
    assert len(embargo) and ((embargo + pd.Timedelta(days=14)) > first_test).all()
    assert (dates[split == "valid"] + pd.Timedelta(days=14) <= first_test).all()
    assert set(dates[split == "valid"].dt.month) == {5}  # May's last weeks embargoed, its first ones valid


def test_too_few_months_for_an_embargo_names_the_window_params() -> None:
    with pytest.raises(InputError, match=r"embargoed month.*horizon_days"):
        split_by_snapshot(_monthly(7), 3, 2, embargo_days=90)
    assert (split_by_snapshot(_monthly(7), 3, 2, embargo_days=28) != "embargo").all()


def test_purge_drops_validation_rows_whose_window_reaches_test() -> None:
    dates, parts = _purge_case()
    purged = purge_overlapping(dates, parts, horizon_days=20, lead_days=5)
    # valid 2025-04-01, 04-05 end by 2025-05-01 and are kept; 2025-04-15 + 25 d = 2025-05-10 is not
    assert purged.valid.tolist() == [False] * 4 + [True, True, False] + [False] * 3
    assert purged.purged_valid == 1
    embargoed = parts.where(~(dates == pd.Timestamp("2025-04-15")), "embargo")
    again = purge_overlapping(dates, embargoed, horizon_days=20, lead_days=5)
    assert again.purged_valid == 0 and not again.refit[dates == pd.Timestamp("2025-04-15")].any()
