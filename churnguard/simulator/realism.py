"""Realism figures of a simulated company, computed from its written files.

Used by docs/simulator.md, the tests and the benchmark: logo churn of SMB accounts on
monthly billing, annual renewal rate, and the oracle's ROC-AUC for churn within the
horizon on the last labelled year of snapshot dates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def _naive(s: pd.Series) -> pd.Series:
    s = pd.to_datetime(s, utc=True, format="ISO8601")
    return s.dt.tz_localize(None)


def oracle_labels(truth: Path, horizon_days: int) -> pd.DataFrame:
    """Oracle rows with the realised label (churn in (t, t + horizon]) where observable."""
    meta = json.loads((truth / "sim_meta.json").read_text(encoding="utf-8"))
    data_end = pd.Timestamp(meta["data_end"]).tz_localize(None)
    oracle = pd.read_parquet(truth / "oracle.parquet")
    churn = pd.read_parquet(truth / "churn_events.parquet")[["account_id", "churn_date"]]
    df = oracle.merge(churn, on="account_id", how="left")
    horizon_end = df["snapshot_date"] + pd.Timedelta(days=horizon_days)
    df["observable"] = horizon_end <= data_end
    df["label"] = ((df["churn_date"] > df["snapshot_date"]) & (df["churn_date"] <= horizon_end)).astype(float)
    return df


def realism_figures(raw: Path, truth: Path, horizon_days: int = 90) -> dict[str, float]:
    """The headline figures of docs/simulator.md for one simulated company."""
    accounts = pd.read_parquet(raw / "accounts.parquet")
    subs = pd.read_parquet(raw / "subscriptions.parquet")
    churn = pd.read_parquet(truth / "churn_events.parquet")
    meta = json.loads((truth / "sim_meta.json").read_text(encoding="utf-8"))
    data_start = pd.Timestamp(meta["data_start"]).tz_localize(None)
    data_end = pd.Timestamp(meta["data_end"]).tz_localize(None)
    subs = subs.assign(start_date=_naive(subs["start_date"]), end_date=_naive(subs["end_date"]))
    subs = subs.merge(accounts[["account_id", "segment"]], on="account_id")
    churned = set(churn["account_id"])
    last_end = subs.groupby("account_id")["end_date"].transform("max")
    ended = subs[(subs["end_date"] >= data_start) & (subs["end_date"] < data_end)]
    is_churn = ended["account_id"].isin(churned) & (ended["end_date"] == last_end.loc[ended.index])

    out: dict[str, float] = {}
    smb_monthly = (ended["segment"] == "smb") & (ended["billing_period"] == "monthly")
    out["smb_monthly_logo_churn_per_month"] = float(is_churn[smb_monthly].mean())
    annual = ended["billing_period"] == "annual"
    out["annual_renewal_rate"] = float(1.0 - is_churn[annual].mean())
    out["monthly_renewal_decisions"] = float((ended["billing_period"] == "monthly").sum())
    out["annual_renewal_decisions"] = float(annual.sum())
    labelled = oracle_labels(truth, horizon_days)
    labelled = labelled[labelled["observable"]]
    dates = np.sort(labelled["snapshot_date"].unique())[-12:]
    last_year = labelled[labelled["snapshot_date"].isin(dates)]
    out["oracle_roc_auc_last_year"] = float(roc_auc_score(last_year["label"], last_year["p_churn_horizon"]))
    out["oracle_mean_p_last_year"] = float(last_year["p_churn_horizon"].mean())
    out["label_rate_last_year"] = float(last_year["label"].mean())
    out["oracle_rows_last_year"] = float(len(last_year))
    out["churned_accounts"] = float(len(churn))
    return out


def driver_effects(truth: Path) -> dict[str, dict[str, float]]:
    """Realised churn rate at term ends with each latent driver present vs absent."""
    lat = pd.read_parquet(truth / "latent_monthly.parquet")
    lat = lat[lat["term_ends_this_month"]]
    churn = pd.read_parquet(truth / "churn_events.parquet")
    month = churn["churn_date"].dt.to_period("M").dt.to_timestamp()
    keys = pd.MultiIndex.from_arrays([churn["account_id"], month])
    churned = pd.MultiIndex.from_arrays([lat["account_id"], lat["month_start"]]).isin(keys)
    acc = pd.read_parquet(truth / "accounts_truth.parquet").set_index("account_id")
    flags = {
        # the decision sees experienced usage (the month's events relative to the team's reach)
        "engagement_bottom_quartile": lat["usage_experienced_avg"]
        < lat["usage_experienced_avg"].quantile(0.25),
        "engagement_falling": (lat["usage_experienced_avg"] - lat["usage_experienced"]) > 0.3,
        "disengaging": lat["disengaging"],
        "champion_recently_lost": lat["champion_recently_lost"],
        "open_high_bugs": lat["open_high_bugs"] > 0,
        "slow_support": lat["account_id"].map(acc["slow_support"]).astype(bool),
        "poor_onboarding": lat["account_id"].map(acc["poor_onboarding"]).astype(bool),
        "price_sensitive_top_quartile": lat["account_id"].map(acc["price_sensitivity"])
        > acc["price_sensitivity"].quantile(0.75),
    }
    out = {}
    for name, flag in flags.items():
        f = flag.to_numpy(bool)
        out[name] = {
            "share_of_decisions": float(f.mean()),
            "churn_rate_with": float(churned[f].mean()) if f.any() else float("nan"),
            "churn_rate_without": float(churned[~f].mean()),
        }
    return out


def signal_figures(raw: Path, truth: Path) -> dict[str, float]:
    """Observable signals: usage decline before churn, comment variety per language."""
    churn = pd.read_parquet(truth / "churn_events.parquet")
    meta = json.loads((truth / "sim_meta.json").read_text(encoding="utf-8"))
    start = pd.Timestamp(meta["data_start"]).tz_localize(None)
    churn = churn[churn["churn_date"] >= start + pd.Timedelta(days=150)]
    counts = []
    for part in sorted((raw / "usage_events").glob("*.parquet")):
        ev = pd.read_parquet(part, columns=["account_id", "timestamp"])
        ev = ev[ev["account_id"].isin(churn["account_id"])]
        ev = ev.assign(t=_naive(ev["timestamp"])).merge(churn[["account_id", "churn_date"]], on="account_id")
        days = (ev["churn_date"] - ev["t"]).dt.days
        window = pd.cut(days, [-1, 59, 119], labels=["recent", "earlier"])
        counts.append(ev.groupby(["account_id", window], observed=True).size())
    both = pd.concat(counts).groupby(level=[0, 1]).sum().unstack(fill_value=0)
    out = {"churns_with_usage_decline": float((both["recent"] < both["earlier"]).mean())}
    tickets_file = raw / "tickets.parquet"
    if tickets_file.exists():
        tickets = pd.read_parquet(tickets_file, columns=["account_id", "created_at"])
        t = tickets.assign(t=_naive(tickets["created_at"])).merge(
            churn[["account_id", "churn_date"]], on="account_id"
        )
        days = (t["churn_date"] - t["t"]).dt.days
        ids = pd.Index(churn["account_id"])
        last = t[(days >= 0) & (days < 90)].groupby("account_id").size().reindex(ids, fill_value=0)
        prior = t[(days >= 90) & (days < 180)].groupby("account_id").size().reindex(ids, fill_value=0)
        out["tickets_per_churner_last_90d"] = float(last.mean())
        out["tickets_per_churner_prior_90d"] = float(prior.mean())
    surveys_file = raw / "surveys.parquet"
    if surveys_file.exists():
        surveys = pd.read_parquet(surveys_file).merge(
            pd.read_parquet(raw / "accounts.parquet")[["account_id", "country"]], on="account_id"
        )
        lang = surveys["country"].map({"JP": "ja", "CN": "zh", "TW": "zh"}).fillna("en")
        for code in ("en", "ja", "zh"):
            out[f"distinct_comments_{code}"] = float(surveys.loc[lang == code, "comment"].dropna().nunique())
    return out


def main() -> None:
    """Print the realism figures of a simulated company as JSON: RAW_DIR TRUTH_DIR."""
    import sys

    raw, truth = Path(sys.argv[1]), Path(sys.argv[2])
    figures = {
        **realism_figures(raw, truth),
        **signal_figures(raw, truth),
        "driver_effects": driver_effects(truth),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
