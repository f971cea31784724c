"""Phrase banks for survey comments in English, Japanese and Chinese.

A comment is an optional opener, one or two topic sentences and an optional closer,
so each language yields thousands of distinct comments, not a handful of templates.
Topics: price, competitor, bugs, support_slow, support_good, easy, hard, cancel,
value, onboarding, feature_gap.
"""

from __future__ import annotations

BANKS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "opener": (
            "",
            "Honestly,",
            "Overall,",
            "To be frank,",
            "From our team's side,",
            "In short:",
            "Naïve question maybe, but",
            "After a year with you,",
            "As the account owner,",
            "Quick feedback:",
        ),
        "price": (
            "the price is too high for what we use.",
            "the renewal quote was a shock, costs keep going up.",
            "it is getting expensive per seat for a small team like ours.",
            "our finance team keeps asking why we pay this much.",
            "the pricing doesn't fit our budget anymore.",
            "we can't justify the cost with our current usage.",
            "the price increase at renewal was hard to swallow.",
        ),
        "competitor": (
            "we are evaluating a competitor that is cheaper.",
            "another vendor offered us a better deal and we are considering it.",
            "a competitor demoed features you don't have.",
            "some teams already moved to a competitor tool.",
            "we're trialling an alternative product this quarter.",
            "management asked us to compare you with a competitor.",
        ),
        "bugs": (
            "the bugs in reporting are still not fixed.",
            "we keep hitting the same bug with exports.",
            "too many bugs since the last release.",
            "the sync bug has been open for weeks.",
            "crashes and errors make the product unreliable for us.",
            "a critical bug blocked our team for days.",
        ),
        "support_slow": (
            "support takes days to answer.",
            "we wait too long for a support response.",
            "tickets sit without a reply, support is slow.",
            "getting help from support is painful and slow.",
            "the support team never follows up on our tickets.",
        ),
        "support_good": (
            "support is quick and helpful.",
            "your support team solved our issue within hours.",
            "great support, always responsive.",
            "the support folks really know the product.",
            "fast answers from support every time.",
        ),
        "easy": (
            "the product is easy to use.",
            "our team adopted it quickly, very intuitive.",
            "dashboards are clear and easy to set up.",
            "it is simple to use even for non-technical people.",
            "the interface is clean and easy to learn.",
            "ease of use is the main reason we stay.",
        ),
        "hard": (
            "it is hard to use and the setup is confusing.",
            "our people never really learned how to use it.",
            "the interface is confusing for new users.",
            "too complicated, adoption in our team is low.",
            "onboarding was difficult and nobody uses it much.",
        ),
        "cancel": (
            "we plan to cancel at the end of the term.",
            "we will probably not renew.",
            "we are thinking about cancelling our subscription.",
            "unless things improve we will cancel.",
            "we have decided to stop using the product after this contract.",
        ),
        "value": (
            "it saves us hours every week.",
            "the reports are genuinely valuable for our managers.",
            "great value, we rely on it daily.",
            "the automation features pay for themselves.",
            "it has become part of how we work.",
            "our café locations all run on it now.",
        ),
        "onboarding": (
            "the onboarding sessions helped a lot.",
            "training during onboarding was excellent.",
            "getting started took longer than expected.",
            "we needed more help in the first weeks.",
        ),
        "feature_gap": (
            "we are missing a proper API for our workflows.",
            "please add better permission controls.",
            "we need more export formats.",
            "integration with our CRM is still missing.",
            "the mobile app lacks key features.",
        ),
        "closer": (
            "",
            "Thanks.",
            "Please look into it.",
            "Keep it up!",
            "Hope this helps.",
            "Let's talk at the next review.",
            "Cheers.",
            "Merci.",
        ),
    },
    "ja": {
        "opener": (
            "",
            "正直に言うと、",
            "全体的に、",
            "率直に申し上げると、",
            "チームとしては、",
            "一年使ってみて、",
            "担当者として、",
        ),
        "price": (
            "価格が高すぎる。",
            "更新時の見積もりが高くて驚いた。",
            "利用状況に対して費用が見合わない。",
            "一席あたりの料金が高い。",
            "予算的にこの価格は厳しい。",
            "値上げが続いていて困っている。",
        ),
        "competitor": (
            "競合の製品の方が安い。",
            "他社のツールを検討している。",
            "競合他社から良い提案を受けた。",
            "一部の部署はすでに他社製品に移行した。",
            "別のサービスを試験導入中です。",
        ),
        "bugs": (
            "不具合がなかなか修正されない。",
            "レポートのバグがまだ直っていない。",
            "最近のリリース以降、エラーが多い。",
            "同期の不具合が何週間も続いている。",
            "重大なバグで業務が止まった。",
        ),
        "support_slow": (
            "サポートの返信が遅い。",
            "問い合わせへの回答に何日もかかる。",
            "サポートの対応が遅くて困る。",
            "チケットを出しても返事がない。",
        ),
        "support_good": (
            "サポートの対応が早くて助かる。",
            "サポートチームがすぐに解決してくれた。",
            "サポートはいつも丁寧で迅速です。",
            "問い合わせへの回答がとても早い。",
        ),
        "easy": (
            "使いやすい。",
            "画面が分かりやすく、すぐに慣れた。",
            "操作が簡単で、誰でも使える。",
            "ダッシュボードの設定が簡単です。",
            "直感的に使えるのが良い。",
        ),
        "hard": (
            "使い方が難しい。",
            "設定が複雑で分かりにくい。",
            "社内で使いこなせている人が少ない。",
            "新しいユーザーには操作が難しい。",
        ),
        "cancel": (
            "契約期間の終了で解約する予定です。",
            "更新はしないと思います。",
            "解約を検討しています。",
            "改善がなければ解約します。",
        ),
        "value": (
            "毎週の作業時間が大幅に減った。",
            "レポートが経営判断に役立っている。",
            "毎日欠かせないツールになった。",
            "自動化機能で十分に元が取れている。",
        ),
        "onboarding": (
            "導入時のトレーニングがとても良かった。",
            "立ち上げに想定より時間がかかった。",
            "最初の数週間はもっとサポートが欲しかった。",
        ),
        "feature_gap": (
            "APIの機能が足りない。",
            "権限管理を改善してほしい。",
            "エクスポート形式を増やしてほしい。",
            "CRMとの連携がまだない。",
        ),
        "closer": (
            "",
            "よろしくお願いします。",
            "改善を期待しています。",
            "今後も期待しています。",
            "ご検討ください。",
        ),
    },
    "zh": {
        "opener": (
            "",
            "说实话，",
            "总体来说，",
            "坦白讲，",
            "从我们团队来看，",
            "用了一年以后，",
            "作为负责人，",
        ),
        "price": (
            "价格太贵了。",
            "续费报价太高，让人吃惊。",
            "按我们的使用量来说，费用不划算。",
            "每个席位的价格偏高。",
            "预算有限，这个价格很难接受。",
            "价格一直在上涨。",
        ),
        "competitor": (
            "竞争对手的产品更便宜。",
            "我们正在评估其他厂商的工具。",
            "另一家供应商给了我们更好的报价。",
            "有些部门已经换成了竞品。",
            "这个季度我们在试用别的产品。",
        ),
        "bugs": (
            "bug一直没有修复。",
            "报表的问题到现在还没解决。",
            "最近一次更新之后错误很多。",
            "同步故障已经持续好几周了。",
            "严重的bug影响了我们的工作。",
        ),
        "support_slow": (
            "客服回复太慢。",
            "提交工单后好几天都没有回应。",
            "技术支持的响应速度太慢了。",
            "问题反馈了也没人跟进。",
        ),
        "support_good": (
            "客服响应很快，很有帮助。",
            "支持团队几个小时就解决了问题。",
            "技术支持一直很专业、很及时。",
            "客服回答问题非常迅速。",
        ),
        "easy": (
            "产品很好用。",
            "界面清晰，很快就上手了。",
            "操作简单，非技术人员也能用。",
            "仪表盘设置起来很方便。",
            "使用起来很直观。",
        ),
        "hard": (
            "产品太难用了。",
            "配置复杂，不容易理解。",
            "团队里会用的人很少。",
            "新用户很难上手。",
        ),
        "cancel": (
            "合同到期后我们打算取消。",
            "我们可能不会续约。",
            "我们正在考虑取消订阅。",
            "如果没有改善，我们会退订。",
        ),
        "value": (
            "每周为我们节省了很多时间。",
            "报表对管理层很有价值。",
            "已经成为我们每天离不开的工具。",
            "自动化功能物有所值。",
        ),
        "onboarding": (
            "上线培训非常有帮助。",
            "启动阶段花的时间比预期长。",
            "头几周我们需要更多的帮助。",
        ),
        "feature_gap": (
            "缺少完善的API。",
            "希望改进权限管理。",
            "需要更多的导出格式。",
            "还不能和我们的CRM集成。",
        ),
        "closer": ("", "谢谢。", "希望尽快改进。", "期待更好的版本。", "请认真考虑。"),
    },
}

NEGATIVE_TOPICS = ("price", "competitor", "bugs", "support_slow", "hard", "cancel")
POSITIVE_TOPICS = ("support_good", "easy", "value")
NEUTRAL_TOPICS = ("onboarding", "feature_gap")
TOPICS = NEGATIVE_TOPICS + POSITIVE_TOPICS + NEUTRAL_TOPICS


def compose(language: str, topics: list[str], picks: list[int]) -> str:
    """Build one comment from the bank: picks are random integers, one per slot."""
    bank = BANKS[language]
    sep = " " if language == "en" else ""
    opener = bank["opener"][picks[0] % len(bank["opener"])]
    closer = bank["closer"][picks[1] % len(bank["closer"])]
    parts = [bank[t][p % len(bank[t])] for t, p in zip(topics, picks[2:], strict=False)]
    if language == "en":
        # every sentence starts with a capital, except the one continuing the opener
        parts = [p if i == 0 and opener else p[0].upper() + p[1:] for i, p in enumerate(parts)]
    text = sep.join(p for p in (opener, *parts, closer) if p)
    return text
