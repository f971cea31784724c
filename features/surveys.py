"""Survey features: latest NPS and its change, NPS category, recency, non-response,
and the per-account aggregation of comment themes and sentiment.

Point in time: a response exists at t when submitted_at < t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.engine import Engine
from features.text import THEMES


def build_survey_features(engine: Engine, snaps: str, surveys: str, wave_days: int) -> pd.DataFrame:
    """NPS features per (account_id, snapshot_date) from the `surveys` table.

    Non-response: 1 when the company received responses in the `wave_days` before t but
    this account sent none, 0 when it responded, NaN when nobody responded (no wave).
    Survey sends are not in the data contract, so waves are inferred from responses.
    """
    d = engine.dialect
    t = "s.snapshot_date"
    since_last = d.days_between("r.submitted_at", t)
    ranked = engine.query(
        f"""
        WITH known AS (
            SELECT s.account_id, s.snapshot_date, r.submitted_at, r.nps,
                   ROW_NUMBER() OVER (
                       PARTITION BY s.account_id, s.snapshot_date
                       ORDER BY CASE WHEN r.nps IS NULL THEN 1 ELSE 0 END, r.submitted_at DESC,
                                r.response_id DESC
                   ) AS nps_rank,
                   {since_last} AS days_ago,
                   CASE WHEN r.submitted_at >= {d.minus_days(t, 365)} THEN 1 ELSE 0 END AS in_365d
            FROM {snaps} s
            JOIN {surveys} r ON r.account_id = s.account_id AND r.submitted_at < {t}
        )
        SELECT account_id, snapshot_date,
               MAX(CASE WHEN nps_rank = 1 THEN nps END) AS nps_last,
               MAX(CASE WHEN nps_rank = 2 THEN nps END) AS nps_prev,
               MIN(days_ago) AS days_since_last_survey,
               SUM(in_365d) AS surveys_365d,
               AVG(CASE WHEN in_365d = 1 THEN nps END) AS nps_mean_365d,
               SUM(CASE WHEN days_ago <= {int(wave_days)} THEN 1 ELSE 0 END) AS responses_wave
        FROM known
        GROUP BY account_id, snapshot_date
        """
    )
    waves = engine.query(
        f"""
        SELECT s.snapshot_date, COUNT(*) AS company_responses
        FROM (SELECT DISTINCT snapshot_date FROM {snaps}) s
        JOIN {surveys} r ON r.submitted_at < {t} AND r.submitted_at >= {d.minus_days(t, wave_days)}
        GROUP BY s.snapshot_date
        """
    )
    keys = engine.query(f"SELECT DISTINCT account_id, snapshot_date FROM {snaps}")
    out = keys.merge(ranked, on=["account_id", "snapshot_date"], how="left")
    out = out.merge(waves, on="snapshot_date", how="left")
    for col in ("nps_last", "nps_prev", "days_since_last_survey", "nps_mean_365d"):
        out[col] = out[col].astype(float)
    out["surveys_365d"] = out["surveys_365d"].fillna(0).astype(float)
    out["nps_change_last"] = out["nps_last"] - out["nps_prev"]
    out["nps_last_detractor"] = np.where(out["nps_last"].isna(), np.nan, (out["nps_last"] <= 6).astype(float))
    out["nps_last_promoter"] = np.where(out["nps_last"].isna(), np.nan, (out["nps_last"] >= 9).astype(float))
    wave = out["company_responses"].fillna(0) > 0
    responded = out["responses_wave"].fillna(0) > 0
    out["survey_nonresponse_last_wave"] = np.where(wave, (~responded).astype(float), np.nan)
    return out.drop(columns=["responses_wave", "company_responses"])


def build_comment_features(engine: Engine, snaps: str, comments: str, with_sentiment: bool) -> pd.DataFrame:
    """Theme counts and sentiment of the comments submitted in the 180 days before t, and
    each theme's share of the comments of the 365 days before t (NaN without comments).

    `comments` has account_id, submitted_at, response_id, sentiment (may be NULL) and one
    0/1 column `theme_<name>` per theme.
    """
    d = engine.dialect
    t = "s.snapshot_date"
    themes = ",\n".join(
        f"SUM(CASE WHEN in180 = 1 THEN theme_{th} ELSE 0 END) AS comments_theme_{th}_180d" for th in THEMES
    )
    # Share of the year's comments per theme: a steadier read of what an account keeps raising.
    shares = ",\n".join(
        f"AVG(CASE WHEN in365 = 1 THEN theme_{th} END) AS comments_theme_{th}_365d_share" for th in THEMES
    )
    sentiment = ""
    if with_sentiment:
        sentiment = """,
               AVG(CASE WHEN in180 = 1 THEN sentiment END) AS comment_sentiment_mean_180d,
               MIN(CASE WHEN in180 = 1 THEN sentiment END) AS comment_sentiment_min_180d,
               MAX(CASE WHEN rn = 1 THEN sentiment END) AS comment_sentiment_last"""
    theme_cols = ", ".join(f"k.theme_{th}" for th in THEMES)
    raw = engine.query(
        f"""
        WITH c AS (
            SELECT s.account_id, s.snapshot_date, k.sentiment, {theme_cols},
                   CASE WHEN k.submitted_at >= {d.minus_days(t, 180)} THEN 1 ELSE 0 END AS in180,
                   CASE WHEN k.submitted_at >= {d.minus_days(t, 365)} THEN 1 ELSE 0 END AS in365,
                   ROW_NUMBER() OVER (
                       PARTITION BY s.account_id, s.snapshot_date
                       ORDER BY k.submitted_at DESC, k.response_id DESC
                   ) AS rn
            FROM {snaps} s
            JOIN {comments} k ON k.account_id = s.account_id AND k.submitted_at < {t}
        )
        SELECT account_id, snapshot_date,
               SUM(in180) AS comments_180d,
               SUM(in365) AS comments_365d,
               {themes},
               {shares}{sentiment}
        FROM c
        GROUP BY account_id, snapshot_date
        """
    )
    keys = engine.query(f"SELECT DISTINCT account_id, snapshot_date FROM {snaps}")
    out = keys.merge(raw, on=["account_id", "snapshot_date"], how="left")
    for col in raw.columns:
        if col in ("account_id", "snapshot_date"):
            continue
        out[col] = out[col].astype(float)
        if col.startswith("comments_") and not col.endswith("_share"):  # a share of no comments is NaN
            out[col] = out[col].fillna(0.0)
    return out
