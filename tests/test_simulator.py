"""Tests of the simulated company: determinism, contract, dirt, drivers, oracle, languages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from churnguard.contract import QUARANTINE_REASONS, REPAIR_CODES, TABLES
from churnguard.simulator.phrases import BANKS
from churnguard.simulator.realism import driver_effects, oracle_labels, realism_figures
from pipeline import simulate


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _simulate(root: Path, **kw: object) -> tuple[Path, Path]:
    args = {"accounts": 40, "months": 5, "seed": 3, "dirty": False, "start": "2024-01-01", "oracle_paths": 16}
    args.update(kw)
    simulate.run(out=root / "raw", truth_out=root / "truth", **args)  # type: ignore[arg-type]
    return root / "raw", root / "truth"


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A mid-sized company with few events per user: enough churn to test directions."""
    root = tmp_path_factory.mktemp("sim_company")
    return _simulate(root, accounts=700, months=15, seed=11, events_per_user_day=0.25, oracle_paths=64)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sim_dirty")
    return _simulate(root, accounts=80, months=6, seed=5, dirty=True, dirty_rate=0.01)


def _events(raw: Path) -> pd.DataFrame:
    parts = sorted((raw / "usage_events").glob("part-*.parquet"))
    return pd.concat(
        [
            pd.read_parquet(p).assign(_file=p.name, _row=np.arange(pq.ParquetFile(p).metadata.num_rows))
            for p in parts
        ],
        ignore_index=True,
    )


# ------------------------------------------------------------------ determinism
@pytest.mark.parametrize("dirty_mode", [False, True])
def test_same_seed_gives_byte_identical_files(tmp_path: Path, dirty_mode: bool) -> None:
    a = _simulate(tmp_path / "a", dirty=dirty_mode)
    b = _simulate(tmp_path / "b", dirty=dirty_mode)
    assert _digest(a[0]) == _digest(b[0])
    assert _digest(a[1]) == _digest(b[1])
    c = _simulate(tmp_path / "c", dirty=dirty_mode, seed=4)
    assert _digest(c[0]) != _digest(a[0])


# ------------------------------------------------------------------ data contract
def test_clean_tables_follow_the_contract(company: tuple[Path, Path]) -> None:
    raw, _ = company
    for name, table in TABLES.items():
        if name == "usage_events":
            schema = pq.read_schema(sorted((raw / "usage_events").glob("*.parquet"))[0])
        else:
            schema = pq.read_schema(raw / f"{name}.parquet")
        # The clean log has no event ids (nothing in it repeats); the dirty one adds them.
        expected = [c for c in table.column_names if not (name == "usage_events" and c == "event_id")]
        assert schema.names == expected, name
        for col in table.columns:
            if col.name not in schema.names:
                continue
            typ = schema.field(col.name).type
            if col.kind == "timestamp":
                assert typ == pa.timestamp("us", tz="UTC"), (name, col.name, typ)
            elif col.kind in ("id", "category", "text"):
                assert pa.types.is_string(typ) or pa.types.is_large_string(typ), (name, col.name, typ)
            elif col.kind == "float":
                assert pa.types.is_floating(typ), (name, col.name)
            elif col.kind == "int":
                assert pa.types.is_integer(typ), (name, col.name)
            elif col.kind == "bool":
                assert pa.types.is_boolean(typ), (name, col.name)
    subs = pd.read_parquet(raw / "subscriptions.parquet")
    assert set(subs["billing_period"]) == {"monthly", "annual"}
    assert (subs["end_date"] > subs["start_date"]).all()
    assert (subs["mrr"] > 0).all()
    tickets = pd.read_parquet(raw / "tickets.parquet")
    assert set(tickets["category"]) <= set(TABLES["tickets"].column("category").allowed or ())
    assert set(tickets["severity"]) == {"low", "medium", "high", "urgent"}
    assert (tickets["resolved_at"].dropna() > tickets.loc[tickets["resolved_at"].notna(), "created_at"]).all()
    users = pd.read_parquet(raw / "users.parquet")
    assert set(users["role"]) == {"admin", "champion", "member"}
    assert users["user_id"].is_unique and tickets["ticket_id"].is_unique and subs["subscription_id"].is_unique


def test_events_are_sorted_unique_and_inside_the_data_window(company: tuple[Path, Path]) -> None:
    raw, truth = company
    meta = json.loads((truth / "sim_meta.json").read_text())
    ev = _events(raw)
    assert len(ev) > 50_000
    assert ev.groupby("_file")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()
    assert not ev.duplicated(["account_id", "user_id", "timestamp", "event"]).any()
    assert ev["timestamp"].min() >= pd.Timestamp(meta["data_start"])
    assert ev["timestamp"].max() < pd.Timestamp(meta["data_end"])
    assert ev["event"].nunique() >= 10
    # a churned account has no events after its churn date
    churn = pd.read_parquet(truth / "churn_events.parquet")
    last = ev.groupby("account_id")["timestamp"].max().dt.tz_localize(None)
    merged = churn.set_index("account_id").join(last.rename("last_event"), how="inner")
    assert (merged["last_event"] < merged["churn_date"]).all()
    # weekly seasonality: weekdays busier than weekends
    weekday = ev["timestamp"].dt.dayofweek
    assert (weekday < 5).mean() > 0.8


def test_no_label_like_column_in_the_tables(company: tuple[Path, Path]) -> None:
    raw, _ = company
    files = [*raw.glob("*.parquet"), sorted((raw / "usage_events").glob("*.parquet"))[0]]
    for path in files:
        for col in pq.read_schema(path).names:
            assert not any(
                word in col.lower() for word in ("churn", "label", "risk", "oracle", "target", "latent")
            )
            assert col in {c for t in TABLES.values() for c in t.column_names}, (path.name, col)


# ------------------------------------------------------------------ realism and drivers
def test_realism_figures_are_in_plausible_ranges(company: tuple[Path, Path]) -> None:
    raw, truth = company
    fig = realism_figures(raw, truth)
    assert 0.01 <= fig["smb_monthly_logo_churn_per_month"] <= 0.05
    assert 0.75 <= fig["annual_renewal_rate"] <= 0.95
    assert 0.72 <= fig["oracle_roc_auc_last_year"] <= 0.95
    # the oracle is calibrated: its mean equals the realised rate up to sampling noise
    assert abs(fig["oracle_mean_p_last_year"] - fig["label_rate_last_year"]) < 0.02


def _decision_rates(truth: Path, column: str, file: str = "latent_monthly.parquet") -> tuple[float, float]:
    """Realised churn rate at term ends with the driver present vs absent."""
    lat = pd.read_parquet(truth / file)
    lat = lat[lat["term_ends_this_month"]]
    churn = pd.read_parquet(truth / "churn_events.parquet")
    month = churn["churn_date"].dt.to_period("M").dt.to_timestamp()
    churned = set(zip(churn["account_id"], month, strict=True))
    lat = lat.assign(
        churned=[(a, m) in churned for a, m in zip(lat["account_id"], lat["month_start"], strict=True)]
    )
    flag = lat[column] if lat[column].dtype == bool else lat[column] > 0
    return float(lat.loc[flag, "churned"].mean()), float(lat.loc[~flag, "churned"].mean())


@pytest.mark.parametrize("driver", ["champion_recently_lost", "open_high_bugs", "disengaging"])
def test_each_latent_driver_raises_realised_churn(company: tuple[Path, Path], driver: str) -> None:
    with_driver, without = _decision_rates(company[1], driver)
    assert with_driver > without * 1.15, (driver, with_driver, without)


def test_driver_effects_table_is_monotone(company: tuple[Path, Path]) -> None:
    effects = driver_effects(company[1])
    assert len(effects) == 8
    for name, e in effects.items():
        assert e["churn_rate_with"] > e["churn_rate_without"], (name, e)


def test_low_engagement_poor_onboarding_and_slow_support_raise_churn(company: tuple[Path, Path]) -> None:
    raw, truth = company
    lat = pd.read_parquet(truth / "latent_monthly.parquet")
    low = lat["engagement"] < lat["engagement"].quantile(0.25)
    high = lat["engagement"] > lat["engagement"].quantile(0.75)
    path = truth / "latent_monthly.parquet"
    pd.DataFrame(lat.assign(low_engagement=low)[~high | low]).to_parquet(path.with_name("_low.parquet"))
    with_low, rest = _decision_rates(truth, "low_engagement", "_low.parquet")
    assert with_low > 3 * rest, (with_low, rest)

    acc = pd.read_parquet(truth / "accounts_truth.parquet")
    churned = acc["churn_date"].notna()
    assert churned[acc["slow_support"]].mean() > churned[~acc["slow_support"]].mean()
    meta = json.loads((truth / "sim_meta.json").read_text())
    created = pd.read_parquet(raw / "accounts.parquet")["created_at"]
    new = (created >= pd.Timestamp(meta["data_start"])).to_numpy()
    poor = acc["poor_onboarding"].to_numpy()
    assert churned[new & poor].mean() > churned[new & ~poor].mean()


def test_observable_signals_decline_before_churn(company: tuple[Path, Path]) -> None:
    """Events and ticket volume fall in the months before most churns."""
    raw, truth = company
    churn = pd.read_parquet(truth / "churn_events.parquet")
    meta = json.loads((truth / "sim_meta.json").read_text())
    start = pd.Timestamp(meta["data_start"]).tz_localize(None)
    churn = churn[churn["churn_date"] >= start + pd.Timedelta(days=150)]
    ev = _events(raw)[["account_id", "timestamp"]]
    ev = ev.assign(t=ev["timestamp"].dt.tz_localize(None)).merge(churn, on="account_id")
    before = (ev["churn_date"] - ev["t"]).dt.days
    recent = ev[(before >= 0) & (before < 60)].groupby("account_id").size()
    earlier = ev[(before >= 60) & (before < 120)].groupby("account_id").size()
    both = pd.concat([recent.rename("recent"), earlier.rename("earlier")], axis=1).fillna(0)
    declining = (both["recent"] < both["earlier"]).mean()
    assert declining > 0.6, declining


def test_comment_language_follows_country_and_comments_vary(company: tuple[Path, Path]) -> None:
    raw, _ = company
    surveys = pd.read_parquet(raw / "surveys.parquet").merge(
        pd.read_parquet(raw / "accounts.parquet")[["account_id", "country"]], on="account_id"
    )
    commented = surveys.dropna(subset=["comment"])
    kana = commented["comment"].str.contains(r"[\u3040-\u30ff]")
    cjk = commented["comment"].str.contains(r"[\u4e00-\u9fff]")
    jp = commented["country"] == "JP"
    zh = commented["country"].isin(["CN", "TW"])
    assert kana[jp].all() and not kana[~jp].any()
    assert cjk[zh].all() and not cjk[~jp & ~zh].any()
    assert commented.loc[~jp & ~zh, "comment"].str.contains(r"[A-Za-z]").all()
    assert commented.loc[~jp & ~zh, "comment"].nunique() > 150
    assert commented.loc[jp, "comment"].nunique() > 40
    assert set(surveys["nps"]) <= set(range(11))
    # detractors mention cancelling / competitors more often than promoters
    en = commented[~jp & ~zh]
    negative = en["comment"].str.contains("cancel|competitor|not renew|alternative|another vendor")
    assert negative[en["nps"] <= 6].mean() > negative[en["nps"] >= 9].mean()


def test_phrase_banks_have_the_same_topics_in_every_language() -> None:
    keys = {lang: set(bank) for lang, bank in BANKS.items()}
    assert keys["en"] == keys["ja"] == keys["zh"]


# ------------------------------------------------------------------ oracle
def test_oracle_covers_active_accounts_at_month_starts(company: tuple[Path, Path]) -> None:
    raw, truth = company
    oracle = pd.read_parquet(truth / "oracle.parquet")
    assert list(oracle.columns) == ["account_id", "snapshot_date", "p_churn_horizon"]
    assert oracle["p_churn_horizon"].between(0, 1).all()
    assert (oracle["snapshot_date"].dt.day == 1).all() and (oracle["snapshot_date"].dt.hour == 0).all()
    assert not oracle.duplicated(["account_id", "snapshot_date"]).any()
    subs = pd.read_parquet(raw / "subscriptions.parquet")
    t = oracle["snapshot_date"].max() - pd.DateOffset(months=3)
    start = subs["start_date"].dt.tz_localize(None)
    end = subs["end_date"].dt.tz_localize(None)
    active = set(subs.loc[(start <= t) & (end > t), "account_id"])
    assert set(oracle.loc[oracle["snapshot_date"] == t, "account_id"]) == active
    labelled = oracle_labels(truth, 90)
    labelled = labelled[labelled["observable"]]
    assert roc_auc_score(labelled["label"], labelled["p_churn_horizon"]) > 0.75


# ------------------------------------------------------------------ dirt
def test_faults_json_uses_contract_codes_and_matches_the_files(dirty: tuple[Path, Path]) -> None:
    raw, truth = dirty
    faults = json.loads((truth / "faults.json").read_text())
    codes = set(QUARANTINE_REASONS) | set(REPAIR_CODES)
    assert all(set(c) <= codes for c in faults.values())
    ev_faults = faults["usage_events"]
    assert set(ev_faults) >= {
        "duplicate_exact", "future_timestamp", "unknown_account", "out_of_order", "user_account_mismatch"
    }  # fmt: skip
    ev = _events(raw)
    accounts = set(pd.read_parquet(raw / "accounts.parquet")["account_id"])
    users = set(pd.read_parquet(raw / "users.parquet")["user_id"])
    ts = pd.to_datetime(ev["timestamp"], utc=True, format="ISO8601", errors="coerce")
    assert ts.isna().sum() == ev_faults["unparseable_timestamp"]
    assert (ts > pd.Timestamp("2030-01-01", tz="UTC")).sum() == ev_faults["future_timestamp"]
    assert (~ev["account_id"].isin(accounts)).sum() == ev_faults["unknown_account"]
    assert (ev["account_id"].isin(accounts) & ev["user_id"].notna() & ~ev["user_id"].isin(users)).sum() == (
        ev_faults["unknown_user"]
    )
    assert ev["user_id"].isna().sum() == ev_faults["missing_required"]
    user_account = pd.read_parquet(raw / "users.parquet").drop_duplicates("user_id").set_index("user_id")
    home = ev["user_id"].map(user_account["account_id"])
    assert (home.notna() & ev["account_id"].isin(accounts) & (home != ev["account_id"])).sum() == (
        ev_faults["user_account_mismatch"]
    )
    assert ev["quantity"].isna().sum() == ev_faults["defaulted_value"]
    assert (ev["quantity"] < 0).sum() == ev_faults["out_of_range"]
    assert ev.drop(columns=["_row"]).duplicated().sum() == ev_faults["duplicate_exact"]
    # every event has an id; only the exact re-deliveries repeat one
    assert ev["event_id"].notna().all()
    assert ev["event_id"].duplicated().sum() == ev_faults["duplicate_exact"]
    # late rows: a kept row earlier than the previous kept row of its account in the same file
    kept = ev[ev["account_id"].isin(accounts) & ev["user_id"].isin(users) & ts.notna()]
    kept = kept[(ts[kept.index] < pd.Timestamp("2030-01-01", tz="UTC")) & (kept["quantity"].fillna(1) >= 0)]
    kept = kept[~kept.drop(columns=["_row"]).duplicated()]
    t = pd.to_datetime(kept["timestamp"], utc=True, format="ISO8601")
    prev = t.groupby([kept["_file"], kept["account_id"]]).shift()
    assert int((t < prev).sum()) == ev_faults["out_of_order"]
    # mixed encodings: lines of surveys.csv that are not UTF-8
    bad = 0
    for line in (raw / "surveys.csv").read_bytes().splitlines():
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad += 1
    assert bad == faults["surveys"]["repaired_encoding"] > 0
    subs = pd.read_parquet(raw / "subscriptions.parquet")
    assert (~subs["billing_period"].isin(["monthly", "annual"])).sum() == (
        faults["subscriptions"]["normalised_category"] + faults["subscriptions"]["unknown_category"]
    )


def test_validation_report_equals_faults_json(dirty: tuple[Path, Path], tmp_path: Path) -> None:
    """The validator (built in parallel) must account for every injected fault exactly."""
    validate = pytest.importorskip("pipeline.validate")
    raw, truth = dirty
    report = validate.run(input_dir=raw, out_dir=tmp_path / "validated")
    faults = json.loads((truth / "faults.json").read_text())
    tables = report.get("tables", report)
    for name, codes in faults.items():
        got = {**tables[name]["reasons"], **tables[name]["repairs"]}
        assert got == codes, name


# ------------------------------------------------------------------ stage entry point
def test_folder_source_writes_only_markers(tmp_path: Path) -> None:
    user_data = tmp_path / "exports"
    user_data.mkdir()
    (user_data / "accounts.csv").write_text("account_id,created_at\nA1,2024-01-01\n")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"source": "folder", "input": str(user_data)}}))
    simulate.main(
        ["--out", str(tmp_path / "sim"), "--truth-out", str(tmp_path / "truth"), "--params", str(params)]
    )
    assert [p.name for p in (tmp_path / "sim").iterdir()] == ["SKIPPED.txt"]
    assert [p.name for p in (tmp_path / "truth").iterdir()] == ["SKIPPED.txt"]
    assert [p.name for p in user_data.iterdir()] == ["accounts.csv"]


def test_tiny_raw_fixture_runs_the_stage(tiny_raw) -> None:  # type: ignore[no-untyped-def]
    raw = tiny_raw.raw
    assert (raw / "accounts.parquet").exists() and (raw / "surveys.parquet").exists()
    assert len(list((raw / "usage_events").glob("part-*.parquet"))) == 18
    assert (tiny_raw.truth / "oracle.parquet").exists()
    assert len(pd.read_parquet(raw / "accounts.parquet")) == 150


def test_bad_start_date_is_a_clear_input_error(tmp_path: Path) -> None:
    from churnguard.errors import InputError

    with pytest.raises(InputError, match=r"simulate\.start"):
        simulate.run(
            out=tmp_path / "raw", truth_out=None, accounts=5, months=2, seed=1, dirty=False, start="soon"
        )


def test_clean_company_passes_validation_untouched(tiny_validated) -> None:  # type: ignore[no-untyped-def]
    """Clean mode has no faults: nothing quarantined, nothing repaired."""
    report = json.loads((tiny_validated.validated / "validation_report.json").read_text())
    tables = report.get("tables", report)
    for name in TABLES:
        assert tables[name]["rows_quarantined"] == 0, (name, tables[name]["reasons"])
        assert tables[name]["repairs"] == {}, (name, tables[name]["repairs"])


def test_usage_driver_is_the_usage_in_the_event_log(company: tuple[Path, Path]) -> None:
    """The decision's usage terms are computed from the events the customer really had.

    `usage_experienced` at a month start must equal log((events of the month before + 0.5)
    / (reach + 0.5)) counted from the written event log, so the driver leaves an exact trace.
    """
    raw, truth = company
    lat = pd.read_parquet(truth / "latent_monthly.parquet")
    events = pd.concat(
        pd.read_parquet(p, columns=["account_id", "timestamp"])
        for p in sorted((raw / "usage_events").glob("*.parquet"))
    )
    month = events["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M").dt.to_timestamp()
    counts = events.groupby([events["account_id"], month]).size()
    prev = lat["month_start"] - pd.DateOffset(months=1)
    lat = lat[prev >= month.min()]
    prev = (lat["month_start"] - pd.DateOffset(months=1)).dt.to_period("M").dt.to_timestamp()
    keys = pd.MultiIndex.from_arrays([lat["account_id"], prev])
    n = counts.reindex(keys).fillna(0).to_numpy(float)
    expected = np.log((n + 0.5) / (lat["usage_reach"].to_numpy(float) + 0.5))
    assert len(lat) > 1000
    np.testing.assert_allclose(lat["usage_experienced"].to_numpy(float), expected, rtol=0, atol=1e-9)
    # and a falling experienced usage is what the decline driver sees
    fell = (lat["usage_experienced_avg"] - lat["usage_experienced"]) > 0.3
    assert 0.02 < fell.mean() < 0.5
