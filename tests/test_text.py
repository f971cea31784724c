"""Survey text: language detection, multilingual themes and the learnt sentiment score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.text import (
    THEMES,
    TextModel,
    detect_language,
    evaluate_text_model,
    fit_text_model,
    score_comments,
    theme_flags,
)

# Hand-written comments (not from the simulator), one or more per theme and language.
HAND = [
    ("en", "Way too expensive for a team of five.", {"price"}),
    ("en", "We are moving to a competitor next quarter.", {"competitor"}),
    ("en", "The app crashes every time we export.", {"bugs"}),
    ("en", "Nobody from support answered our ticket in a week.", {"support"}),
    ("en", "Very intuitive and easy to use.", {"ease_of_use"}),
    ("en", "We will cancel at the end of the term.", {"cancel"}),
    ("ja", "料金が高すぎて予算に合いません。", {"price"}),
    ("ja", "他社のツールへの乗り換えを検討中です。", {"competitor"}),
    ("ja", "不具合が多く、よく落ちる。", {"bugs"}),
    ("ja", "サポートの返信が遅い。", {"support"}),
    ("ja", "直感的で使いやすい。", {"ease_of_use"}),
    ("ja", "来月で解約します。", {"cancel"}),
    ("zh", "价格太贵，超出预算。", {"price"}),
    ("zh", "我们正在考虑换成竞争对手的产品。", {"competitor"}),
    ("zh", "系统经常崩溃，错误很多。", {"bugs"}),
    ("zh", "客服回复太慢了。", {"support"}),
    ("zh", "界面直观，非常好用。", {"ease_of_use"}),
    ("zh", "合同到期后我们不续约了。", {"cancel"}),
    ("en", "Great product, nothing to add.", set()),
    ("ja", "特に問題ありません。", set()),
    ("zh", "没有意见。", set()),
]


def test_language_by_script() -> None:
    assert detect_language("Hello there") == "en"
    assert detect_language("価格が高い") == "ja"  # Han + kana
    assert detect_language("カスタマーサポート") == "ja"  # kana only
    assert detect_language("价格太贵") == "zh"  # Han without kana
    assert detect_language("Naïve café") == "en"
    assert detect_language("  ") is None and detect_language(None) is None


@pytest.mark.parametrize(("language", "comment", "themes"), HAND)
def test_hand_written_comment_themes(language: str, comment: str, themes: set[str]) -> None:
    s = pd.Series([comment])
    langs = s.map(detect_language)
    assert langs.iloc[0] == language
    flags = theme_flags(s, langs).iloc[0]
    found = {th for th in THEMES if flags[f"theme_{th}"] == 1}
    assert found == themes


def test_english_terms_match_whole_words_only() -> None:
    s = pd.Series(["I feel fine", "the fee is high", "we leave", "cleavage"])
    flags = theme_flags(s, s.map(detect_language))
    assert flags["theme_price"].tolist() == [0, 1, 0, 0]
    assert flags["theme_cancel"].tolist() == [0, 0, 1, 0]


def _toy_corpus(n: int, seed: int) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    good = [
        "easy to use, love it",
        "使いやすくて満足",
        "非常好用，很满意",
        "great support team",
        "サポートが早い",
        "客服很快",
    ]
    bad = [
        "too expensive, we will cancel",
        "高すぎるので解約",
        "太贵了，不续约",
        "buggy and slow",
        "バグが多い",
        "经常崩溃",
    ]
    texts, scores = [], []
    for _ in range(n):
        if rng.random() < 0.5:
            texts.append(good[rng.integers(len(good))])
            scores.append(float(rng.integers(8, 11)))
        else:
            texts.append(bad[rng.integers(len(bad))])
            scores.append(float(rng.integers(0, 5)))
    return pd.Series(texts), pd.Series(scores)


def test_sentiment_ranks_positive_above_negative_in_each_language(tmp_path: Path) -> None:
    x, y = _toy_corpus(300, 1)
    model = fit_text_model(x, y, cutoff=pd.Timestamp("2025-01-01"), min_df=1)
    assert model.fitted
    pairs = [
        ("I love how easy to use it is", "It is too expensive and we will cancel"),
        ("とても使いやすくて満足しています", "高すぎるので解約します"),
        ("非常好用，我们很满意", "太贵了，我们不续约"),
    ]
    for pos, neg in pairs:
        p, n = model.predict(pd.Series([pos, neg]))
        assert p > n, (pos, neg, p, n)
    model.save(tmp_path / "tm")
    again = TextModel.load(tmp_path / "tm")
    np.testing.assert_array_equal(again.predict(x.head(20)), model.predict(x.head(20)))
    assert again.metadata["version"] == model.metadata["version"]
    assert again.metadata["fit_cutoff"] == "2025-01-01T00:00:00"


def test_too_few_comments_leaves_model_unfitted_and_sentiment_missing() -> None:
    x, y = _toy_corpus(5, 2)
    model = fit_text_model(x, y, cutoff=None, min_comments=30)
    assert not model.fitted
    assert np.isnan(model.predict(x)).all()


def test_version_changes_with_training_data() -> None:
    x, y = _toy_corpus(60, 3)
    a = fit_text_model(x, y, cutoff=None, min_df=1)
    b = fit_text_model(x, y.replace(10.0, 9.0), cutoff=None, min_df=1)
    assert a.metadata["version"] != b.metadata["version"]


def test_score_comments_skips_empty_comments() -> None:
    x, y = _toy_corpus(60, 4)
    model = fit_text_model(x, y, cutoff=None, min_df=1)
    surveys = pd.DataFrame(
        {
            "response_id": ["r1", "r2", "r3"],
            "account_id": ["a", "a", "b"],
            "submitted_at": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"]),
            "comment": ["太贵了", None, "  "],
        }
    )
    scored = score_comments(surveys, model)
    assert scored["response_id"].tolist() == ["r1"]
    assert scored["language"].tolist() == ["zh"] and scored["theme_price"].tolist() == [1]


@pytest.mark.slow
def test_sentiment_on_held_out_simulated_comments(tiny_validated) -> None:  # type: ignore[no-untyped-def]
    """Fit on the earlier half of the simulated company's comments, score the later half."""
    from churnguard import tables

    surveys = tables.read_clean(tiny_validated.validated, "surveys")
    assert surveys is not None
    surveys = surveys[surveys["comment"].notna() & surveys["nps"].notna()]
    cutoff = surveys["submitted_at"].quantile(0.5)
    train, held = surveys[surveys["submitted_at"] < cutoff], surveys[surveys["submitted_at"] >= cutoff]
    model = fit_text_model(train["comment"], train["nps"], cutoff=cutoff)
    overall = evaluate_text_model(model, held["comment"], held["nps"])
    assert overall["spearman"] > 0.3 and overall["detractor_auc"] > 0.65, overall
    langs = held["comment"].map(detect_language)
    assert set(langs) == {"en", "ja", "zh"}
    for lang in ("en", "ja", "zh"):
        part = held[langs == lang]
        result = evaluate_text_model(model, part["comment"], part["nps"])
        assert result["spearman"] > 0.1, (lang, result)
