"""Assemble every feature family per (account_id, snapshot_date), plus the health score.

`build_features` is a deterministic function of the data known at each t and of the
fitted state (core events and the text model), which the caller fits once on the
training months (`fit_feature_state`) and then holds fixed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from churnguard.contract import TABLES
from churnguard.params import DEFAULT_CURRENCY, CurrencyCode, Section
from features.contract_features import build_contract_features, finish_contract_features
from features.engine import Engine
from features.health import HealthParams, compute_health
from features.onboarding import build_onboarding_features
from features.relationship import build_relationship_features
from features.support import build_support_features, finish_support_features
from features.surveys import build_comment_features, build_survey_features
from features.text import TextModel, fit_text_model, score_comments
from features.usage import (
    build_usage_features,
    core_events_from_stats,
    event_type_stats,
    prepare_event_aggregates,
    snapshot_days,
)
from features.usage_history import (
    build_event_history,
    build_user_history,
    finish_usage_history,
    first_event_day,
)

log = logging.getLogger(__name__)

KEYS = ["account_id", "snapshot_date"]


class TextParams(Section):
    min_df: int = 2
    ngram_range: tuple[int, int] = (1, 3)
    alpha: float = 1.0
    min_comments: int = 30


class EngineParams(Section):
    threads: int | None = None
    memory_limit: str | None = None
    temp_directory: str | None = None
    batch_rows: int = 20_000_000  # events per account batch when the parts allow batching


class FeatureParams(Section):
    """params.yaml `features` section."""

    core_events: list[str] | None = None
    core_events_top_n: int = 3
    sla_first_response_hours: dict[str, float] = Field(
        default_factory=lambda: {"urgent": 4.0, "high": 8.0, "medium": 24.0, "low": 72.0}
    )
    sla_resolution_hours: dict[str, float] = Field(
        default_factory=lambda: {"urgent": 24.0, "high": 72.0, "medium": 168.0, "low": 336.0}
    )
    onboarding_days: int = 120
    onboarding_min_users: int = 3
    survey_wave_days: int = 90
    currency: CurrencyCode = DEFAULT_CURRENCY  # ISO 4217 code of mrr/arr in the export
    text: TextParams = Field(default_factory=TextParams)
    engine: EngineParams = Field(default_factory=EngineParams)


@dataclass
class FittedState:
    """The fitted parts of the feature stage: core events and the text model."""

    core_events: list[str]
    text_model: TextModel
    n_event_types: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        self.text_model.metadata["core_events"] = list(self.core_events)
        self.text_model.metadata["n_event_types"] = self.n_event_types
        self.text_model.metadata.update(self.info)
        self.text_model.save(folder)

    @classmethod
    def load(cls, folder: Path) -> FittedState:
        model = TextModel.load(folder)
        return cls(
            core_events=list(model.metadata.get("core_events") or []),
            text_model=model,
            n_event_types=int(model.metadata.get("n_event_types") or 0),
        )


def with_contract_columns(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Add the contract's optional columns a table lacks, as typed nulls (never mutates)."""
    out = frame.copy()
    for col in TABLES[table].columns:
        if col.name in out:
            continue
        if col.kind == "timestamp":
            out[col.name] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us]")
        elif col.kind in ("float", "int"):
            out[col.name] = np.nan
        elif col.kind == "bool":
            out[col.name] = pd.Series(pd.NA, index=out.index, dtype="boolean")
        else:
            out[col.name] = pd.Series(pd.NA, index=out.index, dtype="string")
    return out


def fit_feature_state(
    engine: Engine,
    surveys: pd.DataFrame | None,
    cutoff: pd.Timestamp | None,
    params: FeatureParams,
    events_source: str = "daily_event",
) -> FittedState:
    """Core events (params or inferred before `cutoff`) and the text model (fitted before `cutoff`).

    `events_source` is `daily_event` (after `prepare_event_aggregates`) or `raw_event_source(...)`.
    """
    stats = event_type_stats(engine, cutoff, events_source)  # one pass: core events and type count
    if params.core_events:
        core, source = list(params.core_events), "params"
    else:
        core = core_events_from_stats(stats, params.core_events_top_n)
        source = "inferred"
    if surveys is not None and "comment" in surveys:
        before = surveys if cutoff is None else surveys[surveys["submitted_at"] < cutoff]
        text_model = fit_text_model(
            before["comment"],
            before["nps"] if "nps" in before else pd.Series(np.nan, index=before.index),
            cutoff=cutoff,
            ngram_range=params.text.ngram_range,
            min_df=params.text.min_df,
            alpha=params.text.alpha,
            min_comments=params.text.min_comments,
        )
    else:
        text_model = TextModel(pipeline=None, metadata={"fitted": False, "reason": "no survey comments"})
    info = {"core_events_source": source, "fit_cutoff": None if cutoff is None else cutoff.isoformat()}
    n_types = int(stats["event"].notna().sum())
    return FittedState(core_events=core, text_model=text_model, n_event_types=n_types, info=info)


def build_features(
    engine: Engine,
    snaps: pd.DataFrame,
    tables: dict[str, pd.DataFrame | None],
    params: FeatureParams,
    health: HealthParams,
    state: FittedState,
    event_batches: list[tuple[str, set[str]]] | None = None,
) -> pd.DataFrame:
    """Feature rows keyed by account_id, snapshot_date, sorted; `health_*` columns last.

    Without `event_batches`, `engine` must already hold the event aggregates
    (`prepare_event_aggregates`). With them (events expression, its accounts), usage
    features are built batch by batch, each batch holding all events of its accounts, so
    memory is bounded by the batch. `tables` maps contract table names to frames (None = absent).
    """
    snap_cols = [
        "account_id",
        "snapshot_date",
        "mrr",
        "seats",
        "billing_period",
        "days_to_renewal",
        "segment",
    ]
    base = snaps[[c for c in snap_cols if c in snaps]].drop_duplicates(KEYS).reset_index(drop=True)
    engine.register("snaps", base[KEYS])
    accounts = tables["accounts"]
    if accounts is None:
        raise ValueError("accounts table is required")
    engine.register("accounts_t", with_contract_columns(accounts, "accounts"))

    subs = tables.get("subscriptions")
    raw_contract = None
    if subs is not None:
        engine.register("subscriptions_t", with_contract_columns(subs, "subscriptions"))
        raw_contract = build_contract_features(engine, "snaps", "subscriptions_t", set(subs.columns))
    out = finish_contract_features(base, raw_contract, accounts)

    accounts_t = "accounts_t"
    usage = _event_features(engine, base[KEYS], params, state, accounts_t, event_batches)
    out = out.merge(usage, on=KEYS, how="left")
    if "seats" in out:
        out["seat_utilisation_30d"] = out["active_users_30d"] / out["seats"].where(out["seats"] > 0)

    tickets = tables.get("tickets")
    if tickets is not None:
        engine.register("tickets_t", with_contract_columns(tickets, "tickets"))
        raw = build_support_features(
            engine, "snaps", "tickets_t", params.sla_first_response_hours, params.sla_resolution_hours
        )
        out = out.merge(finish_support_features(base[KEYS], raw), on=KEYS, how="left")

    users = tables.get("users")
    if users is not None:
        engine.register("users_t", with_contract_columns(users, "users"))
        out = out.merge(build_relationship_features(engine, "snaps", "users_t"), on=KEYS, how="left")
        out = out.merge(build_user_history(engine, "snaps", "users_t", accounts_t), on=KEYS, how="left")
    out = finish_usage_history(out)

    surveys = tables.get("surveys")
    if surveys is not None:
        surveys = with_contract_columns(surveys, "surveys")
        engine.register("surveys_t", surveys)
        out = out.merge(build_survey_features(engine, "snaps", "surveys_t", params.survey_wave_days), on=KEYS)
        comments = score_comments(surveys, state.text_model)
        engine.register("comments_t", comments)
        comment_feats = build_comment_features(engine, "snaps", "comments_t", state.text_model.fitted)
        out = out.merge(comment_feats, on=KEYS, how="left")

    out = pd.concat([out, compute_health(out, health, state.n_event_types)], axis=1)
    out["account_id"] = out["account_id"].astype("string")
    out["snapshot_date"] = pd.to_datetime(out["snapshot_date"]).astype("datetime64[us]")
    return out.sort_values(["snapshot_date", "account_id"]).reset_index(drop=True)


def _event_features(
    engine: Engine,
    keys: pd.DataFrame,
    params: FeatureParams,
    state: FittedState,
    accounts: str,
    batches: list[tuple[str, set[str]]] | None,
) -> pd.DataFrame:
    """Usage, usage-history and onboarding features, globally or account batch by account batch."""
    start_day = first_event_day(engine, ["usage_events"] if batches is None else [b[0] for b in batches])

    def one(snaps: str) -> pd.DataFrame:
        usage = build_usage_features(engine, snaps, state.core_events)
        history = build_event_history(engine, snapshot_days(engine, snaps), accounts, start_day)
        onboarding = build_onboarding_features(
            engine, snaps, accounts, state.core_events, params.onboarding_days, params.onboarding_min_users
        )
        return usage.merge(history, on=KEYS, how="left").merge(onboarding, on=KEYS, how="left")

    if batches is None:
        return one("snaps")
    parts = []
    seen: set[str] = set()
    for events, batch_accounts in batches:
        subset = keys[keys["account_id"].isin(batch_accounts)]
        seen |= batch_accounts
        if subset.empty:
            continue
        prepare_event_aggregates(engine, events)
        engine.register("snaps_batch", subset)
        parts.append(one("snaps_batch"))
    rest = keys[~keys["account_id"].isin(seen)]
    if len(rest) or not parts:  # accounts without any event: same code on empty aggregates
        prepare_event_aggregates(engine, f"(SELECT * FROM {batches[0][0]} WHERE 1 = 0) AS no_events")
        engine.register("snaps_batch", rest)
        parts.append(one("snaps_batch"))
    return pd.concat(parts, ignore_index=True)


def feature_columns(features: pd.DataFrame) -> list[str]:
    """Model input columns: everything but the keys and the health-score outputs."""
    return [c for c in features.columns if c not in KEYS and not c.startswith("health_")]


def describe(features: pd.DataFrame) -> dict[str, Any]:
    """Small JSON-able summary for the metrics file."""
    cats = [
        c
        for c in feature_columns(features)
        if not (
            pd.api.types.is_numeric_dtype(features[c]) or pd.api.types.is_datetime64_any_dtype(features[c])
        )
    ]
    return {
        "rows": len(features),
        "accounts": int(features["account_id"].nunique()),
        "snapshot_dates": int(features["snapshot_date"].nunique()),
        "feature_count": len(feature_columns(features)),
        "categorical_features": cats,
        "health_tier_counts": {str(k): int(v) for k, v in features["health_tier"].value_counts().items()},
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
