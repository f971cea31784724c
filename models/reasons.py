"""Reason codes: an account's top risk contributors as plain sentences with playbook actions.

A feature's name decides its reason family and sentence template (`templates/rules.yaml`,
first matching regex wins); the sentence (`templates/<language>.yaml`) is filled with the
account's own values, including companion columns (e.g. the 30-day count behind a
30-day trend). Families map to CS actions in `playbooks.yaml`. Unknown features fall
back to a generic sentence built from the column name, so the pipeline runs unchanged
on any company's feature set.
"""

from __future__ import annotations

import math
import re
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


@lru_cache(maxsize=1)
def _rules() -> tuple[_Rule, ...]:
    doc = yaml.safe_load((HERE / "templates" / "rules.yaml").read_text(encoding="utf-8"))
    return tuple(_Rule(re.compile(r["pattern"]), r["family"], r["template"]) for r in doc["rules"])


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


def classify_feature(feature: str) -> tuple[str, str, dict[str, str]]:
    """(family, template id, named groups) for a feature name."""
    for rule in _rules():
        m = rule.pattern.search(feature)
        if m:
            groups = {k: v for k, v in m.groupdict().items() if v is not None}
            return rule.family, rule.template, groups
    return "other", "generic", {}


# --- formatting helpers -------------------------------------------------------------------
def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _fmt(v: Any) -> str:
    if _is_missing(v):
        return "?"
    if isinstance(v, str):
        return v
    x = float(v)
    if abs(x - round(x)) < 1e-9 or abs(x) >= 100:
        return f"{round(x):,}"
    return f"{x:.2f}" if abs(x) < 1 else f"{x:.1f}"


def _term(lang: dict[str, Any], key: str) -> str:
    terms = lang.get("terms", {})
    if key in terms:
        return str(terms[key])
    return " ".join(str(terms.get(tok, tok)) for tok in key.split("_") if tok)


def _label(lang: dict[str, Any], feature: str) -> str:
    """A readable name for any column: `tickets_question_30d` -> 'support tickets question (last 30 days)'."""
    m = re.search(r"_(\d+)d(?=_|$)", feature)
    window = ""
    base = feature
    if m:
        window = lang["phrases"]["window_label"].format(window=m.group(1))
        base = feature[: m.start()] + feature[m.end() :]
    return _term(lang, base.strip("_")) + window


def _num(v: Any) -> float | None:
    if _is_missing(v) or isinstance(v, str):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _is_monthly(row: Mapping[str, Any]) -> bool:
    for key, v in row.items():
        k = str(key)
        if "billing" in k and isinstance(v, str):
            return v.strip().lower() == "monthly"
        if re.search(r"(^|_)(is_)?monthly($|_)", k) and _num(v) is not None:
            return bool(_num(v))
    return False


def _in_window(lang: dict[str, Any], groups: Mapping[str, str]) -> str:
    if "window" in groups:
        return lang["phrases"]["in_window"].format(window=groups["window"])
    return lang["phrases"]["no_window"]


def render_reason(feature: str, row: Mapping[str, Any], language: str = "en") -> tuple[str, str]:
    """(family, sentence) describing `feature` for one account row (all its feature values)."""
    lang = _language(language)
    family, template, groups = classify_feature(feature)
    if "window" not in groups:
        m = re.search(r"_(\d+)d(?=_|$)", feature)
        if m:
            groups = {**groups, "window": m.group(1)}
    texts = lang["templates"]
    raw = row.get(feature)
    x = _num(raw)
    missing = _is_missing(raw)
    fields: dict[str, Any] = {
        "value": _fmt(raw),
        "label": _label(lang, feature),
        "in_window": _in_window(lang, groups),
        "window": groups.get("window", ""),
        "n": _fmt(raw),
        "s": "" if x == 1 else "s",
    }
    variant = "missing" if missing else "value"
    if template == "trend_pct":
        metric = groups.get("metric", feature)
        fields["metric"] = _term(lang, metric)
        fields["pct"] = _fmt(round(abs(x))) if x is not None else "?"
        fields["change"] = ""
        current = _num(row.get(f"{metric}_{groups.get('window', '')}d"))
        if x is not None and current is not None and x > -100:
            prev = current / (1 + x / 100.0)
            fields["change"] = lang["phrases"]["change"].format(prev=_fmt(round(prev)), cur=_fmt(current))
        if x is not None:
            variant = "down" if x < -0.5 else "up" if x > 0.5 else "flat"
    elif template in ("champion_departed", "contact_departed", "champion_present", "theme"):
        if x is not None:
            variant = "yes" if x > 0 else "no"
            if template == "theme" and variant == "yes" and "window" not in groups:
                variant = "yes_latest"
        if template == "theme":
            fields["theme"] = _term(lang, groups.get("theme", ""))
    elif template == "tickets_open":
        tokens = [t for t in groups.get("what", "").split("_") if t and t != "open"]
        sev = [t for t in tokens if t in SEVERITIES]
        cat = "_".join(t for t in tokens if t not in SEVERITIES) or "ticket"
        sev_text = _term(lang, "_".join(sev)) if sev else ""
        noun = _term(lang, cat)
        fields["noun"] = noun
        # English puts severity and noun together ("high-severity bug"); Japanese templates
        # place {what} (severity) and {noun} themselves.
        fields["what"] = sev_text if language == "ja" else f"{sev_text} {noun}".strip()
        fields["over"] = lang["phrases"]["over"].format(days=groups["days"]) if "days" in groups else ""
        if x is not None:
            variant = "yes" if x > 0 else "no"
    elif template == "nps_latest" and x is not None:
        variant = "detractor" if x <= 6 else "passive" if x <= 8 else "promoter"
    elif template == "days_to_renewal":
        if not missing:
            variant = "due"
            monthly = _is_monthly(row)
            fields["plan"] = texts["days_to_renewal"]["monthly_plan"] if monthly else ""
    elif template == "billing" and not missing:
        s = str(raw).strip().lower() if isinstance(raw, str) else None
        if s in ("monthly", "annual"):
            variant = s
        elif x is not None and re.search(r"monthly", feature):
            variant = "monthly" if x > 0 else "annual"
        elif x is not None and re.search(r"annual", feature):
            variant = "annual" if x > 0 else "monthly"
        else:
            variant = "other"
    elif template == "health_component":
        fields["component"] = _term(lang, groups.get("component", feature))
    elif template == "days_since":
        fields["what"] = _term(lang, groups.get("what", feature))
    block = texts.get(template, texts["generic"])
    text = block.get(variant) or texts["generic"]["missing" if missing else "value"]
    return family, text.format_map(_Default(fields))


class _Default(dict):
    """format_map helper: an unknown placeholder renders empty instead of raising."""

    def __missing__(self, key: str) -> str:
        return ""


def reasons_from_contributions(
    X: pd.DataFrame,
    feature_names: Sequence[str],
    contributions: np.ndarray,
    top_n: int = 3,
    language: str = "en",
) -> list[list[Reason]]:
    """Each row's top `top_n` features that raise risk (SHAP > 0), as `Reason`s, largest first."""
    _language(language)  # fail early on an unknown language
    n_feat = len(feature_names)
    contrib = np.asarray(contributions, dtype=float)[:, :n_feat]
    records: list[dict[str, Any]] = X.loc[:, list(feature_names)].to_dict(orient="records")  # type: ignore[assignment]
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :top_n]
    out: list[list[Reason]] = []
    for i, row in enumerate(records):
        reasons: list[Reason] = []
        for j in order[i]:
            shap = float(contrib[i, j])
            if shap <= 0:
                break
            feature = feature_names[j]
            family, text = render_reason(feature, row, language)
            book_id, action = playbook_for(family)
            reasons.append(
                Reason(
                    feature=feature,
                    family=family,
                    value=_num(row.get(feature)),
                    shap=shap,
                    text=text,
                    playbook_id=book_id,
                    action=action,
                )
            )
        out.append(reasons)
    return out


def explain_rows(
    bundle: ModelBundle, X: pd.DataFrame, top_n: int = 3, language: str = "en"
) -> list[list[Reason]]:
    """Top reasons (risk-raising SHAP contributors) for each row of `X`, in `language`."""
    contrib = bundle.contributions(X)
    return reasons_from_contributions(X, bundle.feature_names, contrib, top_n=top_n, language=language)
