"""What the service serves right now: the model and the scores, swapped atomically.

A reload loads the new model and/or scores completely, then replaces one reference
(`ServingState.current`); a request reads that reference once, so it sees either the
old pair or the new pair, never half of each. A failed load keeps the last good one and
records the error for readiness and the logs.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from churnguard.scores import HISTORY_COLUMNS, health_component_columns, score_columns
from serving.config import Settings
from serving.schemas import AccountRisk, HistoryPoint, Reason, RiskItem

log = logging.getLogger(__name__)

ModelLoader = Callable[[str, str | None], Any]
# reasons per row: one list per row, or the columns of `models.reasons.ReasonTable`
Explainer = Callable[..., Any]

CSV_COLUMNS: tuple[str, ...] = (
    "account_id", "name", "segment", "snapshot_date", "risk", "risk_tier", "risk_change",
    "health_score", "health_tier", "arr", "expected_arr_lost", "renewal_date", "days_to_renewal",
    "billing_period", "reason_1", "action_1", "reason_2", "action_2", "reason_3", "action_3",
    "model_version", "scored_at", "currency",
)  # fmt: skip


def load_bundle(uri: str, tracking_uri: str | None) -> Any:
    """The model bundle from a local pyfunc dir or a `models:/NAME@ALIAS` registry URI.

    The SHAP tables are built (and the kernel compiled) here, before the model serves.
    """
    from models.bundle import ModelBundle, load_from_registry

    if uri.startswith("models:/"):
        name, _, alias = uri.removeprefix("models:/").partition("@")
        bundle = load_from_registry(tracking_uri or "sqlite:///mlflow.db", name, alias or "champion")
    else:
        bundle = ModelBundle.load(Path(uri))
    bundle.warm_up()
    return bundle


def explain_rows(bundle: Any, X: pd.DataFrame, top_n: int = 3, language: str = "en") -> Any:
    """The rows' reasons as a `models.reasons.ReasonTable` (columns: no object per reason)."""
    from models.reasons import explain_table

    return explain_table(bundle, X, top_n=top_n, language=language)


def model_fingerprint(uri: str, tracking_uri: str | None) -> str:
    """Changes when the model behind `uri` changes (files in a dir; alias target in a registry)."""
    if uri.startswith("models:/"):
        from mlflow import MlflowClient

        name, _, alias = uri.removeprefix("models:/").partition("@")
        mv = MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(name, alias or "champion")
        return f"{name}@{alias}={mv.version}"
    root = Path(uri)
    if not root.exists():
        raise FileNotFoundError(f"model not found at {uri}")
    parts = sorted(
        f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}"
        for p in root.rglob("*")
        if p.is_file() and (st := p.stat())
    )
    return str(hash(tuple(parts)))


def scores_fingerprint(scores_dir: Path) -> str:
    latest = scores_dir / "latest.parquet"
    if not latest.exists():
        raise FileNotFoundError(f"no scores at {latest}")
    parts = []
    for p in (latest, scores_dir / "history.parquet"):
        if p.exists():
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


@dataclass(frozen=True)
class ServingModel:
    """A loaded model bundle and what requests need from it, precomputed."""

    bundle: Any
    version: str
    content_hash: str | None
    trained_at: str | None
    metrics: dict[str, float | None]
    feature_names: tuple[str, ...]
    feature_index: dict[str, int]
    categories: dict[str, frozenset[str]]  # categorical features -> allowed values
    source: str
    fingerprint: str
    loaded_at: datetime


@dataclass(frozen=True)
class ScoreStore:
    """The latest scores, precomputed as response bytes per account and numpy filter columns."""

    snapshot_date: pd.Timestamp
    scored_at: datetime
    model_version: str
    currency: str | None  # ISO 4217 code of the money figures; None in scores older than the column
    account_json: dict[str, bytes]
    accounts: dict[str, AccountRisk]
    item_json: list[bytes]
    items: list[RiskItem]
    csv_rows: list[str]
    columns: dict[str, np.ndarray]
    segments: tuple[str, ...]
    meta_json: bytes  # '"model_version":..,"snapshot_date":..,"scored_at":..,"currency":..' for lists
    fingerprint: str
    loaded_at: datetime

    def __len__(self) -> int:
        return len(self.item_json)


@dataclass(frozen=True)
class Served:
    model: ServingModel | None = None
    scores: ScoreStore | None = None


def _none(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _num(v: Any) -> float | None:
    v = _none(v)
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(v: Any) -> int | None:
    f = _num(v)
    return None if f is None else round(f)


def _ts(v: Any) -> Any:
    """An aware UTC datetime (files hold naive UTC; RFC 3339 needs the offset)."""
    v = _none(v)
    if v is None:
        return None
    t = pd.Timestamp(v)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).to_pydatetime()


def _text(v: Any) -> str | None:
    v = _none(v)
    return None if v is None else str(v)


def build_store(latest: pd.DataFrame, history: pd.DataFrame | None, fingerprint: str) -> ScoreStore:
    """Precompute every account's response from the scores and history frames."""
    import json

    if latest.empty:
        raise ValueError("latest.parquet has no rows")
    by_account: dict[str, list[HistoryPoint]] = {}
    if history is not None and not history.empty:
        hist = history.loc[:, list(HISTORY_COLUMNS)].sort_values(["account_id", "snapshot_date", "scored_at"])
        r: dict[str, Any]
        for r in hist.to_dict(orient="records"):  # type: ignore[assignment]
            by_account.setdefault(str(r["account_id"]), []).append(
                HistoryPoint(
                    snapshot_date=pd.Timestamp(r["snapshot_date"]).date(),
                    scored_at=_ts(r["scored_at"]),
                    risk=float(r["risk"]),
                    risk_tier=r["risk_tier"],
                    model_version=str(r["model_version"]),
                )
            )
    components = health_component_columns(list(latest.columns))
    account_json: dict[str, bytes] = {}
    accounts: dict[str, AccountRisk] = {}
    item_json: list[bytes] = []
    items: list[RiskItem] = []
    csv_rows: list[str] = []
    rec: dict[str, Any]
    for rec in latest.to_dict(orient="records"):  # type: ignore[assignment]
        aid = str(rec["account_id"])
        raw_reasons = json.loads(rec["reasons"]) if _none(rec.get("reasons")) else []
        base = {
            "account_id": aid,
            "name": _text(rec.get("name")),
            "segment": _text(rec.get("segment")),
            "snapshot_date": pd.Timestamp(rec["snapshot_date"]).date(),
            "scored_at": _ts(rec["scored_at"]),
            "model_version": str(rec["model_version"]),
            "risk": float(rec["risk"]),
            "risk_tier": rec["risk_tier"],
            "risk_change": _num(rec.get("risk_change")),
            "health_score": _num(rec.get("health_score")),
            "health_tier": _text(rec.get("health_tier")),
            "arr": _num(rec.get("arr")),
            "expected_arr_lost": _num(rec.get("expected_arr_lost")),
            "currency": _text(rec.get("currency")),
            "renewal_date": None if _ts(rec.get("renewal_date")) is None else _ts(rec["renewal_date"]).date(),
            "days_to_renewal": _int(rec.get("days_to_renewal")),
            "billing_period": _text(rec.get("billing_period")),
            "reasons": [Reason.model_validate(r) for r in raw_reasons],
        }
        item = RiskItem.model_validate(base)
        account = AccountRisk.model_validate(
            {
                **base,
                "health_components": {c.removeprefix("health_"): _num(rec.get(c)) for c in components},
                "history": by_account.get(aid, []),
            }
        )
        items.append(item)
        item_json.append(item.model_dump_json().encode())
        accounts[aid] = account
        account_json[aid] = account.model_dump_json().encode()
        csv_rows.append(_csv_line(rec))
    first = latest.iloc[0]
    snapshot_date = pd.Timestamp(latest["snapshot_date"].max())
    scored_at = _ts(latest["scored_at"].max())
    meta = _Meta(
        model_version=str(first["model_version"]),
        snapshot_date=snapshot_date.date(),
        scored_at=scored_at,
        currency=_text(first.get("currency")),  # one run, one currency; absent in older files
    )
    segs: Any = latest["segment"].dropna().astype(str).unique() if "segment" in latest else []
    return ScoreStore(
        snapshot_date=snapshot_date,
        scored_at=scored_at,
        model_version=meta.model_version,
        currency=meta.currency,
        account_json=account_json,
        accounts=accounts,
        item_json=item_json,
        items=items,
        csv_rows=csv_rows,
        columns=score_columns(latest),
        segments=tuple(sorted(segs)),
        meta_json=meta.model_dump_json().encode()[1:-1],
        fingerprint=fingerprint,
        loaded_at=datetime.now(UTC),
    )


class _Meta(BaseModel):
    model_version: str
    snapshot_date: date
    scored_at: datetime
    currency: str | None


def _csv_line(rec: dict[str, Any]) -> str:
    buf = io.StringIO()
    values = []
    for c in CSV_COLUMNS:
        v = _none(rec.get(c))
        if isinstance(v, pd.Timestamp):
            v = v.date().isoformat() if c != "scored_at" else v.isoformat()
        values.append("" if v is None else v)
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def csv_header() -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(CSV_COLUMNS)
    return buf.getvalue()


@dataclass
class ServingState:
    """Holds the served model + scores and reloads them; thread-safe swaps."""

    settings: Settings
    model_loader: ModelLoader = load_bundle
    explainer: Explainer = explain_rows
    current: Served = field(default_factory=Served)
    model_error: str | None = None
    scores_error: str | None = None
    failures: int = 0
    _bad: dict[str, str] = field(default_factory=dict)  # kind -> fingerprint that failed to load
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reload(self, force: bool = False) -> tuple[bool, bool]:
        """Load whatever changed (everything when `force`), then swap; returns what was swapped."""
        with self._lock:
            cur = self.current
            model, model_changed = self._try_model(cur.model, force)
            scores, scores_changed = self._try_scores(cur.scores, force)
            if model_changed or scores_changed:
                self.current = Served(model=model, scores=scores)
            return model_changed, scores_changed

    def _try_model(self, cur: ServingModel | None, force: bool) -> tuple[ServingModel | None, bool]:
        s = self.settings
        fp: str | None = None
        try:
            fp = model_fingerprint(s.model_uri, s.tracking_uri)
            if not force and ((cur is not None and fp == cur.fingerprint) or self._bad.get("model") == fp):
                return cur, False  # unchanged, or the same files that already failed
            t0 = time.perf_counter()
            bundle = self.model_loader(s.model_uri, s.tracking_uri)
            names = tuple(str(n) for n in bundle.feature_names)
            new = ServingModel(
                bundle=bundle,
                version=str(bundle.version),
                content_hash=_text(getattr(bundle, "content_hash", None)),
                trained_at=None if bundle.trained_at is None else str(bundle.trained_at),
                metrics={str(k): _num(v) for k, v in (bundle.metrics or {}).items()},
                feature_names=names,
                feature_index={n: i for i, n in enumerate(names)},
                categories={
                    str(k): frozenset(str(v) for v in vals)
                    for k, vals in getattr(getattr(bundle, "spec", None), "categories", {}).items()
                },
                source=s.model_uri,
                fingerprint=fp,
                loaded_at=datetime.now(UTC),
            )
        except Exception as exc:  # keep serving the last good model
            self._record_failure("model", fp, f"model load failed ({s.model_uri})", exc, cur)
            return cur, False
        self.model_error = None
        self._bad.pop("model", None)
        log.info("model %s loaded from %s in %.2fs", new.version, s.model_uri, time.perf_counter() - t0)
        return new, True

    def _try_scores(self, cur: ScoreStore | None, force: bool) -> tuple[ScoreStore | None, bool]:
        d = self.settings.scores_dir
        fp: str | None = None
        try:
            fp = scores_fingerprint(d)
            if not force and ((cur is not None and fp == cur.fingerprint) or self._bad.get("scores") == fp):
                return cur, False
            t0 = time.perf_counter()
            latest = pd.read_parquet(d / "latest.parquet")
            hist_path = d / "history.parquet"
            history = pd.read_parquet(hist_path) if hist_path.exists() else None
            new = build_store(latest, history, fp)
        except Exception as exc:  # keep serving the last good scores
            self._record_failure("scores", fp, f"scores load failed ({d})", exc, cur)
            return cur, False
        self.scores_error = None
        self._bad.pop("scores", None)
        log.info(
            "scores for %s (%d accounts, model %s) loaded in %.2fs",
            new.snapshot_date.date(), len(new), new.model_version, time.perf_counter() - t0,
        )  # fmt: skip
        return new, True

    def _record_failure(self, kind: str, fp: str | None, what: str, exc: Exception, cur: object) -> None:
        """Remember the error for readiness; log and count it once per distinct failure."""
        message = f"{what}: {type(exc).__name__}: {exc}"
        if fp is not None:
            self._bad[kind] = fp
        previous = self.model_error if kind == "model" else self.scores_error
        if message != previous:
            self.failures += 1
            log.error("%s; %s", message, f"keeping the last good {kind}" if cur else f"no {kind} loaded")
        if kind == "model":
            self.model_error = message
        else:
            self.scores_error = message

    def readiness(self) -> tuple[bool, str | None]:
        cur = self.current
        problems = []
        if cur.model is None:
            problems.append(self.model_error or "model not loaded yet")
        if cur.scores is None:
            problems.append(self.scores_error or "scores not loaded yet")
        if problems:
            return False, "; ".join(problems)
        errors = [e for e in (self.model_error, self.scores_error) if e]
        return True, ("serving last good version; " + "; ".join(errors)) if errors else None
