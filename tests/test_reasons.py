"""Reason sentences, families and playbooks: the account's own values, en and ja, any feature name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from models.reasons import (
    HERE,
    Reason,
    classify_feature,
    load_playbooks,
    playbook_for,
    reasons_from_contributions,
    render_reason,
)

ROW = {
    "active_users_30d_vs_prev_30d_ratio": 7 / 13,
    "active_users_30d": 7.0,
    "active_users_prev_30d": 13.0,
    "bugs_high_open": 2.0,
    "bugs_high_open_max_age_days": 21.2,
    "tickets_bug_high_open_over_14d": 2.0,
    "comments_theme_competitor_180d": 1.0,
    "theme_competitor": 1.0,
    "days_to_renewal": 38.0,
    "billing_annual": 0.0,
    "nps_last": 3.0,
    "champions_departed_90d": 1.0,
    "some_new_metric_7d": 0.25,
}


@pytest.mark.parametrize(
    ("feature", "family", "text"),
    [
        (
            "active_users_30d_vs_prev_30d_ratio",
            "usage_decline",
            "active users fell 46% in the last 30 days (13 → 7)",
        ),
        ("bugs_high_open", "bug_escalation", "2 high-severity bugs open, the oldest for 21 days"),
        (
            "tickets_bug_high_open_over_14d",
            "bug_escalation",
            "2 high-severity bugs open for more than 14 days",
        ),
        ("theme_competitor", "survey_theme", "last survey comment mentions a competitor"),
        ("days_to_renewal", "renewal_monthly", "renewal in 38 days on a monthly plan"),
        ("nps_last", "detractor", "latest NPS answer is 3 (a detractor)"),
        ("champions_departed_90d", "champion_left", "1 champion left in the last 90 days"),
        ("some_new_metric_7d", "other", "some new metric (last 7 days): 0.25"),
    ],
)
def test_english_sentences_use_the_accounts_values(feature: str, family: str, text: str) -> None:
    assert render_reason(feature, ROW, "en") == (family, text)


def test_japanese_sentences() -> None:
    assert render_reason("active_users_30d_vs_prev_30d_ratio", ROW, "ja")[1] == (
        "過去30日間でアクティブユーザー数が46%減少（13 → 7）"
    )
    assert render_reason("days_to_renewal", ROW, "ja")[1] == "月額プランで契約更新まで38日"
    assert render_reason("bugs_high_open", ROW, "ja")[1] == "重大度「高」のバグが2件未解決（最長21日）"


def test_annual_plan_renewal_does_not_say_monthly() -> None:
    assert render_reason("days_to_renewal", {**ROW, "billing_annual": 1.0}, "en")[1] == "renewal in 38 days"


def test_missing_values_read_well() -> None:
    assert render_reason("nps_last", {"nps_last": np.nan}, "en")[1] == "no NPS answer on record"
    assert render_reason("weird_thing", {"weird_thing": None}, "en")[1] == "weird thing: no data"


def test_every_family_has_a_playbook_and_languages_share_templates() -> None:
    rules = yaml.safe_load((HERE / "templates" / "rules.yaml").read_text())["rules"]
    books = load_playbooks()["playbooks"]
    assert {r["family"] for r in rules} | {"other"} <= set(books)
    en = yaml.safe_load((HERE / "templates" / "en.yaml").read_text())
    ja = yaml.safe_load((HERE / "templates" / "ja.yaml").read_text())
    assert {r["template"] for r in rules} <= set(en["templates"])
    for name, variants in en["templates"].items():
        assert set(variants) == set(ja["templates"][name]), name
    assert set(en["phrases"]) == set(ja["phrases"])


def test_issue_playbook_actions_exist() -> None:
    actions = {f: playbook_for(f)[1].lower() for f in load_playbooks()["playbooks"]}
    assert "training" in actions["usage_decline"]
    assert "executive sponsor" in actions["champion_left"]
    assert "engineering" in actions["bug_escalation"]
    assert "detractor" in actions["detractor"]
    assert "qbr" in actions["value_review"] and "roi" in actions["value_review"]
    assert "annual plan" in actions["renewal_monthly"]
    pid, _ = playbook_for("unknown_family")
    assert pid.startswith("account-review@")


def test_reasons_are_top_positive_contributors_in_order() -> None:
    X = pd.DataFrame([ROW, ROW])
    names = ["nps_last", "bugs_high_open", "days_to_renewal", "some_new_metric_7d"]
    contrib = np.array([[0.5, 0.9, -0.2, 0.1, -1.0], [-0.1, -0.2, -0.3, -0.4, 0.0]])
    out = reasons_from_contributions(X, names, contrib, top_n=3)
    assert [r.feature for r in out[0]] == ["bugs_high_open", "nps_last", "some_new_metric_7d"]
    assert out[1] == []  # nothing raises this account's risk
    r = out[0][0]
    assert isinstance(r, Reason) and r.value == 2.0 and r.shap == pytest.approx(0.9)
    assert r.playbook_id.startswith("bug-escalation@") and "engineering" in r.action


def test_first_matching_rule_wins_and_groups_are_parsed() -> None:
    family, template, groups = classify_feature("events_30d_vs_prev_30d_ratio")
    assert (family, template, groups["metric"], groups["window"]) == (
        "usage_decline",
        "ratio_vs_prev",
        "events",
        "30",
    )
    assert classify_feature("tickets_90d_vs_prev_90d_ratio")[0] == "low_engagement"


def test_unknown_language_is_a_clear_input_error() -> None:
    from churnguard.errors import InputError

    with pytest.raises(InputError, match="language"):
        render_reason("nps_last", ROW, "fr")


def test_families_follow_the_accounts_plan_and_tone() -> None:
    annual = {**ROW, "billing_annual": 1.0}
    assert render_reason("days_to_renewal", annual, "en")[0] == "renewal_annual"
    assert render_reason("billing_annual", annual, "en") == ("renewal_annual", "on an annual plan")
    assert render_reason("billing_annual", ROW, "en")[0] == "renewal_monthly"
    assert render_reason("comment_sentiment_last", {"comment_sentiment_last": 3.0}, "en") == (
        "detractor",
        "the last survey comment sounds negative (tone 3 of 10)",
    )
    assert render_reason("account_age_days", {"account_age_days": 1770.0}, "en")[0] == "value_review"


USAGE = {
    "events_slope_90d_per_day": -0.5,
    "events_90d": 900.0,
    "events_per_active_user_30d": 3.0,
    "events_per_active_user_90d": 18.0,
    "tickets_90d": 12.0,
    "tickets_prev_90d": 4.0,
    "active_users_7d": 9.0,
    "active_users_30d": 10.0,
    "mrr": 120.0,
}


@pytest.mark.parametrize(
    ("feature", "text"),
    [
        (
            "events_slope_90d_per_day",
            "product events falling by 0.50 a day over the last 90 days (5% of the 10 a day average)",
        ),
        (  # a count: the longer window's pace per 30 days is 18 * 30 / 90 = 6
            "events_per_active_user_30d",
            "product events per active user: 3 in the last 30 days, "
            "down from a pace of 6 per 30 days over the last 90 days",
        ),
        ("tickets_90d", "support tickets: 12 in the last 90 days, up from 4 in the 90 days before"),
        (  # distinct users are a level, compared as they are
            "active_users_7d",
            "active users: 9 in the last 7 days, in line with the last 30 days (10)",
        ),
    ],
)
def test_values_come_with_a_direction_and_a_comparison(feature: str, text: str) -> None:
    assert render_reason(feature, USAGE, "en")[1] == text


def test_typical_account_is_the_fallback_reference() -> None:
    assert render_reason("mrr", USAGE, "en", {"mrr": 300.0})[1] == "MRR: 120, below the typical account (300)"
    assert render_reason("mrr", USAGE, "en")[1] == "MRR: 120"  # no reference: no claim
    assert (
        render_reason("mrr", USAGE, "ja", {"mrr": 300.0})[1]
        == "MRR: 120（一般的なアカウント（300）より低い）"
    )


def test_negative_values_and_references_compare_by_sign() -> None:
    """A fall below a zero or negative reference reads as below it (x / ref would flip it)."""
    row = {"mrr_change_90d": -89.2, "events_per_user_slope": -0.4}
    assert render_reason("mrr_change_90d", row, "en", {"mrr_change_90d": 0.0})[1] == (
        "MRR change (last 90 days): -89.2, below the typical account (0)"
    )
    text = render_reason("mrr_change_90d", row, "en", {"mrr_change_90d": -10.0})[1]
    assert text.endswith("below the typical account (-10)"), text
    text = render_reason("mrr_change_90d", {"mrr_change_90d": -2.0}, "en", {"mrr_change_90d": -10.0})[1]
    assert text.endswith("above the typical account (-10)"), text


def test_japanese_comparisons_and_slopes_are_in_step() -> None:
    assert render_reason("tickets_90d", USAGE, "ja")[1] == (
        "サポート問い合わせ: 過去90日間で12（その前の90日間の4から増加）"
    )
    assert render_reason("events_slope_90d_per_day", USAGE, "ja")[1] == (
        "過去90日間で利用イベント数が1日あたり0.50ずつ減少（1日平均10の5%）"
    )
    en = yaml.safe_load((HERE / "templates" / "en.yaml").read_text(encoding="utf-8"))
    ja = yaml.safe_load((HERE / "templates" / "ja.yaml").read_text(encoding="utf-8"))
    assert set(en["phrases"]) == set(ja["phrases"])
    for name, block in en["templates"].items():
        assert set(block) == set(ja["templates"][name]), name


def test_top_reasons_take_one_feature_per_family() -> None:
    row = {**USAGE, "nps_last": 3.0, "bugs_high_open": 2.0}
    names = ["events_per_active_user_30d", "tickets_90d", "active_users_7d", "nps_last", "bugs_high_open"]
    # usage_decline twice at the top: the second one gives way to the next family
    contrib = np.array([[0.9, 0.1, 0.8, 0.5, 0.4, 0.0]])
    out = reasons_from_contributions(pd.DataFrame([row]), names, contrib, top_n=3)[0]
    assert [r.feature for r in out] == ["events_per_active_user_30d", "nps_last", "bugs_high_open"]
    assert len({r.family for r in out}) == 3
    # fewer families than top_n: fewer reasons, never a repeat
    only_usage = np.array([[0.9, -0.1, 0.8, -0.5, -0.4, 0.0]])
    out = reasons_from_contributions(pd.DataFrame([row]), names, only_usage, top_n=3)[0]
    assert [r.feature for r in out] == ["events_per_active_user_30d"]


def test_renewal_family_follows_the_plan_in_batches() -> None:
    frame = pd.DataFrame({"days_to_renewal": [30.0, 30.0, 30.0], "billing_annual": [1.0, 0.0, np.nan]})
    contrib = np.array([[1.0, 0.0, 0.0]] * 3)
    out = reasons_from_contributions(frame, ["days_to_renewal", "billing_annual"], contrib, top_n=3)
    assert [rs[0].family for rs in out] == ["renewal_annual", "renewal_monthly", "renewal_annual"]
    assert [rs[0].playbook_id.split("@")[0] for rs in out] == [
        "renewal-value-review",
        "annual-plan-offer",
        "renewal-value-review",
    ]
    assert out[1][0].text == "renewal in 30 days on a monthly plan"
    # a text billing column decides too
    text_plan = pd.DataFrame({"days_to_renewal": [30.0, 30.0], "billing_period": ["monthly", "annual"]})
    out = reasons_from_contributions(text_plan, ["days_to_renewal"], np.array([[1.0, 0.0]] * 2))
    assert [rs[0].family for rs in out] == ["renewal_monthly", "renewal_annual"]


def test_many_positive_contributors_beyond_the_precomputed_candidates() -> None:
    names = [f"usage_metric_{i}_30d" for i in range(20)] + ["nps_last"]
    row = {n: 1.0 for n in names}
    contrib = np.r_[np.linspace(2, 1, 20), 0.5, 0.0][None, :]  # 20 usage features first
    out = reasons_from_contributions(pd.DataFrame([row]), names, contrib, top_n=3)[0]
    assert [r.feature for r in out] == ["usage_metric_0_30d", "nps_last"]
