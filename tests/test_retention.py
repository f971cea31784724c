"""Retention metrics against values computed by hand on a four-account company.

The company (data_end 2024-07-01, grace 30 days; final months run to 2024-05):
- A (enterprise): annual 2023-01-01..2024-01-01 at 100, renewed with an upgrade to 150.
- B (smb): monthly 50, 50, then a downgrade to 30 for March 2024; churns 2024-04-01.
- C (mid_market): annual 2023-03-01..2024-03-01 at 200, not renewed (churn 2024-03-01),
  re-activates 2024-05-10 at 80 (gap > grace: a new spell).
- D (smb): monthly from 2024-02-15 at 40, a 5-day gap before 2024-03-20 (bridged by
  grace), expands to 60 on 2024-04-20, churns 2024-05-20.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features import retention as r

T = pd.Timestamp
DATA_END = T("2024-07-01")
GRACE = 30


def _subs() -> pd.DataFrame:
    rows = [
        ("A", "a1", "2023-01-01", "2024-01-01", 100.0, "annual"),
        ("A", "a2", "2024-01-01", "2025-01-01", 150.0, "annual"),
        ("B", "b1", "2024-01-01", "2024-02-01", 50.0, "monthly"),
        ("B", "b2", "2024-02-01", "2024-03-01", 50.0, "monthly"),
        ("B", "b3", "2024-03-01", "2024-04-01", 30.0, "monthly"),
        ("C", "c1", "2023-03-01", "2024-03-01", 200.0, "annual"),
        ("C", "c2", "2024-05-10", "2025-05-10", 80.0, "annual"),
        ("D", "d1", "2024-02-15", "2024-03-15", 40.0, "monthly"),
        ("D", "d2", "2024-03-20", "2024-04-20", 40.0, "monthly"),
        ("D", "d3", "2024-04-20", "2024-05-20", 60.0, "monthly"),
    ]
    df = pd.DataFrame(
        rows, columns=["account_id", "subscription_id", "start_date", "end_date", "mrr", "billing_period"]
    )
    for c in ("start_date", "end_date"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[us]")
    return df


def _accounts() -> pd.DataFrame:
    return pd.DataFrame(
        {"account_id": ["A", "B", "C", "D"], "segment": ["enterprise", "smb", "mid_market", "smb"]}
    )


@pytest.fixture(scope="module")
def result() -> r.RetentionResult:
    return r.compute_contract_retention(_subs(), _accounts(), GRACE, DATA_END)


def test_inputs_are_not_mutated() -> None:
    subs, accounts = _subs(), _accounts()
    r.compute_contract_retention(subs, accounts, GRACE, DATA_END)
    pd.testing.assert_frame_equal(subs, _subs())
    pd.testing.assert_frame_equal(accounts, _accounts())


def test_spells_bridge_gaps_within_grace_only() -> None:
    spells = r.build_spells(_subs(), GRACE).sort_values(["account_id", "start"]).reset_index(drop=True)
    got = [(a, str(s.date()), str(e.date())) for a, s, e in spells.itertuples(index=False)]
    assert got == [
        ("A", "2023-01-01", "2025-01-01"),
        ("B", "2024-01-01", "2024-04-01"),
        ("C", "2023-03-01", "2024-03-01"),
        ("C", "2024-05-10", "2025-05-10"),
        ("D", "2024-02-15", "2024-05-20"),
    ]


def test_churn_events_only_when_grace_has_passed() -> None:
    ev = r.derive_churn_events(_subs(), GRACE, DATA_END)
    assert list(zip(ev["account_id"], ev["churn_date"].dt.date.astype(str), strict=True)) == [
        ("C", "2024-03-01"),
        ("B", "2024-04-01"),
        ("D", "2024-05-20"),
    ]
    # On 2024-04-15 B's churn (2024-04-01) is not yet known: grace runs to 2024-05-01.
    early = r.derive_churn_events(_subs(), GRACE, T("2024-04-15"))
    assert list(early["account_id"]) == ["C"]


def test_state_in_a_bridged_gap_keeps_last_mrr() -> None:
    subs = _subs()
    spells = r.build_spells(subs, GRACE)
    q = pd.DataFrame(
        {"account_id": ["D", "D", "C"], "at": [T("2024-03-17"), T("2024-05-20"), T("2024-04-01")]}
    )
    st = r.account_state_at(subs, spells, q)
    assert st["active"].tolist() == [True, False, False]
    assert st["mrr"].tolist() == [40.0, 0.0, 0.0]


def test_final_months_stop_where_grace_runs_past_data_end(result: r.RetentionResult) -> None:
    months = result.by_month.index
    assert months.min() == T("2023-01-01")
    assert months.max() == T("2024-05-01")  # May ends 06-01, +30d = 07-01 <= data_end; June does not


@pytest.mark.parametrize(
    ("month", "expected"),
    [
        # Dec 2023: A upgrades at renewal on 01-01 (100 -> 150), B is new on 01-01.
        ("2023-12-01", dict(customers_start=2, customers_end=3, new_logos=1, churned_logos=0,
                            mrr_start=300.0, expansion_mrr=50.0, contraction_mrr=0.0, churned_mrr=0.0,
                            logo_retention_rate=1.0, net_revenue_retention=350 / 300,
                            gross_revenue_retention=1.0, renewal_rate=math.nan)),
        ("2024-01-01", dict(customers_start=3, customers_end=3, logo_retention_rate=1.0,
                            terms_up_for_renewal=1, terms_renewed=1, renewal_rate=1.0)),
        # Feb 2024: C churns (200), B downgrades 50 -> 30 on 03-01, D is new.
        ("2024-02-01", dict(customers_start=3, customers_end=3, new_logos=1, churned_logos=1,
                            logo_retention_rate=2 / 3, logo_churn_rate=1 / 3, mrr_start=400.0,
                            contraction_mrr=20.0, churned_mrr=200.0, gross_revenue_retention=180 / 400,
                            net_revenue_retention=180 / 400, mrr_churn_rate=0.5, renewal_rate=1.0)),
        # Mar 2024: B churns (30); renewals: B's Feb term yes, C no, D's bridged gap yes.
        ("2024-03-01", dict(customers_start=3, customers_end=2, churned_logos=1, mrr_start=220.0,
                            churned_mrr=30.0, gross_revenue_retention=190 / 220, logo_retention_rate=2 / 3,
                            terms_up_for_renewal=3, terms_renewed=2, renewal_rate=2 / 3)),
        # Apr 2024: D expands 40 -> 60; B's last term is not renewed.
        ("2024-04-01", dict(customers_start=2, customers_end=2, mrr_start=190.0, expansion_mrr=20.0,
                            gross_revenue_retention=1.0, net_revenue_retention=210 / 190,
                            terms_up_for_renewal=2, terms_renewed=1, renewal_rate=0.5)),
        # May 2024: D churns (60), C re-activates (new, reactivated, 80 new MRR).
        ("2024-05-01", dict(customers_start=2, customers_end=2, new_logos=1, reactivated_logos=1,
                            churned_logos=1, retained_logos=1, logo_retention_rate=0.5, new_mrr=80.0,
                            mrr_start=210.0, churned_mrr=60.0, net_revenue_retention=150 / 210,
                            mrr_churn_rate=60 / 210, terms_up_for_renewal=1, terms_renewed=0,
                            renewal_rate=0.0)),
    ],
)  # fmt: skip
def test_monthly_metrics_by_hand(result: r.RetentionResult, month: str, expected: dict) -> None:
    row = result.by_month.loc[T(month)]
    for key, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(row[key]), key
        else:
            assert row[key] == pytest.approx(value), key


def test_overall_is_pooled_over_months(result: r.RetentionResult) -> None:
    o = result.overall
    # customers at month starts: 1 + 1 + 9*2 + 2 + 3 + 3 + 3 + 2 + 2 = 35, churned 3 (C, B, D)
    assert o["months"] == 17
    assert o["logo_churn_rate"] == pytest.approx(3 / 35)
    assert o["logo_retention_rate"] == pytest.approx(32 / 35)
    assert o["renewal_rate"] == pytest.approx(5 / 8)
    assert o["annualised_logo_churn_rate"] == pytest.approx(1 - (1 - 3 / 35) ** 12)
    assert set(r.METRIC_NAMES) <= set(o)


def test_by_segment(result: r.RetentionResult) -> None:
    smb = result.by_segment_month.loc["smb"]
    # smb = B and D. Mar 2024: B churns (30), D stays (40).
    assert smb.loc[T("2024-03-01"), "customers_start"] == 2
    assert smb.loc[T("2024-03-01"), "logo_churn_rate"] == pytest.approx(0.5)
    assert smb.loc[T("2024-03-01"), "mrr_churn_rate"] == pytest.approx(30 / 70)
    ent = result.overall_by_segment["enterprise"]
    assert ent["logo_churn_rate"] == 0.0
    assert ent["net_revenue_retention"] > 1.0  # the upgrade


def test_cohorts(result: r.RetentionResult) -> None:
    logo, rev = result.cohorts_logo, result.cohorts_revenue
    d = T("2024-02-01")  # D's cohort: initial MRR 40
    assert logo.loc[d, 0] == 1.0 and rev.loc[d, 0] == pytest.approx(1.0)
    assert rev.loc[d, 2] == pytest.approx(60 / 40)  # 2024-05-01
    assert logo.loc[d, 3] == 0.0 and rev.loc[d, 3] == 0.0  # 2024-06-01, churned 05-20
    assert np.isnan(logo.loc[d, 4])  # 2024-07-01 + grace is after data_end
    b = T("2024-01-01")
    assert rev.loc[b, 1] == pytest.approx(30 / 50)  # downgrade
    c = T("2023-03-01")
    assert logo.loc[c, 11] == 0.0  # churned 2024-03-01
    assert logo.loc[c, 14] == 1.0 and rev.loc[c, 14] == pytest.approx(80 / 200)  # re-activated
    assert result.cohort_sizes.loc[c] == 1


def test_renewal_by_billing_period(result: r.RetentionResult) -> None:
    b = result.renewals_by_billing
    assert b.loc["annual", "terms_up_for_renewal"] == 2  # A's first term (renewed), C's (not)
    assert b.loc["annual", "renewal_rate"] == pytest.approx(0.5)
    assert b.loc["monthly", "renewal_rate"] == pytest.approx(4 / 6)  # b1, b2, d1, d2 of six


def test_clv(result: r.RetentionResult) -> None:
    clv = r.customer_lifetime_value(_subs(), _accounts(), result, GRACE, DATA_END, acquisition_cost=100.0)
    annual = 1 - (1 - 3 / 35) ** 12
    # at 2024-06-01: A (150) and C (80)
    assert clv.loc["all", "arr_per_customer"] == pytest.approx(12 * 115)
    assert clv.loc["all", "clv"] == pytest.approx(12 * 115 / annual - 100.0)
    # enterprise never churned: lifetime capped
    assert clv.loc["enterprise", "expected_lifetime_years"] == 10.0
    assert clv.loc["enterprise", "clv"] == pytest.approx(12 * 150 * 10 - 100.0)
    per_seg = r.customer_lifetime_value(
        _subs(),
        _accounts(),
        result,
        GRACE,
        DATA_END,
        acquisition_cost={"enterprise": 500.0},
        max_lifetime_years=3,
    )
    assert per_seg.loc["enterprise", "clv"] == pytest.approx(12 * 150 * 3 - 500.0)
    assert per_seg.loc["mid_market", "acquisition_cost"] == 0.0


def test_activity_definition_logo_only() -> None:
    snaps = pd.DataFrame(
        {
            "account_id": ["A", "B", "C", "A", "C", "D", "A", "D", "B"],
            "snapshot_date": [T("2024-01-01")] * 3 + [T("2024-02-01")] * 3 + [T("2024-03-01")] * 3,
            "segment": ["smb"] * 9,
        }
    )
    res = r.compute_activity_retention(snaps)
    jan = res.by_month.loc[T("2024-01-01")]
    assert (jan["customers_start"], jan["churned_logos"], jan["new_logos"]) == (3, 1, 1)
    assert jan["logo_retention_rate"] == pytest.approx(2 / 3)
    feb = res.by_month.loc[T("2024-02-01")]
    assert feb["reactivated_logos"] == 1  # B comes back
    assert res.overall["logo_churn_rate"] == pytest.approx(2 / 6)
    for name in ("net_revenue_retention", "gross_revenue_retention", "mrr_churn_rate", "renewal_rate"):
        assert res.overall[name] is None


def test_window_start_drops_earlier_months_and_cohorts() -> None:
    res = r.compute_contract_retention(_subs(), _accounts(), GRACE, DATA_END, window_start=T("2024-01-15"))
    assert res.by_month.index.min() == T("2024-01-01")
    assert res.by_month.loc[T("2024-02-01"), "churned_logos"] == 1  # same figures inside the window
    assert res.overall["months"] == 5
    assert res.overall["renewal_rate"] == pytest.approx(5 / 8)  # all eight terms end in 2024
    assert list(res.cohorts_logo.index) == [T("2024-01-01"), T("2024-02-01")]  # B and D; A, C started before
