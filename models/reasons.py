"""Reason codes: an account's top risk contributors as plain sentences with playbook actions.

A feature's name decides its reason family and sentence template (`templates/rules.yaml`,
first matching regex wins); the sentence (`templates/<language>.yaml`) is filled with the
account's own values, including companion columns (e.g. the 30-day count behind a
30-day trend). Families map to CS actions in `playbooks.yaml`. Unknown features fall
back to a generic sentence built from the column name, so the pipeline runs unchanged
on any company's feature set.
"""

from __future__ import annotations

import itertools
import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from churnguard.errors import InputError

if TYPE_CHECKING:
    from models.bundle import ModelBundle

HERE = Path(__file__).parent
LANGUAGES = ("en", "ja")
SEVERITIES = ("low", "medium", "high", "urgent")


@dataclass(frozen=True)
class Reason:
    """One reason an account is at risk, ready to show to a CS manager."""

    feature: str
    family: str
    value: float | None
    shap: float
    text: str
    playbook_id: str
    action: str


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    family: str
    template: str
    defaults: tuple[tuple[str, str], ...] = ()
    benign: frozenset[str] = frozenset()


_RULE_KEYS = ("pattern", "family", "template", "benign")


@lru_cache(maxsize=1)
def _rules() -> tuple[_Rule, ...]:
    doc = yaml.safe_load((HERE / "templates" / "rules.yaml").read_text(encoding="utf-8"))
    rules = []
    for r in doc["rules"]:
        extra = tuple((str(k), str(v)) for k, v in r.items() if k not in _RULE_KEYS)
        benign = frozenset(str(b) for b in r.get("benign", ()))
        rules.append(_Rule(re.compile(r["pattern"]), r["family"], r["template"], extra, benign))
    return tuple(rules)


@lru_cache(maxsize=4)
def _language(language: str) -> dict[str, Any]:
    if language not in LANGUAGES:
        raise InputError(f"explain.language: {language!r} is not one of {list(LANGUAGES)}")
    return yaml.safe_load((HERE / "templates" / f"{language}.yaml").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def load_playbooks() -> dict[str, Any]:
    """The playbook file: {'version': str, 'playbooks': {family: {id, action}}}."""
    return yaml.safe_load((HERE / "playbooks.yaml").read_text(encoding="utf-8"))


def playbook_for(family: str) -> tuple[str, str]:
    """(playbook id with version, action) for a reason family; unknown families -> `other`."""
    doc = load_playbooks()
    books = doc["playbooks"]
    book = books.get(family, books["other"])
    return f"{book['id']}@{doc['version']}", str(book["action"])


@lru_cache(maxsize=4096)
def classify_feature(feature: str) -> tuple[str, str, dict[str, str]]:
    """(family, template id, named groups) for a feature name; first matching rule wins."""
    for rule in _rules():
        m = rule.pattern.search(feature)
        if m:
            groups = dict(rule.defaults)
            groups.update({k: v for k, v in m.groupdict().items() if v is not None})
            if "window" not in groups:
                w = re.search(r"_(\d+)d(?=_|$)", feature)
                if w:
                    groups["window"] = w.group(1)
            return rule.family, rule.template, groups
    return "other", "generic", {}


@lru_cache(maxsize=4096)
def benign_readings(feature: str) -> frozenset[str]:
    """The readings of `feature` that describe a healthy account (`benign` in rules.yaml).

    A reading is the sentence variant (`up`, `down`, `yes`, `no`, `promoter`, `annual`, ...);
    for a value compared with a reference it is the direction (`up`, `down`, `flat`).
    """
    for rule in _rules():
        if rule.pattern.search(feature):
            return rule.benign
    return frozenset()


# --- formatting helpers -------------------------------------------------------------------
def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _fmt(v: Any) -> str:
    if type(v) is float:  # the common case, from `_Columns`
        if v != v:
            return "?"
        if abs(v - round(v)) < 1e-9 or abs(v) >= 100:
            return f"{round(v):,}"
        return f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}"
    if _is_missing(v):
        return "?"
    if isinstance(v, str):
        return v
    x = float(v)
    if abs(x - round(x)) < 1e-9 or abs(x) >= 100:
        return f"{round(x):,}"
    return f"{x:.2f}" if abs(x) < 1 else f"{x:.1f}"


def _num(v: Any) -> float | None:
    if type(v) is float:
        return None if v != v else v
    if _is_missing(v) or isinstance(v, str):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _term(lang: dict[str, Any], key: str) -> str:
    return _term_for(str(lang["language"]), key)


@lru_cache(maxsize=8192)
def _term_for(language: str, key: str) -> str:
    """The language's word for `key`, else its tokens translated one by one."""
    terms = _language(language).get("terms", {})
    if key in terms:
        return str(terms[key])
    return " ".join(str(terms.get(tok, tok)) for tok in key.split("_") if tok)


def _label(lang: dict[str, Any], feature: str) -> str:
    """A readable name for any column: `tickets_question_30d` -> 'support tickets question (last 30 days)'."""
    if feature in lang.get("terms", {}):
        return _term(lang, feature)
    m = re.search(r"(_prev)?_(\d+)d(_ago)?(?=_|$)", feature)
    window = ""
    base = feature
    if m:
        key = "ago_label" if m.group(3) else "prev_label" if m.group(1) else "window_label"
        window = lang["phrases"][key].format(window=m.group(2))
        base = feature[: m.start()] + feature[m.end() :]
    return _term(lang, base.strip("_")) + window


def _first(row: Mapping[str, Any], names: Sequence[str]) -> float | None:
    for name in names:
        v = _num(row.get(name))
        if v is not None:
            return v
    return None


@lru_cache(maxsize=64)
def _plan_columns(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The columns that can tell the billing period, in order, with how to read them."""
    out = []
    for k in keys:
        if "billing" in k:
            out.append((k, "billing"))
        elif re.search(r"(^|_)(is_)?monthly($|_)", k):
            out.append((k, "monthly"))
        elif re.search(r"(^|_)(is_)?annual($|_)", k):
            out.append((k, "annual"))
    return tuple(out)


def _is_monthly(row: Mapping[str, Any]) -> bool:
    """True when the row's first informative billing column says monthly (default: annual)."""
    for key, kind in _plan_columns(_row_keys(row)):
        says = _plan_says(key, kind, row.get(key))
        if says is not None:
            return says
    return False


def _plan_says(key: str, kind: str, v: Any) -> bool | None:
    """What one billing column's value says: monthly (True), annual (False) or nothing (None)."""
    if kind == "billing" and isinstance(v, str):
        return v.strip().lower() == "monthly"
    x = _num(v)
    if x is None:
        return None
    rule = _plan_rule(key, kind)
    return None if rule is None else bool(x) == rule


def _plan_rule(key: str, kind: str) -> bool | None:
    """For a numeric billing column: True = nonzero means monthly, False = nonzero means annual."""
    if kind == "monthly":
        return True
    if kind == "annual" or "annual" in key:
        return False
    if "monthly" in key:
        return True
    return None


def _direction(x: float, flat: float = 0.5) -> str:
    return "down" if x < -flat else "up" if x > flat else "flat"


def _singular(token: str) -> str:
    return token[:-1] if token.endswith("s") and not token.endswith("ss") else token


def _what(lang: dict[str, Any], what: str, language: str) -> tuple[str, str]:
    """(severity + noun for English / severity for Japanese, noun) from e.g. 'bugs_high'."""
    return _what_for(what, language)


@lru_cache(maxsize=1024)
def _what_for(what: str, language: str) -> tuple[str, str]:
    lang = _language(language)
    tokens = [_singular(t) for t in what.split("_") if t and t not in ("open", "ticket", "tickets")]
    sev = [t for t in tokens if t in SEVERITIES]
    cat = "_".join(t for t in tokens if t not in SEVERITIES) or "ticket"
    sev_text = _term(lang, "_".join(sev)) if sev else ""
    noun = _term(lang, cat)
    return (sev_text if language == "ja" else f"{sev_text} {noun}".strip()), noun


def _change(lang: dict[str, Any], prev: float | None, cur: float | None) -> str:
    if prev is None or cur is None:
        return ""
    return str(lang["phrases"]["change"].format(prev=_fmt(round(prev, 1)), cur=_fmt(round(cur, 1))))


def _variant(
    template: str, feature: str, x: float | None, raw: Any, groups: dict[str, str], row: Mapping[str, Any],
    lang: dict[str, Any], language: str, fields: dict[str, Any],
) -> str | None:  # fmt: skip
    """Pick the sentence variant for `template` and add its fields; None = the missing variant."""
    if template == "generic":  # the most common template: tested first
        if x is not None and not isinstance(raw, (str, bool, np.bool_)):
            return _compare(feature, x, row, lang, fields)
        return None if _is_missing(raw) else "value"
    w = groups.get("window", "")
    metric = groups.get("metric", "")
    if template == "ratio_vs_prev":
        fields["metric"] = _term(lang, metric)
        cur, prev = _first(row, [f"{metric}_{w}d"]), _first(row, [f"{metric}_prev_{w}d"])
        fields["change"] = _change(lang, prev, cur)
        if x is None:
            return None
        fields["pct"] = _fmt(round(abs(x - 1) * 100))
        return _direction((x - 1) * 100)
    if template == "change_ratio":
        fields["metric"] = _term(lang, metric)
        prev = _first(row, [f"{metric}_{w}d_ago", f"{metric}_enabled_{w}d_ago"])
        cur = _first(row, [metric, f"{metric}_enabled"])
        fields["change"] = _change(lang, prev, cur)
        if x is None:
            return None
        fields["pct"] = _fmt(round(abs(x) * 100))
        return _direction(x * 100)
    if template == "trend_pct":
        fields["metric"] = _term(lang, metric)
        cur = _first(row, [f"{metric}_{w}d"])
        prev = _first(row, [f"{metric}_prev_{w}d"])
        if prev is None and cur is not None and x is not None and x > -100:
            prev = round(cur / (1 + x / 100.0))
        fields["change"] = _change(lang, prev, cur)
        if x is None:
            return None
        fields["pct"] = _fmt(round(abs(x)))
        return _direction(x)
    if template == "slope_per_day":
        fields["metric"] = _term(lang, metric)
        if x is None:
            return None
        total = _first(row, [f"{metric}_{w}d"])
        avg = total / float(w) if total is not None and w else None
        fields["amount"] = _fmt(round(abs(x), 2) if abs(x) < 10 else round(abs(x)))
        if avg:
            fields["avg"] = _fmt(round(avg, 1) if avg < 100 else round(avg))
            fields["pct"] = _fmt(
                round(abs(x) / avg * 100, 1) if abs(x) < avg / 10 else round(abs(x) / avg * 100)
            )
            fields["share"] = lang["templates"]["slope_per_day"]["share"].format_map(fields)
        return "flat" if avg and abs(x) / avg < 0.001 else _direction(x, flat=0.0)
    if template == "slope_rel":
        fields["metric"] = _term(lang, metric)
        if x is None:
            return None
        fields["pct"] = _fmt(round(abs(x) * 100))
        return _direction(x * 100, flat=2.0)
    if template in ("contact_departed", "contacts_present"):
        fields["who"] = _term(lang, _singular(groups.get("who", "champion")))
        return None if x is None else ("yes" if x > 0 else "no")
    if template in ("cancellation", "nps_detractor", "nps_promoter", "survey_nonresponse"):
        return None if x is None else ("yes" if x > 0 else "no")
    if template == "theme":
        fields["theme"] = _term(lang, groups.get("theme", ""))
        if x is None:
            return None
        return ("yes" if "window" in groups else "yes_latest") if x > 0 else "no"
    if template in ("tickets_open", "open_age"):
        fields["what"], fields["noun"] = _what(lang, groups.get("what", "tickets"), language)
        fields["over"] = lang["phrases"]["over"].format(days=groups["days"]) if "days" in groups else ""
        age = _num(row.get(f"{feature}_max_age_days"))
        fields["oldest"] = lang["phrases"]["oldest"].format(days=_fmt(round(age))) if age else ""
        if template == "open_age":
            fields["value"] = _fmt(round(x)) if x is not None else "?"
            return None if x is None else "value"
        return None if x is None else ("yes" if x > 0 else "no")
    if template == "comment_sentiment":
        agg = "last" if groups.get("agg") in ("last", "latest") else groups.get("agg", "last")
        fields["subject"] = lang["phrases"][f"subject_{agg}"].format(in_window=fields["in_window"], window=w)
        # the tone is a predicted NPS (0-10): detractor / passive / promoter bands
        return None if x is None else "negative" if x <= 6 else "neutral" if x <= 8 else "positive"
    if template == "nps_latest":
        return None if x is None else "detractor" if x <= 6 else "passive" if x <= 8 else "promoter"
    if template == "nps_change":
        fields["change"] = _change(lang, _first(row, ["nps_prev"]), _first(row, ["nps_last", "nps_latest"]))
        if x is None:
            return None
        fields["pct"] = _fmt(abs(x))
        return _direction(x, flat=0.0)
    if template == "days_to_renewal":
        monthly = _is_monthly(row)
        fields["plan"] = lang["templates"]["days_to_renewal"]["monthly_plan"] if monthly else ""
        fields["__family"] = "renewal_monthly" if monthly else "renewal_annual"
        return None if x is None else "due"
    if template == "billing":
        variant = None
        if isinstance(raw, str):
            v = raw.strip().lower()
            variant = v if v in ("monthly", "annual") else "other"
        elif x is not None:
            if "monthly" in feature:
                variant = "monthly" if x > 0 else "annual"
            elif "annual" in feature:
                variant = "annual" if x > 0 else "monthly"
            else:
                variant = "other"
        if variant == "annual":
            fields["__family"] = "renewal_annual"
        return variant
    if template == "seat_utilisation":
        if x is None:
            return None
        fields["pct"] = _fmt(round(x * 100 if x <= 2 else x))
        return "value"
    if template == "health_component":
        fields["component"] = _term(lang, groups.get("component", feature))
    if template == "days_since":
        fields["what"] = _term(lang, groups.get("what", feature))
    return None if _is_missing(raw) else "value"


# Names whose values are rates or levels (compared as they are across windows); other
# windowed values are counts, compared per day ("pace").
_LEVEL_TOKENS = frozenset(
    {"share", "mean", "median", "ratio", "rate", "pct", "avg", "hours", "utilisation", "utilization"}
    | {"users", "distinct", "used", "weeks", "streak", "adoption", "sentiment", "csat", "nps", "score"}
)
_FLAT_BAND = 0.1  # within +-10% of the reference reads as "about the same"


@lru_cache(maxsize=8192)
def _companions(feature: str, keys: tuple[str, ...]) -> tuple[str, str, str, bool]:
    """(metric base, companion column, kind, is_level) for a windowed feature.

    kind: `prev` (same window, the period before), `window` (the next longer window of the
    same metric) or '' when the row has no companion.
    """
    m = re.search(r"_(\d+)d(?=_|$)", feature)
    if not m or "_prev_" in feature or feature.endswith("_ago"):
        return feature, "", "", False
    w = int(m.group(1))
    head, tail = feature[: m.start()], feature[m.end() :]
    base = head + tail
    is_level = any(t in _LEVEL_TOKENS for t in base.split("_"))
    names = set(keys)
    prev = f"{head}_prev_{w}d{tail}"
    if prev in names:
        return base, prev, "prev", is_level
    longer = []
    for name in names:
        mm = re.fullmatch(re.escape(head) + r"_(\d+)d" + re.escape(tail), name)
        if mm and int(mm.group(1)) > w:
            longer.append((int(mm.group(1)), name))
    if longer:
        return base, min(longer)[1], "window", is_level
    return base, "", "", is_level


@lru_cache(maxsize=8192)
def _window_of(name: str) -> str:
    return str(re.findall(r"_(\d+)d(?=_|$)", name)[0])


class _Keys(tuple[str, ...]):
    """A frame's column names that hash once: they key per-feature caches on every render."""

    _hash: int

    def __new__(cls, names: Any) -> _Keys:
        self = super().__new__(cls, names)
        self._hash = tuple.__hash__(self)
        return self

    def __hash__(self) -> int:
        return self._hash


def _row_keys(row: Mapping[str, Any]) -> tuple[str, ...]:
    return row.key_tuple if isinstance(row, _RowView) else tuple(str(k) for k in row)


def _compare(
    feature: str, x: float, row: Mapping[str, Any], lang: dict[str, Any], fields: dict[str, Any]
) -> str:
    """Fill `cmp`: the value against the period before, a longer window or the typical account."""
    base, other, kind, is_level = _companions(feature, _row_keys(row))
    ref = _num(row.get(other)) if other else None
    ref_window = ""
    if ref is not None and kind == "window":
        ref_window = _window_of(other)
        if not is_level and fields["window"]:  # a count: the longer window's pace per our window
            ref = ref * float(fields["window"]) / float(ref_window)
            kind = "pace"
        else:
            kind = "rate"
    elif ref is None:
        typical = _num(fields.pop("__reference", None))
        if typical is None:
            return "value"
        ref, kind = typical, "typical"
    else:
        fields.pop("__reference", None)
    if ref == 0:
        direction = "flat" if x == 0 else "up" if x > 0 else "down"
    else:  # the change relative to |ref|: right for negative references (changes, slopes) too
        rel = (x - ref) / abs(ref)
        direction = "down" if rel < -_FLAT_BAND else "up" if rel > _FLAT_BAND else "flat"
    fields["metric"] = _term(lang, base) if kind != "typical" else fields["label"]
    has_window = fields["window"] and kind != "typical"
    fields["when"] = lang["phrases"]["when"].format(in_window=fields["in_window"]) if has_window else ""
    fields["ref"] = _fmt(round(ref, 1) if abs(ref) < 100 else round(ref))
    fields["ref_window"] = ref_window
    fields["cmp"] = lang["phrases"][f"cmp_{kind}_{direction}"].format_map(fields)
    fields["__reading"] = direction
    return "compared"


@lru_cache(maxsize=8192)
def _static_fields(
    feature: str, language: str
) -> tuple[str, str, str, dict[str, str], tuple[tuple[str, str], ...]]:
    """(family, template, label, groups, fixed fields) of a feature: computed once per load."""
    lang = _language(language)
    family, template, groups = classify_feature(feature)
    in_window = (
        lang["phrases"]["in_window"].format(window=groups["window"])
        if "window" in groups
        else lang["phrases"]["no_window"]
    )
    fixed = (("label", _label(lang, feature)), ("in_window", in_window), ("window", groups.get("window", "")))
    return family, template, fixed[0][1], groups, fixed


def render_reason(
    feature: str, row: Mapping[str, Any], language: str = "en", reference: Mapping[str, float] | None = None
) -> tuple[str, str]:
    """(family, sentence) describing `feature` for one account row (all its feature values).

    `reference`: a typical value per feature (e.g. the training median), used when the row
    has no earlier period or longer window of the same metric to compare with.
    """
    family, text, _ = render_reason_with_reading(feature, row, language, reference)
    return family, text


def render_reason_with_reading(
    feature: str, row: Mapping[str, Any], language: str, reference: Mapping[str, float] | None
) -> tuple[str, str, str]:
    """(family, sentence, reading): `render_reason` plus what the sentence says (see `benign_readings`)."""
    lang = _language(language)
    family, template, _, groups, fixed = _static_fields(feature, language)
    raw = row.get(feature)
    x = _num(raw)
    fields: dict[str, Any] = _Default(fixed)  # format_map reads it as is: unknown -> ""
    shown = _fmt(raw)
    fields.update(value=shown, n=shown, s="" if x == 1 else "s")
    if reference is not None:
        fields["__reference"] = reference.get(feature)
    variant = _variant(template, feature, x, raw, groups, row, lang, language, fields) or "missing"
    family = fields.pop("__family", family)
    reading = str(fields.pop("__reading", variant))
    texts = lang["templates"]
    block = texts.get(template, texts["generic"])
    text = block.get(variant) or texts["generic"]["missing" if _is_missing(raw) else "value"]
    return family, text.format_map(fields), reading


class _Default(dict):
    """format_map helper: an unknown placeholder renders empty instead of raising."""

    def __missing__(self, key: str) -> str:
        return ""


class _Columns(dict[str, list[Any]]):
    """A frame's columns as Python lists, converted on first use (most are never read)."""

    def __init__(self, X: pd.DataFrame) -> None:
        super().__init__()
        self.frame = X
        self.names = {str(c): c for c in X.columns.tolist()}

    def __missing__(self, key: str) -> list[Any]:
        values = self.frame[self.names[key]].to_numpy()
        col: list[Any] = values.tolist() if values.dtype != object else list(values)
        self[key] = col
        return col

    def memo_keys(self, key: str) -> list[Any]:
        """The column as memo keys: equal keys <=> values that render the same way.

        Floats compare by value, except that -0.0 and every NaN get markers of their own
        (-0.0 == 0.0, and NaN != NaN); other objects are keyed with their type (1 == 1.0 == True).
        """
        cache = self.__dict__.setdefault("_memo", {})
        if key not in cache:
            if key not in self.names:
                cache[key] = None
            else:
                values = self.frame[self.names[key]].to_numpy()
                col = self[key]
                if values.dtype.kind == "f":
                    odd = np.isnan(values) | ((values == 0) & np.signbit(values))
                    if odd.any():
                        col = list(col)
                        for i in np.flatnonzero(odd).tolist():
                            col[i] = _NAN if col[i] != col[i] else _NEG_ZERO
                elif values.dtype.kind != "b" and values.dtype.kind not in "iu":
                    col = [(type(v), v if v == v else _NAN) for v in col]
                cache[key] = col
        return cache[key]  # type: ignore[no-any-return]


class _RowView(Mapping[str, Any]):
    """One row of a frame read column-wise: no per-row dict of all features is built."""

    __slots__ = ("_cols", "_i", "key_tuple")

    def __init__(self, cols: _Columns, i: int, key_tuple: tuple[str, ...]) -> None:
        self._cols = cols
        self._i = i
        self.key_tuple = key_tuple

    def __getitem__(self, key: str) -> Any:
        return self._cols[key][self._i]

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self._cols.names:
            return default
        return self._cols[key][self._i]

    def __iter__(self) -> Any:
        return iter(self.key_tuple)

    def __len__(self) -> int:
        return len(self.key_tuple)

    def keys(self) -> Any:
        return self._cols.names.keys()


class _RecordingRow(_RowView):
    """A `_RowView` that notes which columns a render reads, in order."""

    __slots__ = ("read",)

    def __init__(self, cols: _Columns, i: int, key_tuple: tuple[str, ...]) -> None:
        self._cols = cols
        self._i = i
        self.key_tuple = key_tuple
        self.read: list[str] = []

    def __getitem__(self, key: str) -> Any:
        self.read.append(key)
        return self._cols[key][self._i]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.append(key)
        if key not in self._cols.names:
            return default
        return self._cols[key][self._i]


_NAN = ("nan",)  # memo-key markers (see `_Columns.memo_keys`)
_NEG_ZERO = ("-0.0",)


class _BatchRenderer:
    """`render_reason` for many rows of one frame, memoised on exactly what each render reads.

    A render is a pure function of the feature, the language, the reference and the row
    values it reads; which values it reads next depends only on the values read so far.
    So a render that read columns (c1, ..., ck) with values (v1, ..., vk) gives the same
    sentence for any row with those values in those columns: rows that share them (the
    same plan, the same count, the same flag) are rendered once per batch.
    """

    def __init__(self, cols: _Columns, key_tuple: tuple[str, ...], language: str, reference: Any) -> None:
        self.cols = cols
        self.key_tuple = key_tuple
        self.language = language
        self.reference = reference
        # feature -> [(columns read, their memo keys, {values read: (family, sentence)})]
        self.memo: dict[
            str, list[tuple[tuple[str, ...], list[Any], dict[tuple[Any, ...], tuple[str, str, str]]]]
        ] = {}

    def render(self, feature: str, i: int) -> tuple[str, str, str]:
        """(family, sentence, reading) of `feature` for row `i`."""
        by_reads = self.memo.get(feature)
        if by_reads is None:
            by_reads = self.memo[feature] = []
        for _, keys, seen in by_reads:
            hit = seen.get(tuple([None if k is None else k[i] for k in keys]))
            if hit is not None:
                return hit
        row = _RecordingRow(self.cols, i, self.key_tuple)
        out = render_reason_with_reading(feature, row, self.language, self.reference)
        reads = tuple(dict.fromkeys(row.read))
        entry = next((e for e in by_reads if e[0] == reads), None)
        if entry is None:
            entry = (reads, [self.cols.memo_keys(c) for c in reads], {})
            by_reads.append(entry)
        entry[2][tuple([None if k is None else k[i] for k in entry[1]])] = out
        return out


# --- batch rendering: whole columns at once -----------------------------------------------
# Templates whose sentence depends only on the value shown (and the feature's fixed fields).
_EXPLICIT_TEMPLATES = frozenset(
    {"generic", "ratio_vs_prev", "change_ratio", "trend_pct", "slope_per_day", "slope_rel"}
    | {"contact_departed", "contacts_present", "cancellation", "nps_detractor", "nps_promoter"}
    | {"survey_nonresponse", "theme", "tickets_open", "open_age", "comment_sentiment", "nps_latest"}
    | {"nps_change", "days_to_renewal", "billing", "seat_utilisation"}
)
_SLOT = "\x00{}\x00"  # a placeholder that survives `format_map`, then becomes a `str.format` field


def _text_for(lang: dict[str, Any], template: str, variant: str, missing: bool) -> str:
    """The sentence pattern `render_reason_with_reading` uses for (template, variant)."""
    texts = lang["templates"]
    block = texts.get(template, texts["generic"])
    return str(block.get(variant) or texts["generic"]["missing" if missing else "value"])


def _compile(pattern: str, fields: dict[str, Any]) -> str:
    """`pattern` filled with `fields`, as a `str.format` string whose slots (`_SLOT`) stay open."""
    text = pattern.format_map(fields).replace("{", "{{").replace("}", "}}")
    return re.sub("\x00([a-z_]+)\x00", r"{\1}", text)


def _slot_fields(fixed: tuple[tuple[str, str], ...], *slots: str) -> _Default:
    fields = _Default(fixed)
    fields.update({s: _SLOT.format(s) for s in ("value", "n", "s", *slots)})
    return fields


@dataclass(frozen=True)
class _ColumnPlan:
    """How one feature's reasons are rendered for a whole column (see `_plan_column`).

    kind: `generic` (a number compared with its reference), `value` (the value shown as is),
    `renewal` (days to renewal, family by the row's plan), `text` (a text column's value as
    is; only for a batch whose values are all strings or missing), `computed` (fields such as
    a percentage or the change from companion columns computed per row: `template`, and
    `reads`, the companions) or `rendered` (a computed template whose companion is not a
    float column: its reading from the plan, its sentence one by one). `texts` maps a case to
    its compiled sentence; `other` (the companion column), `ref_case` (`prev`, `rate`, `pace`,
    or '' when there is none) and `scale_*` describe the comparison with it, `typical` the
    fallback.
    """

    kind: str
    family: str
    benign: frozenset[str]
    texts: dict[str, str]
    other: str = ""
    ref_case: str = ""
    scale_num: float = 1.0
    scale_den: float = 1.0
    typical: float | None = None
    rule: int = 0
    template: str = ""
    reads: tuple[tuple[str, ...], ...] = ()


@lru_cache(maxsize=8192)
def _plan_column(
    feature: str, keys: tuple[str, ...], float_keys: frozenset[str], language: str, typical: float | None
) -> _ColumnPlan | None:
    """The column plan of `feature`, or None when its rows are rendered one by one."""
    lang = _language(language)
    family, template, _, groups, fixed = _static_fields(feature, language)
    benign = benign_readings(feature)
    if feature not in float_keys:  # a text column: its values shown as they are (see `_holds_text`)
        if template != "generic":
            return None
        texts = {
            v: _compile(_text_for(lang, template, v, v == "missing"), _slot_fields(fixed))
            for v in ("value", "missing")
        }
        return _ColumnPlan("text", family, benign, texts)
    if template == "generic":
        base, other, kind, is_level = _companions(feature, keys)
        if other and other not in float_keys:
            return None
        texts = {
            "value": _compile(_text_for(lang, template, "value", False), _slot_fields(fixed)),
            "missing": _compile(_text_for(lang, template, "missing", True), _slot_fields(fixed)),
        }
        ref_window, scale, ref_case = "", (1.0, 1.0), kind
        window = groups.get("window", "")
        if other and kind == "window":
            ref_window = _window_of(other)
            if not is_level and window:  # a count: the longer window's pace per our window
                scale, ref_case = (float(window), float(ref_window)), "pace"
            else:
                ref_case = "rate"
        for case in (ref_case, "typical") if ref_case else ("typical",):
            for direction in ("down", "up", "flat"):
                fields = _slot_fields(fixed, "ref")
                fields["metric"] = _term(lang, base) if case != "typical" else fields["label"]
                has_window = fields["window"] and case != "typical"
                fields["when"] = (
                    lang["phrases"]["when"].format(in_window=fields["in_window"]) if has_window else ""
                )
                fields["ref_window"] = ref_window if case != "typical" else ""
                fields["cmp"] = lang["phrases"][f"cmp_{case}_{direction}"].format_map(fields)
                texts[f"{case}_{direction}"] = _compile(_text_for(lang, template, "compared", False), fields)
        return _ColumnPlan("generic", family, benign, texts, other, ref_case, *scale, typical)
    if template == "days_to_renewal":
        texts = {}
        for monthly in (False, True):
            fields = _slot_fields(fixed)
            fields["plan"] = lang["templates"]["days_to_renewal"]["monthly_plan"] if monthly else ""
            for variant in ("due", "missing"):
                texts[f"{variant}_{monthly}"] = _compile(
                    _text_for(lang, template, variant, variant == "missing"), fields
                )
        return _ColumnPlan("renewal", family, benign, texts)
    if template == "billing":  # a numeric billing column: which plan its value says
        rule = 11 if "monthly" in feature else 12 if "annual" in feature else 13
        fields = _slot_fields(fixed)
        texts = {v: _compile(_text_for(lang, template, v, v == "missing"), fields) for v in _READINGS}
        return _ColumnPlan("value", family, benign, texts, rule=rule)
    if template in _READ_RULES:
        rule = _READ_RULES[template] + (100 if template == "theme" and "window" in groups else 0)
        if template in _COMPUTED_TEMPLATES:
            return _computed_plan(feature, template, groups, fixed, keys, float_keys, language, rule)
        fields = _slot_fields(fixed)
        if template in ("contact_departed", "contacts_present"):
            fields["who"] = _term(lang, _singular(groups.get("who", "champion")))
        elif template == "theme":
            fields["theme"] = _term(lang, groups.get("theme", ""))
        elif template == "comment_sentiment":
            agg = "last" if groups.get("agg") in ("last", "latest") else groups.get("agg", "last")
            fields["subject"] = lang["phrases"][f"subject_{agg}"].format(
                in_window=fields["in_window"], window=groups.get("window", "")
            )
        texts = {v: _compile(_text_for(lang, template, v, v == "missing"), fields) for v in _READINGS}
        return _ColumnPlan("value", family, benign, texts, rule=rule)
    if template in _EXPLICIT_TEMPLATES:
        return None
    fields = _slot_fields(fixed)
    if template == "health_component":
        fields["component"] = _term(lang, groups.get("component", feature))
    if template == "days_since":
        fields["what"] = _term(lang, groups.get("what", feature))
    texts = {v: _compile(_text_for(lang, template, v, v == "missing"), fields) for v in ("value", "missing")}
    return _ColumnPlan("value", family, benign, texts)


# Templates whose sentence also takes numbers computed per row (a percentage, the change
# from companion columns, the oldest open ticket's age): template -> the fields computed.
_COMPUTED_TEMPLATES: dict[str, tuple[str, ...]] = {
    "ratio_vs_prev": ("pct", "change"), "change_ratio": ("pct", "change"), "trend_pct": ("pct", "change"),
    "nps_change": ("pct", "change"), "slope_rel": ("pct",), "seat_utilisation": ("pct",),
    "tickets_open": ("oldest",), "open_age": ("oldest",), "slope_per_day": ("amount", "avg", "pct", "share"),
}  # fmt: skip


def _computed_plan(
    feature: str, template: str, groups: dict[str, str], fixed: tuple[tuple[str, str], ...],
    keys: tuple[str, ...], float_keys: frozenset[str], language: str, rule: int,
) -> _ColumnPlan | None:  # fmt: skip
    """The plan of a `_COMPUTED_TEMPLATES` feature: patterns with slots for the computed fields,
    and the companion columns `_variant` reads (`reads`: (previous, current) or (age,), each
    the columns `_first` tries in order). Kind `rendered` when a companion is not a float column;
    None (rendered one by one, reading included) when the reading itself needs that companion."""
    lang = _language(language)
    family, benign = classify_feature(feature)[0], benign_readings(feature)
    w, metric = groups.get("window", ""), groups.get("metric", "")
    fields = _slot_fields(fixed, *_COMPUTED_TEMPLATES[template])
    if template in ("tickets_open", "open_age"):
        fields["what"], fields["noun"] = _what(lang, groups.get("what", "tickets"), language)
        fields["over"] = lang["phrases"]["over"].format(days=groups["days"]) if "days" in groups else ""
        reads: tuple[tuple[str, ...], ...] = ((f"{feature}_max_age_days",),)
    elif template == "nps_change":
        reads = (("nps_prev",), ("nps_last", "nps_latest"))
    elif template == "change_ratio":
        reads = ((f"{metric}_{w}d_ago", f"{metric}_enabled_{w}d_ago"), (metric, f"{metric}_enabled"))
    elif template in ("ratio_vs_prev", "trend_pct"):
        reads = ((f"{metric}_prev_{w}d",), (f"{metric}_{w}d",))
    elif template == "slope_per_day":  # the total over the window: the daily average
        reads = ((f"{metric}_{w}d",),)
    else:
        reads = ()
    if template not in ("tickets_open", "open_age", "nps_change", "seat_utilisation"):
        fields["metric"] = _term(lang, metric)
    names = set(keys)
    reads = tuple(tuple(c for c in cols if c in names) for cols in reads)
    if any(c not in float_keys for cols in reads for c in cols):
        if template == "slope_per_day":  # "flat" depends on the total (e.g. an int count column)
            return None
        return _ColumnPlan("rendered", family, benign, {}, rule=rule)
    texts = {v: _compile(_text_for(lang, template, v, v == "missing"), fields) for v in _READINGS}
    texts["_oldest"], texts["_change"] = lang["phrases"]["oldest"], lang["phrases"]["change"]
    if template != "slope_per_day":
        return _ColumnPlan("computed", family, benign, texts, rule=rule, template=template, reads=reads)
    share = _slot_fields(fixed, "amount", "avg", "pct")
    share["metric"] = fields["metric"]
    texts["_share"] = _compile(lang["templates"]["slope_per_day"]["share"], share)
    total = reads[0][0] if reads[0] else ""  # the reading compares the slope with it
    return _ColumnPlan(
        "computed",
        family,
        benign,
        texts,
        other=total,
        scale_den=float(w),
        rule=rule,
        template=template,
        reads=reads,
    )


# reading codes of the column plans
_READINGS: tuple[str, ...] = ("missing", "value", "down", "up", "flat", "yes", "no", "yes_latest")
_READINGS += ("negative", "neutral", "positive", "detractor", "passive", "promoter")
_READINGS += ("monthly", "annual", "other")
_MONTHLY, _ANNUAL, _OTHER = (_READINGS.index(r) for r in ("monthly", "annual", "other"))
_MISSING, _VALUE, _DOWN, _UP, _FLAT, _YES, _NO, _YES_LATEST = range(8)
# templates whose reading is a function of the value alone (slope_per_day: and of the total
# behind it): template -> rule of `_Readings.read`. Those in `_COMPUTED_TEMPLATES` get
# sentences with fields computed per row, the others patterns with the fixed fields only.
_READ_RULES = {
    "contact_departed": 1, "contacts_present": 1, "cancellation": 1, "nps_detractor": 1,
    "nps_promoter": 1, "survey_nonresponse": 1, "tickets_open": 1, "theme": 2, "open_age": 3,
    "seat_utilisation": 3, "comment_sentiment": 4, "nps_latest": 5, "ratio_vs_prev": 6,
    "change_ratio": 7, "trend_pct": 8, "slope_rel": 9, "nps_change": 10, "slope_per_day": 14,
}  # fmt: skip


def _monthly_flags(cols: _Columns, key_tuple: tuple[str, ...], n: int) -> np.ndarray:
    """`_is_monthly` of every row, column by column."""
    out = np.zeros(n, dtype=bool)
    open_ = np.ones(n, dtype=bool)
    for key, kind in _plan_columns(key_tuple):
        values = cols.frame[cols.names[key]].to_numpy()
        if values.dtype.kind == "f":
            rule = _plan_rule(key, kind)
            if rule is None:
                continue
            says = open_ & ~np.isnan(values)
            out[says] = (values[says] != 0) == rule
            open_ &= ~says
        else:
            col = cols[key]
            for i in np.flatnonzero(open_).tolist():
                said = _plan_says(key, kind, col[i])
                if said is not None:
                    out[i], open_[i] = said, False
        if not open_.any():
            break
    return out


class _Facts:
    """The per-feature facts of a set of column plans, as arrays over the features: built once
    per (features, frame columns, language, reference) (`_feature_facts`), read-only."""

    def __init__(
        self,
        names: tuple[str, ...],
        floats: tuple[str, ...],
        plans: tuple[_ColumnPlan | None, ...],
        language: str,
    ) -> None:
        self.plans = plans
        static = [_static_fields(f, language) for f in names]
        self.families = tuple(dict.fromkeys([s[0] for s in static] + ["renewal_monthly", "renewal_annual"]))
        fam_id = {f: i for i, f in enumerate(self.families)}
        self.benign_of = tuple(benign_readings(f) for f in names)
        # the block (`_Readings`): the frame's float columns as they are (plans read no others),
        # then the text columns with plans, then a column of NaN
        self.text = tuple(names[j] for j, p in enumerate(plans) if p is not None and p.kind == "text")
        at = {name: i for i, name in enumerate(floats + self.text)}
        self.at = at
        none = len(at)  # the block's last column: all NaN (the companion of a feature that has none)
        self.known = np.array([p is not None for p in plans], dtype=bool)
        self.numeric = np.array([p is not None and p.kind != "text" for p in plans], dtype=bool)
        self.col = np.array([at.get(f, none) for f in names])
        self.other = np.array([at.get(p.other, none) if p else none for p in plans])
        self.generic = np.array([p is not None and p.kind == "generic" for p in plans])
        self.renewal = np.array([p is not None and p.kind == "renewal" for p in plans])
        self.pace = np.array([p is not None and p.ref_case == "pace" for p in plans])
        self.num = np.array([p.scale_num if p else 1.0 for p in plans])
        self.den = np.array([p.scale_den if p else 1.0 for p in plans])
        self.typical = np.array([np.nan if p is None or p.typical is None else p.typical for p in plans])
        self.rule = np.array([p.rule if p else 0 for p in plans])
        self.family = np.array([fam_id[p.family] if p else 0 for p in plans], dtype=np.int64)
        self.benign = np.array([[r in p.benign if p else False for r in _READINGS] for p in plans])
        self.benign[self.renewal, _VALUE] = [("due" in p.benign) for p in plans if p and p.kind == "renewal"]
        # the sentence patterns of the generic, value and renewal plans, by pattern code (see
        # `_Readings.table_texts`): feature j's pattern for code c is `patterns[table[j] + c]`
        patterns: list[str | None] = []
        table = []
        for p in plans:
            table.append(len(patterns) if p is not None and p.kind in _TABLE_KINDS else -1)
            if table[-1] >= 0:
                patterns += [_positional(_pattern(p, r, bool(h))) for r in _READINGS for h in (0, 1)]  # type: ignore[arg-type]
        self.patterns, self.table = tuple(patterns), np.array(table, dtype=np.int64)
        for array in vars(self).values():
            if isinstance(array, np.ndarray):
                array.flags.writeable = False


_TABLE_KINDS = frozenset({"generic", "value", "renewal"})


def _pattern(p: _ColumnPlan, reading: str, flag: bool) -> str | None:
    """The pattern of plan `p` for a reading; `flag`: a renewal's monthly plan, or that a
    generic value has its companion (else it is compared with the typical account)."""
    if p.kind == "renewal":
        return p.texts[f"{'missing' if reading == 'missing' else 'due'}_{flag}"]
    if p.kind == "generic" and reading in ("down", "up", "flat"):
        return p.texts.get(f"{p.ref_case if flag else 'typical'}_{reading}")
    return p.texts.get(reading)


_POSITIONS = {"value": "0", "n": "0", "s": "1", "ref": "2"}


def _positional(pattern: str | None) -> str | None:
    """A compiled pattern with positional slots: format(value, s, ref) (no keyword dict per call)."""
    if pattern is None:
        return None
    out = []
    for literal, field, _, _ in string.Formatter().parse(pattern):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is not None:
            out.append("{" + _POSITIONS[field] + "}")
    return "".join(out)


@lru_cache(maxsize=16)
def _feature_facts(
    names: tuple[str, ...], keys: tuple[str, ...], floats: tuple[str, ...], language: str,
    typical: tuple[float | None, ...],
) -> _Facts:  # fmt: skip
    """The plans and facts of `names` for a frame with columns `keys`, of which `floats` are floats."""
    float_keys = frozenset(floats)
    plans = tuple(_plan_column(f, keys, float_keys, language, t) for f, t in zip(names, typical, strict=True))
    return _Facts(names, floats, plans, language)


class _Readings:
    """Reading, family and benign flag of (row, feature) pairs whose feature has a column plan.

    Per-feature facts are arrays over the features (`_Facts`), the values one float block of
    the columns the plans read; a block of ranks of candidates is read for all its rows at once.
    """

    def __init__(
        self, X: pd.DataFrame, floats: pd.DataFrame, cols: _Columns, names: list[str], facts: _Facts,
        fam_id: dict[str, int],
    ) -> None:  # fmt: skip
        n = len(X)
        self.cols, self.names, self.at = cols, names, facts.at
        self.memo: dict[tuple[Any, ...], str] = {}  # see `texts`
        block = np.empty((n, len(facts.at) + 1))
        block[:, : floats.shape[1]] = floats.to_numpy(dtype=float)
        for name in facts.text:  # a text column as 1 (a value) or NaN (missing): its reading
            block[:, facts.at[name]] = [1.0 if isinstance(v, str) else np.nan for v in cols[name]]
        block[:, -1] = np.nan
        self.block = block
        self.known, self.numeric, self.col, self.other = facts.known, facts.numeric, facts.col, facts.other
        self.generic, self.renewal, self.pace = facts.generic, facts.renewal, facts.pace
        self.num, self.den, self.typical, self.rule = facts.num, facts.den, facts.typical, facts.rule
        self.family, self.benign = facts.family, facts.benign
        self.table, self.patterns = facts.table, facts.patterns
        self.monthly = np.zeros(n, dtype=bool)
        if self.renewal.any():
            self.monthly = _monthly_flags(cols, _Keys(cols.names), n)
        self.fam_monthly, self.fam_annual = fam_id["renewal_monthly"], fam_id["renewal_annual"]

    def read(self, rows: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(reading code, family id, has a companion, reference) of pairs (rows, j) with plans.

        The reference is `_compare`'s: the companion (per day for a count over a longer
        window), else the typical value; the reading of a generic value is its direction.
        """
        x = self.block[rows, self.col[j]]
        companion = self.block[rows, self.other[j]]
        has = ~np.isnan(companion)
        ref = np.where(self.pace[j], companion * self.num[j] / self.den[j], companion)
        typical = self.typical[j]
        ref = np.where(has, ref, typical)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = (x - ref) / np.abs(ref)
        direction = np.where(rel < -_FLAT_BAND, _DOWN, np.where(rel > _FLAT_BAND, _UP, _FLAT))
        direction = np.where(ref == 0, np.where(x == 0, _FLAT, np.where(x > 0, _UP, _DOWN)), direction)
        compared = np.where(self.generic[j] & (has | ~np.isnan(typical)), direction, _VALUE)
        ruled = np.flatnonzero(self.rule[j])
        if ruled.size:
            avg = companion[ruled] / self.den[j[ruled]]  # slope_per_day: the total per day
            compared[ruled] = self._by_rule(self.rule[j[ruled]], x[ruled], avg)
        reading = np.where(np.isnan(x), _MISSING, compared)
        family = np.where(
            self.renewal[j], np.where(self.monthly[rows], self.fam_monthly, self.fam_annual), self.family[j]
        )
        family = np.where(reading == _ANNUAL, self.fam_annual, family)  # billing: an annual plan
        return reading, family, has, ref

    @staticmethod
    def _by_rule(rule: np.ndarray, x: np.ndarray, avg: np.ndarray) -> np.ndarray:
        """The variant `_variant` picks for a present value `x` of a `_READ_RULES` template."""

        def direction(v: np.ndarray, flat: float = 0.5) -> np.ndarray:
            return np.where(v < -flat, _DOWN, np.where(v > flat, _UP, _FLAT))

        def bands(low: int) -> np.ndarray:  # a 0-10 score: <= 6, <= 8, above
            return np.where(x <= 6, low, np.where(x <= 8, low + 1, low + 2))

        yes = np.where(x > 0, _YES, _NO)
        with np.errstate(divide="ignore", invalid="ignore"):
            slight = (avg != 0) & ~np.isnan(avg) & (np.abs(x) / avg < 0.001)
        return np.select(  # type: ignore[no-any-return]
            [rule == 1, rule == 2, rule == 102, rule == 3, rule == 4, rule == 5, rule == 6, rule == 7,
             rule == 8, rule == 9, rule == 10, rule == 11, rule == 12, rule == 13, rule == 14],
            [yes, np.where(x > 0, _YES_LATEST, _NO), yes, _VALUE, bands(_READINGS.index("negative")),
             bands(_READINGS.index("detractor")), direction((x - 1) * 100), direction(x * 100),
             direction(x), direction(x * 100, flat=2.0), direction(x, flat=0.0),
             np.where(x > 0, _MONTHLY, _ANNUAL), np.where(x > 0, _ANNUAL, _MONTHLY), _OTHER,
             np.where(slight, _FLAT, direction(x, flat=0.0))],
            _VALUE,
        )  # fmt: skip

    def table_texts(
        self, rows: np.ndarray, j: np.ndarray, reading: np.ndarray, has: np.ndarray, ref: np.ndarray
    ) -> list[str]:
        """The sentences of pairs (rows, j) whose plans are in `_TABLE_KINDS`, all at once.

        A sentence is a function of its pattern, the value and the reference shown, so each
        distinct (pattern, value, reference) is formatted once per batch (`memo`; -0.0 and
        0.0 share an entry: they print alike, and a NaN never matches, so is formatted anew).
        """
        x = self.block[rows, self.col[j]].tolist()
        code = 2 * reading + np.where(self.renewal[j], self.monthly[rows], has)
        compared = self.generic[j] & (reading > _VALUE)
        keys = list(
            zip((self.table[j] + code).tolist(), x, np.where(compared, ref, 0.0).tolist(), strict=True)
        )
        memo, patterns, shows_ref = self.memo, self.patterns, compared.tolist()
        out = list(map(memo.get, keys))
        for t in [t for t, text in enumerate(out) if text is None]:
            key = keys[t]
            text = memo.get(key)  # a value seen earlier in this batch
            if text is None:
                at, v, rf = key
                text = memo[key] = patterns[at].format(  # type: ignore[union-attr]
                    _fmt_float(v), "" if v == 1 else "s", _fmt_ref(rf) if shows_ref[t] else ""
                )
            out[t] = text
        return out  # type: ignore[return-value]

    def texts(self, j: int, p: _ColumnPlan, rows: np.ndarray, reading: np.ndarray) -> list[str]:
        """The sentences of feature `j` (a `computed` or `text` plan) for `rows`, given their readings."""
        if p.kind == "computed":
            return self._computed_texts(p, rows, self.block[rows, self.col[j]].tolist(), reading.tolist())
        col, t = self.cols[self.names[j]], p.texts
        shown = [v if isinstance(v, str) else "?" for v in map(col.__getitem__, rows.tolist())]
        return [
            t[_READINGS[r]].format(value=v, n=v, s="s") for r, v in zip(reading.tolist(), shown, strict=True)
        ]

    def _computed_texts(
        self, p: _ColumnPlan, rows: np.ndarray, xs: list[float], reading: list[int]
    ) -> list[str]:
        """The sentences of a `computed` plan: `_variant`'s fields from the value and companions."""
        found = []
        for cols in p.reads:  # `_first`: the first of the columns that has a value
            v = np.full(len(rows), np.nan)
            for c in cols:
                v = np.where(np.isnan(v), self.block[rows, self.at[c]], v)
            found.append(v.tolist())
        t, template = p.texts, p.template
        out = []
        for i, (r, x) in enumerate(zip(reading, xs, strict=True)):
            shown = _fmt_float(x)
            fields = {"value": shown, "n": shown, "s": "" if x == 1 else "s"}
            present = x == x
            if template in ("tickets_open", "open_age"):
                age = found[0][i] if found else math.nan
                fields["oldest"] = t["_oldest"].format(days=f"{round(age):,}") if age == age and age else ""
                if template == "open_age":
                    fields["value"] = f"{round(x):,}" if present else "?"
            elif template == "slope_rel":
                fields["pct"] = f"{round(abs(x) * 100):,}" if present else ""
            elif template == "seat_utilisation":
                fields["pct"] = f"{round(x * 100 if x <= 2 else x):,}" if present else ""
            elif template == "slope_per_day":
                fields.update(amount="", avg="", pct="", share="")
                if present:
                    ax, total = abs(x), found[0][i] if found[0] else math.nan
                    avg = total / p.scale_den if total == total else None
                    fields["amount"] = _fmt(round(ax, 2) if ax < 10 else round(ax))
                    if avg:
                        fields["avg"] = _fmt(round(avg, 1) if avg < 100 else round(avg))
                        fields["pct"] = _fmt(
                            round(ax / avg * 100, 1) if ax < avg / 10 else round(ax / avg * 100)
                        )
                        fields["share"] = t["_share"].format_map(fields)
            else:
                prev: float | int | None = found[0][i] if found[0] else math.nan
                cur: float | None = found[1][i] if found[1] else math.nan
                prev = None if prev != prev else prev
                cur = None if cur != cur else cur
                if template == "trend_pct" and prev is None and cur is not None and present and x > -100:
                    prev = round(cur / (1 + x / 100.0))
                fields["change"] = (
                    "" if prev is None or cur is None
                    else t["_change"].format(prev=_fmt(round(prev, 1)), cur=_fmt(round(cur, 1)))
                )  # fmt: skip
                if not present:
                    fields["pct"] = ""
                elif template == "ratio_vs_prev":
                    fields["pct"] = f"{round(abs(x - 1) * 100):,}"
                elif template == "change_ratio":
                    fields["pct"] = f"{round(abs(x) * 100):,}"
                elif template == "trend_pct":
                    fields["pct"] = f"{round(abs(x)):,}"
                else:  # nps_change: points, as they are
                    fields["pct"] = _fmt(abs(x))
            out.append(t[_READINGS[r]].format_map(fields))
        return out


_TEXT_TYPES = frozenset({str, type(None), type(pd.NA), float})


def _holds_text(col: list[Any]) -> bool:
    """True when every value is a string or missing (None, NA, NaN): read as text as it is."""
    types = set(map(type, col))
    return types <= _TEXT_TYPES and (float not in types or all(v != v for v in col if type(v) is float))


def _fmt_ref(v: float) -> str:
    """`_fmt` of a reference as `_compare` rounds it: to 0.1 below 100, else to a whole number.

    Below 100 from the one-decimal string, which has the digits of `round(v, 1)` (both round
    the exact value half to even): a whole number without its '.0', below 1 with two decimals.
    """
    if abs(v) >= 100:
        return f"{round(v):,}"
    one = f"{v:.1f}"
    if one.endswith(".0"):
        return f"{int(one[:-2]):,}"
    return one + "0" if one.startswith(("0.", "-0.")) else one


def _fmt_float(v: float) -> str:
    """`_fmt` of a float (inlined: the common case of a batch)."""
    if v != v:
        return "?"
    if abs(v - round(v)) < 1e-9 or abs(v) >= 100:
        return f"{round(v):,}"
    return f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}"


@dataclass(frozen=True)
class ReasonTable:
    """The reasons of a batch as columns: row i's are entries `offsets[i]:offsets[i + 1]`,
    largest first. What `Reason` holds, without an object per reason (the scoring API
    serialises these columns directly)."""

    offsets: np.ndarray
    feature: list[str]
    family: list[str]
    value: list[float | None]
    shap: list[float]
    text: list[str]
    playbook_id: list[str]
    action: list[str]

    @classmethod
    def empty(cls, n: int) -> ReasonTable:
        return cls(np.zeros(n + 1, dtype=np.int64), [], [], [], [], [], [], [])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self) -> list[list[Reason]]:
        """The reasons as `Reason` objects, one list per row."""
        reasons = list(
            map(
                Reason,
                self.feature,
                self.family,
                self.value,
                self.shap,
                self.text,
                self.playbook_id,
                self.action,
            )
        )
        bounds = self.offsets.tolist()
        return [reasons[a:b] for a, b in itertools.pairwise(bounds)]


def reason_table(
    X: pd.DataFrame,
    feature_names: Sequence[str],
    contributions: np.ndarray,
    top_n: int = 3,
    language: str = "en",
    reference: Mapping[str, float] | None = None,
) -> ReasonTable:
    """Each row's top `top_n` risk-raising features (SHAP > 0), largest first, as columns.

    `reference`: typical value per feature (see `render_reason`).

    One reason per family: when a feature's family is already among the row's reasons, the
    next largest contributor of another family takes its place (so the top 3 name three
    different problems). A reason must read as a risk: when the sentence would describe a
    healthy state (a `benign` reading in rules.yaml, e.g. "active users up from 5 to 7" or
    "on an annual plan"), the next contributor takes its place, so a row may get fewer
    than `top_n` reasons.

    Rendered column-wise: candidates are ranked by blocks of ranks (an argmax per rank over
    the rows still short of `top_n`), each block's readings (family, benign or not) computed
    as arrays from the features' column plans (`_ColumnPlan`, `_Facts`), then the rank-by-rank
    choice made for all rows at once; only the chosen reasons get sentences: patterns
    compiled once, each distinct (pattern, value, reference) formatted once per batch, the
    computed fields (percentages, changes, ages) per chosen reason. Features without a plan
    (a companion or text column holding other objects) are rendered one by one
    (`_BatchRenderer`: each distinct (feature, values read) once per batch). The sentences
    equal `render_reason_with_reading` row by row (tests/test_reasons_batch.py).
    """
    _language(language)  # fail early on an unknown language
    names = list(feature_names)
    n_feat = len(names)
    contrib = np.asarray(contributions, dtype=float)[:, :n_feat]
    n = contrib.shape[0]
    cols = _Columns(X)
    key_tuple = _Keys(cols.names)
    floats = X.select_dtypes("float")  # the float columns: one block in the API's frames
    float_names = tuple(map(str, floats.columns.tolist()))
    typical = tuple(None if reference is None else _num(reference.get(f)) for f in names)
    facts = _feature_facts(tuple(names), key_tuple, float_names, language, typical)
    plans = list(facts.plans)
    for jj, plan in enumerate(plans):
        if plan is not None and plan.kind == "text" and not _holds_text(cols[names[jj]]):
            plans[jj] = None  # other objects (numbers, flags) are rendered one by one
    if plans != list(facts.plans):
        facts = _Facts(tuple(names), float_names, tuple(plans), language)
    families, benign = facts.families, facts.benign_of
    fam_id = {f: i for i, f in enumerate(families)}
    readings = _Readings(X, floats, cols, names, facts, fam_id)
    renderer = _BatchRenderer(cols, key_tuple, language, reference)
    positive = np.count_nonzero(contrib > 0, axis=1)
    seen = np.zeros((n, len(families)), dtype=bool)
    count = np.zeros(n, dtype=np.int64)
    chosen: list[tuple[np.ndarray, ...]] = []  # rows, rank, feature, family, reading, has, reference
    one_by_one: dict[tuple[int, int], str] = {}  # (row, feature) -> sentence
    rows = np.flatnonzero(positive > 0) if top_n > 0 else np.zeros(0, dtype=np.int64)
    # the rows' positive contributions not yet ranked (NaN -> 0)
    work = np.fmax(contrib if rows.size == n else contrib[rows], 0.0)
    start, width = 0, top_n + 2
    while rows.size:  # a block of ranks [start, stop) of the rows still short of top_n reasons
        stop = min(n_feat, start + width)
        m, w = rows.size, stop - start
        at = np.arange(m)
        cand = np.empty((m, w), dtype=np.int64)
        for p in range(w):  # argmax: the largest left, the first feature among equals
            cand[:, p] = top = work.argmax(axis=1)
            work[at, top] = 0.0
        live = np.flatnonzero((positive[rows][:, None] > np.arange(start, stop)).ravel())
        pr, pj = np.repeat(rows, w)[live], cand.ravel()[live]
        planned = readings.known[pj]
        reading, fam, has, ref = readings.read(pr, pj)
        skip = readings.benign[pj, reading] & planned
        for t in np.flatnonzero(~planned).tolist():
            i, jj = int(pr[t]), int(pj[t])
            family, text, read_as = renderer.render(names[jj], i)
            if family not in fam_id:
                fam_id[family] = len(fam_id)
                seen = np.pad(seen, ((0, 0), (0, 1)))
            fam[t], skip[t] = fam_id[family], read_as in benign[jj]
            one_by_one[(i, jj)] = text
        ok_, fam_, reading_, has_, ref_ = (
            np.zeros(m * w, dtype=a.dtype) for a in (skip, fam, reading, has, ref)
        )
        ok_[live], fam_[live], reading_[live], has_[live], ref_[live] = ~skip, fam, reading, has, ref
        ok_, fam_, reading_, has_, ref_ = (a.reshape(m, w) for a in (ok_, fam_, reading_, has_, ref_))
        have = count[rows]
        for p in np.flatnonzero(ok_.any(axis=0)).tolist():  # rank by rank: a family once per row
            q = np.flatnonzero(ok_[:, p] & (have < top_n))
            at_row, f = rows[q], fam_[q, p]
            new = ~seen[at_row, f]
            q, at_row, f = q[new], at_row[new], f[new]
            chosen.append((at_row, have[q], cand[q, p], f, reading_[q, p], has_[q, p], ref_[q, p]))
            seen[at_row, f] = True
            have[q] += 1
        count[rows] = have
        more = (have < top_n) & (positive[rows] > stop)
        rows, work = rows[more], work[more]
        start, width = stop, 2 * width
    if not chosen:
        return ReasonTable.empty(n)
    rows, rank, j, fam, reading, has, ref = (np.concatenate(parts) for parts in zip(*chosen, strict=True))
    by_row = np.lexsort((rank, rows))
    rows, j, fam, reading, has, ref = (a[by_row] for a in (rows, j, fam, reading, has, ref))
    tabled = readings.table[j] >= 0
    if tabled.all():
        texts = readings.table_texts(rows, j, reading, has, ref)
    else:
        texts = [""] * len(rows)
        at = np.flatnonzero(tabled)
        for t, text in zip(
            at.tolist(), readings.table_texts(*(a[at] for a in (rows, j, reading, has, ref))), strict=True
        ):
            texts[t] = text
        by_feature = np.flatnonzero(~tabled)[np.argsort(j[~tabled], kind="stable")]
        for group in np.split(by_feature, np.flatnonzero(np.diff(j[by_feature])) + 1):
            jj = int(j[group[0]])
            plan = plans[jj]
            if plan is None:
                got = [one_by_one[(i, jj)] for i in rows[group].tolist()]
            elif plan.kind == "rendered":
                got = [renderer.render(names[jj], i)[1] for i in rows[group].tolist()]
            else:
                got = readings.texts(jj, plan, rows[group], reading[group])
            for t, text in zip(group.tolist(), got, strict=True):
                texts[t] = text
    values: list[Any] = [None if v != v else v for v in readings.block[rows, readings.col[j]].tolist()]
    for t in np.flatnonzero(~readings.numeric[j]).tolist():  # text columns, or rendered one by one
        values[t] = _num(cols[names[j[t]]][rows[t]])
    family_names = list(fam_id)
    books = [playbook_for(f) for f in family_names]
    fams = fam.tolist()
    return ReasonTable(
        offsets=np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]),
        feature=list(map(names.__getitem__, j.tolist())),
        family=list(map(family_names.__getitem__, fams)),
        value=values,
        shap=contrib[rows, j].tolist(),
        text=texts,
        playbook_id=[books[f][0] for f in fams],
        action=[books[f][1] for f in fams],
    )


def reasons_from_contributions(
    X: pd.DataFrame,
    feature_names: Sequence[str],
    contributions: np.ndarray,
    top_n: int = 3,
    language: str = "en",
    reference: Mapping[str, float] | None = None,
) -> list[list[Reason]]:
    """Each row's top `top_n` risk-raising features (SHAP > 0) as `Reason`s, largest first (see
    `reason_table`, which has the rules)."""
    return reason_table(X, feature_names, contributions, top_n, language, reference).rows()


def explain_table(bundle: ModelBundle, X: pd.DataFrame, top_n: int = 3, language: str = "en") -> ReasonTable:
    """`explain_rows` as a `ReasonTable`."""
    contrib = bundle.contributions(X)
    reference = getattr(bundle, "feature_reference", None)
    return reason_table(X, bundle.feature_names, contrib, top_n=top_n, language=language, reference=reference)


def explain_rows(
    bundle: ModelBundle, X: pd.DataFrame, top_n: int = 3, language: str = "en"
) -> list[list[Reason]]:
    """Top reasons (risk-raising SHAP contributors) for each row of `X`, in `language`."""
    return explain_table(bundle, X, top_n=top_n, language=language).rows()
