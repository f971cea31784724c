"""Realistic data faults at known, deterministic rates (`simulate.dirty: true`).

Every fault goes into its own otherwise-clean row, so the validation report must equal
`faults.json` exactly. Quarantine faults are added rows (a faulty copy of a clean row,
placed right after it) so the clean history is unchanged; repairs (category spelling,
encoding, missing quantity, late events) modify or move clean rows that stay valid.
The exact meaning of each code is documented in docs/simulator.md.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnguard.simulator.config import SimulateParams

BAD_TIMESTAMPS = ("2025-13-45T10:00:00Z", "yesterday", "31/31/2025", "not a date", "2025-02-30 25:61")
BAD_NUMBERS = ("twelve hundred", "TBD", "abc", "1,2O0")
BILLING_VARIANTS = {
    "annual": ("Annual ", "ANNUAL", " annual", "Annual"),
    "monthly": ("MONTHLY", "Monthly", " monthly "),
}
CATEGORY_VARIANTS = {
    "bug": ("Bug", "BUG ", " bug"),
    "feature_request": ("Feature Request", "feature-request", "FEATURE_REQUEST"),
    "question": ("Question", "QUESTION"),
    "other": ("Other",),
}
SEVERITY_VARIANTS = {
    "low": ("Low", "LOW"),
    "medium": ("Medium", "MEDIUM "),
    "high": ("HIGH", "High"),
    "urgent": ("Urgent", "URGENT"),
}
UNKNOWN_BILLING = ("quarterly-ish", "biennial??", "weekly")
UNKNOWN_SEVERITY = ("sev9", "critical!!", "p0")
_NON_HEX = np.array(list("ghjkmnpqrstuvwxyz"))
_ENCODINGS = {"ja": "shift_jis", "zh": "gb18030", "en": "latin-1"}
_FUTURE_LO = int(pd.Timestamp("2090-01-01").value // 1000)
_FUTURE_HI = int(pd.Timestamp("2099-12-31").value // 1000)

EVENT_FAULTS = (
    "duplicate_exact", "missing_required", "unparseable_timestamp", "out_of_range", "future_timestamp",
    "unknown_account", "unknown_user", "defaulted_value", "out_of_order", "user_account_mismatch",
)  # fmt: skip

Fault = Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]


def iso(values: pd.Series) -> pd.Series:
    """Timestamps as ISO-8601 strings with Z (None for missing)."""
    s = pd.to_datetime(values, utc=True)
    out = s.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return out.astype(object).where(s.notna(), None)


class Dirt:
    """Injects faults table by table and counts them as {table: {code: n}}."""

    def __init__(self, seed: int, rate: float, data_end_us: int) -> None:
        self.seed = seed
        self.rate = rate
        self.data_end_us = data_end_us
        self.counts: dict[str, Counter[str]] = {}

    @classmethod
    def for_params(cls, p: SimulateParams) -> Dirt:
        end = np.datetime64(p.start, "M") + p.months
        return cls(p.seed, p.dirty_rate, int(end.astype("datetime64[us]").astype(np.int64)))

    def _rng(self, table: str, part: int = 0) -> np.random.Generator:
        salt = sum(ord(c) * (i + 1) for i, c in enumerate(table))
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, 99, salt, part])))

    def _count(self, table: str, code: str, n: int) -> None:
        if n:
            self.counts.setdefault(table, Counter())[code] += n

    def faults(self) -> dict[str, dict[str, int]]:
        return {t: dict(sorted(c.items())) for t, c in sorted(self.counts.items()) if c}

    def _per_code(self, n_rows: int, n_codes: int) -> int:
        return max(1, round(self.rate * n_rows / max(n_codes, 1)))

    # ---------------------------------------------------------------- small tables
    def table(self, name: str, df: pd.DataFrame) -> pd.DataFrame:
        """A dirty copy of one small table (timestamps as strings where faults need it)."""
        rng = self._rng(name)
        if name == "accounts":
            plan: dict[str, Fault] = {"duplicate_exact": _same, "duplicate_key": _other_name}
            return self._apply(name, df, rng, plan, {}, ids=None)
        if name == "subscriptions":
            df = df.assign(
                start_date=iso(df["start_date"]),
                end_date=iso(df["end_date"]),
                canceled_at=iso(df["canceled_at"]),
                mrr=df["mrr"].map(lambda v: f"{v:.2f}").astype(object),
            )
            plan = {
                "duplicate_exact": _same,
                "unparseable_timestamp": _set_choice("start_date", BAD_TIMESTAMPS),
                "unparseable_number": _set_choice("mrr", BAD_NUMBERS),
                "unknown_category": _set_choice("billing_period", UNKNOWN_BILLING),
                "out_of_range": _negate_mrr,
                "bad_order": _end_before_start,
                "unknown_account": _unknown_account,
            }
            inplace: dict[str, Fault] = {"normalised_category": _respell("billing_period", BILLING_VARIANTS)}
            return self._apply(name, df, rng, plan, inplace, ids=("subscription_id", "sub_", 10))
        if name == "users":
            plan = {
                "duplicate_exact": _same,
                "missing_required": _set_null("account_id"),
                "unknown_account": _unknown_account,
            }
            return self._apply(name, df, rng, plan, {}, ids=("user_id", "u_", 8))
        if name == "tickets":
            df = df.assign(
                created_at=iso(df["created_at"]),
                first_response_at=iso(df["first_response_at"]),
                resolved_at=iso(df["resolved_at"]),
                csat=df["csat"].map(lambda v: None if pd.isna(v) else str(int(v))).astype(object),
            )
            plan = {
                "duplicate_exact": _same,
                "duplicate_key": _flip_escalated,
                "missing_required": _set_null("account_id"),
                "unparseable_timestamp": _set_choice("created_at", BAD_TIMESTAMPS),
                "unparseable_number": _set_choice("csat", ("good", "five", "n.a.")),
                "unknown_category": _set_choice("severity", UNKNOWN_SEVERITY),
                "out_of_range": _set_choice("csat", ("0", "7", "10")),
                "bad_order": _resolved_before_created,
                "future_timestamp": _future_ticket,
                "unknown_account": _unknown_account,
            }
            inplace = {"normalised_category": _respell_ticket}
            return self._apply(name, df, rng, plan, inplace, ids=("ticket_id", "T-", 0))
        raise ValueError(name)

    def _apply(
        self,
        name: str,
        df: pd.DataFrame,
        rng: np.random.Generator,
        plan: dict[str, Fault],
        inplace: dict[str, Fault],
        ids: tuple[str, str, int] | None,
        eligible: dict[str, np.ndarray] | None = None,
    ) -> pd.DataFrame:
        """Faulty copies right after their sources, plus in-place repairs; counts recorded."""
        df = df.reset_index(drop=True)
        n = len(df)
        k = self._per_code(n, len(plan) + len(inplace))
        free = np.ones(n, dtype=bool)
        copies: list[pd.DataFrame] = []
        codes = list(plan) + list(inplace)
        for code in codes:
            pool = np.flatnonzero(free & (eligible[code] if eligible and code in eligible else True))
            m = min(k, len(pool))
            if m == 0:
                continue
            rows = np.sort(rng.choice(pool, size=m, replace=False))
            free[rows] = False
            if code in inplace:
                changed = inplace[code](df.loc[rows].copy(), rng)
                for col in changed.columns:
                    if not changed[col].equals(df.loc[rows, col]):
                        df[col] = df[col].astype(object)
                        df.loc[rows, col] = changed[col].to_numpy()
            else:
                copy = df.loc[rows].copy()
                if ids is not None and code not in ("duplicate_exact", "duplicate_key"):
                    # a fresh id, so only the injected fault can make the copy fail
                    copy[ids[0]] = _new_ids(rng, ids, set(df[ids[0]].dropna()), m)
                copy = plan[code](copy, rng)
                copy["_pos"] = rows + 0.5
                copies.append(copy)
            self._count(name, code, m)
        out = df.assign(_pos=np.arange(n, dtype=np.float64))
        out = pd.concat([out, *copies], ignore_index=True).sort_values("_pos", kind="stable")
        return out.drop(columns="_pos").reset_index(drop=True)

    # ---------------------------------------------------------------- surveys (CSV)
    def write_surveys_csv(self, df: pd.DataFrame, path: Path) -> int:
        """Surveys as CSV; some comments in Shift-JIS / GB18030 / latin-1 bytes."""
        rng = self._rng("surveys")
        df = df.assign(submitted_at=iso(df["submitted_at"]), nps=df["nps"].astype(str).astype(object))
        df = df.assign(comment=df["comment"].astype(object).where(df["comment"].notna(), None))
        lang = df["comment"].map(_language)
        encodable = df["comment"].combine(lang, _encodable)
        plan: dict[str, Fault] = {
            "duplicate_exact": _same,
            "duplicate_key": _other_nps,
            "missing_required": _set_null("response_id"),
            "unparseable_timestamp": _set_choice("submitted_at", BAD_TIMESTAMPS),
            "unparseable_number": _set_choice("nps", ("ten", "n.a.", "good")),
            "out_of_range": _set_choice("nps", ("11", "-1", "42")),
            "future_timestamp": _future_survey,
            "unknown_account": _unknown_account,
        }
        inplace: dict[str, Fault] = {"repaired_encoding": _mark_encoding}
        eligible = {"repaired_encoding": encodable.to_numpy(bool)}
        df = df.assign(_encoding=None)
        out = self._apply("surveys", df, rng, plan, inplace, ("response_id", "resp_", 7), eligible)
        columns = [c for c in out.columns if c != "_encoding"]
        with path.open("wb") as fh:
            fh.write(_csv_line(list(columns)).encode("utf-8"))
            for values in out.to_dict("records"):
                enc = values.pop("_encoding") or "utf-8"
                fh.write(_csv_line([values[c] for c in columns]).encode(enc))
        return len(out)

    # ---------------------------------------------------------------- events (per part)
    def events_part(self, part: int, table: pa.Table) -> pa.Table:
        """A dirty event part: timestamps as strings; copies, late rows and future rows.

        Stays in Arrow (row selection with numpy indices, values replaced per piece), so a
        dirty part costs little more than a clean one.
        """
        rng = self._rng("usage_events", part)
        n = table.num_rows
        ts = table.column("timestamp").cast(pa.int64()).to_numpy()
        acc_idx = pc.dictionary_encode(table.column("account_id")).combine_chunks().indices.to_numpy()
        k = self._per_code(n, len(EVENT_FAULTS))
        # late rows: strictly earlier than the latest event of their account in this part
        acc_max = np.full(int(acc_idx.max()) + 1 if n else 0, np.iinfo(np.int64).min)
        np.maximum.at(acc_max, acc_idx, ts)
        late_ok = ts < acc_max[acc_idx]
        # a user of another account needs another account in the part
        acc_size = np.bincount(acc_idx) if n else np.zeros(0, dtype=np.int64)
        other_ok = acc_size[acc_idx] < n if n else np.zeros(0, dtype=bool)
        free = np.ones(n, dtype=bool)
        chosen: dict[str, np.ndarray] = {}
        for code in EVENT_FAULTS:
            eligible = {"out_of_order": late_ok, "user_account_mismatch": other_ok}.get(code, True)
            pool = np.flatnonzero(free & eligible)
            m = min(k, len(pool))
            rows = np.sort(rng.choice(pool, size=m, replace=False)) if m else np.zeros(0, dtype=np.int64)
            if code == "out_of_order" and m:
                # strictly decreasing per account: drop a row tying another late row's time in its account
                keyed = pd.DataFrame({"a": acc_idx[rows], "t": ts[rows]})
                rows = rows[~keyed.duplicated(["a", "t"]).to_numpy()]
            free[rows] = False
            chosen[code] = rows
            self._count("usage_events", code, len(rows))

        qty = table.column("quantity").to_numpy().astype(np.float64)
        qty[chosen["defaulted_value"]] = np.nan
        base_table = table.set_column(2, "timestamp", _iso_arrow(table.column("timestamp"))).set_column(
            4, "quantity", pa.array(qty, type=pa.float64(), from_pandas=True)
        )
        # Events carry an id, as exports from an event pipeline do: only the id tells an
        # exact re-delivery (duplicate_exact keeps it) from a second real event.
        base_table = base_table.append_column("event_id", _event_ids(part, 0, n))
        fresh = n  # copies with another fault get new ids, so only that fault makes them fail

        keys: list[np.ndarray] = []
        pieces: list[pa.Table] = []

        def add(key: np.ndarray, rows: np.ndarray, **changes: pa.Array) -> None:
            piece = base_table.take(pa.array(rows, type=pa.int64()))
            for name, values in changes.items():
                piece = piece.set_column(piece.schema.get_field_index(name), name, values)
            keys.append(key)
            pieces.append(piece)

        late = chosen["out_of_order"]
        base = np.setdiff1d(np.arange(n), late)
        add(base.astype(np.float64), base)
        for code in (
            "duplicate_exact",
            "missing_required",
            "out_of_range",
            "unknown_account",
            "unknown_user",
            "user_account_mismatch",
        ):
            rows = chosen[code]
            m = len(rows)
            changes: dict[str, pa.Array] = {}
            if code == "missing_required":
                changes["user_id"] = pa.nulls(m, type=pa.string())
            elif code == "out_of_range":
                changes["quantity"] = pa.array(-np.maximum(table.column("quantity").to_numpy()[rows], 1.0))
            elif code == "unknown_account":
                changes["account_id"] = pa.array(_fake_ids(rng, "acc_", 6, m), type=pa.string())
            elif code == "unknown_user":
                changes["user_id"] = pa.array(_fake_ids(rng, "u_", 8, m), type=pa.string())
            elif code == "user_account_mismatch":
                changes["user_id"] = table.column("user_id").take(_rows_of_other_accounts(rng, acc_idx, rows))
            if code != "duplicate_exact":
                changes["event_id"] = _event_ids(part, fresh, m)
                fresh += m
            add(rows + 0.5, rows, **changes)
        tail = float(n + 1)
        late_sorted = late[np.argsort(-ts[late], kind="stable")]
        add(tail + np.arange(len(late_sorted)) / max(len(late_sorted), 1), late_sorted)
        fut = chosen["future_timestamp"]
        fut_ts = pa.array(
            np.sort(rng.integers(_FUTURE_LO, _FUTURE_HI, len(fut))), type=pa.timestamp("us", tz="UTC")
        )
        add(np.full(len(fut), tail + 1.5), fut, timestamp=_iso_arrow(fut_ts),
            event_id=_event_ids(part, fresh, len(fut)))  # fmt: skip
        fresh += len(fut)
        bad = chosen["unparseable_timestamp"]
        bad_ts = pa.array(rng.choice(BAD_TIMESTAMPS, len(bad)).tolist(), type=pa.string())
        add(np.full(len(bad), tail + 2.5), bad, timestamp=bad_ts, event_id=_event_ids(part, fresh, len(bad)))

        order = np.argsort(np.concatenate(keys), kind="stable")
        return pa.concat_tables(pieces).combine_chunks().take(pa.array(order, type=pa.int64()))


def _rows_of_other_accounts(rng: np.random.Generator, acc_idx: np.ndarray, rows: np.ndarray) -> pa.Array:
    """For each of `rows`, a random row of the part whose account is another one."""
    by_account = np.argsort(acc_idx, kind="stable")  # each account's rows form one block
    size = np.bincount(acc_idx)
    end = np.cumsum(size)[acc_idx[rows]]
    outside = len(acc_idx) - size[acc_idx[rows]]  # > 0: rows were chosen where another account exists
    picks = (end + rng.integers(0, outside)) % len(acc_idx)
    return pa.array(by_account[picks], type=pa.int64())


def _event_ids(part: int, start: int, m: int) -> pa.Array:
    """`m` event ids unique within the company: the part and a running number."""
    numbers = pc.cast(pa.array(np.arange(start, start + m, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(pa.scalar(f"ev{part:04d}-"), numbers, pa.scalar(""))


def _iso_arrow(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """UTC timestamps as ISO-8601 strings with microseconds and Z (5x faster than strftime)."""
    text = pc.cast(values.cast(pa.timestamp("us")), pa.string())
    text = pc.utf8_replace_slice(text, start=10, stop=11, replacement="T")
    return pc.binary_join_element_wise(text, pa.scalar("Z"), pa.scalar(""))


# -------------------------------------------------------------------- fault builders
def _same(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return rows


def _other_name(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return rows.assign(name=rows["name"] + " (old CRM record)")


def _other_nps(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    nps = pd.to_numeric(rows["nps"]).astype(int)
    return rows.assign(nps=((nps + 3) % 11).astype(str).astype(object))


def _flip_escalated(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return rows.assign(escalated=~rows["escalated"].astype(bool))


def _set_null(column: str) -> Fault:
    def fault(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        return rows.assign(**{column: None})

    return fault


def _set_choice(column: str, values: tuple[str, ...]) -> Fault:
    def fault(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        return rows.assign(**{column: np.asarray(rng.choice(values, len(rows)), dtype=object)})

    return fault


def _negate_mrr(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    mrr = pd.to_numeric(rows["mrr"])
    return rows.assign(mrr=(-mrr.clip(lower=1.0)).map(lambda v: f"{v:.2f}").astype(object))


def _end_before_start(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    start = pd.to_datetime(rows["start_date"], utc=True)
    end = start - pd.to_timedelta(rng.integers(1, 60, len(rows)), unit="D")
    return rows.assign(end_date=iso(end), canceled_at=None)


def _resolved_before_created(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    created = pd.to_datetime(rows["created_at"], utc=True)
    resolved = created - pd.to_timedelta(rng.integers(1, 72, len(rows)), unit="h")
    return rows.assign(resolved_at=iso(resolved), first_response_at=None)


def _future_ticket(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    created = pd.to_datetime(rng.integers(_FUTURE_LO, _FUTURE_HI, len(rows)), unit="us", utc=True)
    return rows.assign(
        created_at=iso(pd.Series(created, index=rows.index)), first_response_at=None, resolved_at=None
    )


def _future_survey(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    sub = pd.to_datetime(rng.integers(_FUTURE_LO, _FUTURE_HI, len(rows)), unit="us", utc=True)
    return rows.assign(submitted_at=iso(pd.Series(sub, index=rows.index)))


def _unknown_account(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return rows.assign(account_id=_fake_ids(rng, "acc_", 6, len(rows)))


def _respell(column: str, variants: Mapping[str, tuple[str, ...]]) -> Fault:
    def fault(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        picks = rng.integers(0, 1000, len(rows))
        values = [variants[v][p % len(variants[v])] for v, p in zip(rows[column], picks, strict=True)]
        return rows.assign(**{column: np.asarray(values, dtype=object)})

    return fault


def _respell_ticket(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Half the rows get a category variant, the other half a severity variant."""
    half = rng.random(len(rows)) < 0.5
    cat = _respell("category", CATEGORY_VARIANTS)(rows, rng)["category"]
    sev = _respell("severity", SEVERITY_VARIANTS)(rows, rng)["severity"]
    return rows.assign(
        category=np.where(half, cat, rows["category"]).astype(object),
        severity=np.where(half, rows["severity"], sev).astype(object),
    )


def _mark_encoding(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return rows.assign(_encoding=[_ENCODINGS[_language(c)] for c in rows["comment"]])


def _language(comment: object) -> str:
    if not isinstance(comment, str):
        return "en"
    if any("\u3040" <= ch <= "\u30ff" for ch in comment):
        return "ja"
    if any("\u4e00" <= ch <= "\u9fff" for ch in comment):
        return "zh"
    return "en"


def _encodable(comment: object, lang: str) -> bool:
    """A comment whose bytes differ from UTF-8 in the target encoding (non-ASCII and encodable)."""
    if not isinstance(comment, str) or comment.isascii():
        return False
    try:
        comment.encode(_ENCODINGS[lang])
    except UnicodeEncodeError:
        return False
    return True


def _fake_ids(rng: np.random.Generator, prefix: str, digits: int, n: int) -> np.ndarray:
    """Ids in the right shape that cannot exist (non-hex letters)."""
    chars = rng.choice(_NON_HEX, size=(n, digits))
    return np.array([prefix + "".join(r) for r in chars], dtype=object)


def _new_ids(rng: np.random.Generator, spec: tuple[str, str, int], taken: set[object], n: int) -> np.ndarray:
    """Fresh ids (not in `taken`) for added rows, in the table's id format."""
    _, prefix, digits = spec
    out: list[str] = []
    while len(out) < n:
        if digits == 0:
            cand = f"{prefix}{int(rng.integers(9_000_000, 9_999_999))}"
        else:
            cand = f"{prefix}{int(rng.integers(0, 16**digits)):0{digits}x}"
        if cand not in taken:
            taken.add(cand)
            out.append(cand)
    return np.array(out, dtype=object)


def _csv_line(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None or v is pd.NA else v for v in values])
    return buf.getvalue()
