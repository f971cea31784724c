"""THE leakage test: features at t must not change when anything after t changes.

For random snapshot dates t, every table is cut and altered after t (later events,
tickets created after t, first responses and resolutions after t moved or erased,
escalation/CSAT of tickets still open at t flipped, deactivations after t moved or
erased, cancellations after t erased, subscriptions starting after t replaced, surveys
after t replaced, accounts created after t removed, plus new junk rows after t); the
features at t, rebuilt with the fitted state (core events, text model) held fixed, must
be bit-for-bit identical, and so must the snapshot facts at t (eligibility, MRR, seats,
billing period, renewal date).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.build import FeatureParams, FittedState, build_features, fit_feature_state
from features.engine import Engine
from features.health import HealthParams
from features.snapshots import SnapshotParams, build_activity_snapshots, build_snapshots, term_facts
from features.usage import prepare_event_aggregates

KEYS = ["account_id", "snapshot_date"]
FACTS = [
    "account_id",
    "snapshot_date",
    "mrr",
    "arr",
    "billing_period",
    "seats",
    "renewal_date",
    "days_to_renewal",
]
H = pd.Timedelta(hours=1)


def _load(validated: Path) -> tuple[dict[str, pd.DataFrame | None], pd.DataFrame]:
    from churnguard import tables

    loaded = {
        n: tables.read_clean(validated, n)
        for n in ("accounts", "subscriptions", "users", "tickets", "surveys")
    }
    events = duckdb.connect().execute(f"SELECT * FROM read_parquet('{tables.events_glob(validated)}')").df()
    return loaded, events


def _later(ts: pd.Series, t: pd.Timestamp, rng: np.random.Generator) -> pd.Series:
    """Move each value to another time after t, or erase it (half each)."""
    hours = rng.integers(1, 2000, len(ts))
    moved = pd.Series(t + pd.to_timedelta(hours, unit="h"), index=ts.index).astype("datetime64[us]")
    erase = rng.random(len(ts)) < 0.5
    return moved.where(~erase, pd.NaT)


def alter_after(
    tables: dict[str, pd.DataFrame | None], events: pd.DataFrame, t: pd.Timestamp, seed: int
) -> tuple[dict[str, pd.DataFrame | None], pd.DataFrame]:
    """Delete or alter every row and fact of every table that is timestamped at or after t."""
    rng = np.random.default_rng(seed)
    out: dict[str, pd.DataFrame | None] = {}
    acc = tables["accounts"]
    assert acc is not None
    out["accounts"] = acc[acc["created_at"] < t].reset_index(drop=True)

    ev = events[events["timestamp"] < t].copy()
    junk = events.sample(n=min(len(events), 200), random_state=seed).copy()
    junk["timestamp"] = (t + pd.to_timedelta(rng.integers(0, 400 * 24, len(junk)), unit="h")).astype(
        "datetime64[us]"
    )
    junk["event"] = "future_only_event"
    ev = pd.concat([ev, junk], ignore_index=True)

    subs = tables["subscriptions"]
    if subs is not None:
        s = subs[subs["start_date"] < t].copy()
        s["canceled_at"] = s["canceled_at"].where(s["canceled_at"] < t, pd.NaT)
        new = s.drop_duplicates("account_id").copy()
        new["subscription_id"] = new["subscription_id"] + "-future"
        new["start_date"] = (t + pd.Timedelta(days=3)).as_unit("us")
        new["end_date"] = (t + pd.Timedelta(days=400)).as_unit("us")
        new["mrr"] = new["mrr"] * 7
        out["subscriptions"] = pd.concat([s, new], ignore_index=True)
    else:
        out["subscriptions"] = None

    users = tables["users"]
    if users is not None:
        u = users[users["created_at"] < t].copy()
        later = u["deactivated_at"].notna() & (u["deactivated_at"] >= t)
        u.loc[later, "deactivated_at"] = _later(u.loc[later, "deactivated_at"], t, rng)
        new = u.drop_duplicates("account_id").copy()
        new["user_id"] = new["user_id"] + "-future"
        new["created_at"] = (t + pd.Timedelta(days=1)).as_unit("us")
        new["role"] = "champion"
        out["users"] = pd.concat([u, new], ignore_index=True)
    else:
        out["users"] = None

    tickets = tables["tickets"]
    if tickets is not None:
        k = tickets[tickets["created_at"] < t].copy()
        for col in ("first_response_at", "resolved_at"):
            later = k[col].notna() & (k[col] >= t)
            k.loc[later, col] = _later(k.loc[later, col], t, rng)
        open_at_t = k["resolved_at"].isna() | (k["resolved_at"] >= t)
        # Facts without their own timestamp, final only once resolved: scramble them while open.
        k.loc[open_at_t, "escalated"] = pd.array(rng.random(int(open_at_t.sum())) < 0.5, dtype="boolean")
        k.loc[open_at_t, "csat"] = rng.integers(1, 6, int(open_at_t.sum())).astype(float)
        # A ticket open at t may have been resolved later: give some a resolution after t.
        new = k.head(5).copy()
        new["ticket_id"] = new["ticket_id"] + "-future"
        new["created_at"] = (t + pd.Timedelta(days=2)).as_unit("us")
        new["first_response_at"] = pd.NaT
        new["resolved_at"] = pd.NaT
        out["tickets"] = pd.concat([k, new], ignore_index=True)
    else:
        out["tickets"] = None

    surveys = tables["surveys"]
    if surveys is not None:
        r = surveys[surveys["submitted_at"] < t].copy()
        new = r.drop_duplicates("account_id").copy()
        new["response_id"] = new["response_id"] + "-future"
        new["submitted_at"] = (t + pd.Timedelta(days=5)).as_unit("us")
        new["nps"] = 0.0
        new["comment"] = "We will cancel and switch to a competitor, too expensive"
        out["surveys"] = pd.concat([r, new], ignore_index=True)
    else:
        out["surveys"] = None
    return out, ev


def _features(
    tables: dict[str, pd.DataFrame | None],
    events: pd.DataFrame,
    snaps: pd.DataFrame,
    state: FittedState,
    folder: Path,
) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    events.to_parquet(folder / "part-0.parquet", index=False)
    engine = Engine(threads=1)
    try:
        prepare_event_aggregates(engine, engine.dialect.parquet(str(folder / "*.parquet")))
        return build_features(engine, snaps, tables, FeatureParams(), HealthParams(), state)
    finally:
        engine.close()


def check_no_leakage(
    validated: Path, tmp: Path, n_dates: int, seed: int, definition: str = "contract"
) -> int:
    """Build everything once, then for `n_dates` random t compare against the altered data."""
    from churnguard import tables as tables_mod

    tables, events = _load(validated)
    data_end = tables_mod.data_end(validated)
    days = events.assign(day=events["timestamp"].dt.normalize())[["account_id", "day"]].drop_duplicates()
    params = SnapshotParams(definition=definition)  # type: ignore[arg-type]
    accounts = tables["accounts"]
    assert accounts is not None
    snaps = build_snapshots(
        accounts, tables["subscriptions"], days, events["timestamp"].min(), data_end, params
    )
    dates = sorted(snaps["snapshot_date"].unique())
    cutoff = pd.Timestamp(dates[len(dates) // 2])
    engine = Engine(threads=1)
    events_dir = tmp / "events_full"
    events_dir.mkdir(parents=True)
    events.to_parquet(events_dir / "part-0.parquet", index=False)
    prepare_event_aggregates(engine, engine.dialect.parquet(str(events_dir / "*.parquet")))
    state = fit_feature_state(engine, tables["surveys"], cutoff, FeatureParams())
    full = build_features(engine, snaps, tables, FeatureParams(), HealthParams(), state)
    engine.close()

    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.array(dates[1:]), size=min(n_dates, len(dates) - 1), replace=False)
    compared = 0
    for i, t64 in enumerate(sorted(chosen)):
        t = pd.Timestamp(t64)
        cut_tables, cut_events = alter_after(tables, events, t, seed + i)
        at_t = snaps[snaps["snapshot_date"] == t].reset_index(drop=True)
        if cut_tables["subscriptions"] is not None and definition == "contract":
            facts = term_facts(cut_tables["subscriptions"], pd.DatetimeIndex([t]))
            facts = facts.sort_values("account_id").reset_index(drop=True)
            expected = at_t[FACTS].sort_values("account_id").reset_index(drop=True)
            pd.testing.assert_frame_equal(
                facts[FACTS].astype(expected.dtypes.to_dict()), expected, check_exact=True
            )
        if definition == "activity":
            cut_days = cut_events.assign(day=cut_events["timestamp"].dt.normalize())[["account_id", "day"]]
            cut_accounts = cut_tables["accounts"]
            assert cut_accounts is not None
            eligible = build_activity_snapshots(
                cut_accounts, cut_days.drop_duplicates(), None, pd.DatetimeIndex([t]), data_end, params
            )
            assert sorted(eligible["account_id"]) == sorted(at_t["account_id"])
        rebuilt = _features(cut_tables, cut_events, at_t, state, tmp / f"events_{i}")
        before = full[full["snapshot_date"] == t].reset_index(drop=True)
        assert len(before) > 0
        pd.testing.assert_frame_equal(rebuilt, before, check_exact=True)
        compared += len(before)
    return compared


def test_features_at_t_ignore_everything_after_t(tmp_path: Path) -> None:
    from tests.test_features import write_company

    validated = write_company(tmp_path / "validated", n_accounts=20, seed=11)
    assert check_no_leakage(validated, tmp_path, n_dates=4, seed=5) > 20


def test_activity_features_at_t_ignore_everything_after_t(tmp_path: Path) -> None:
    from tests.test_features import write_company

    validated = write_company(tmp_path / "validated", n_accounts=12, seed=13, subscriptions=False)
    assert check_no_leakage(validated, tmp_path, n_dates=2, seed=9, definition="activity") > 5


def test_leakage_check_catches_a_leak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check must fail when a feature peeks past t (a resolution recorded after t)."""
    import features.support as support
    from tests.test_features import write_company

    original = support.build_support_features

    def leaky(engine, snaps, tickets, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = original(engine, snaps, tickets, *args, **kwargs)
        ever = engine.query(f"SELECT account_id, COUNT(resolved_at) AS n FROM {tickets} GROUP BY 1")
        return (
            out.merge(ever, on="account_id", how="left")
            .assign(tickets_open=lambda f: f["n"].astype(float))
            .drop(columns="n")
        )

    monkeypatch.setattr("features.build.build_support_features", leaky)
    validated = write_company(tmp_path / "validated", n_accounts=10, seed=11)
    with pytest.raises(AssertionError):
        check_no_leakage(validated, tmp_path, n_dates=2, seed=5)


@pytest.mark.slow
def test_simulated_company_features_ignore_everything_after_t(tiny_validated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert check_no_leakage(tiny_validated.validated, tmp_path, n_dates=3, seed=2026) > 100
