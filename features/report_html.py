"""The self-contained HTML report: inline SVG plots and tables, no external resources.

Plots are drawn with matplotlib into SVG text (heat maps carry their pixels as a data:
URI), so the page opens offline from a file and makes no network request.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from features.retention import RetentionResult

TEMPLATES = Path(__file__).parent / "templates"
_SVG_START = re.compile(r"<svg\b")
_METADATA = re.compile(r"<metadata>.*?</metadata>", re.DOTALL)
# Text stays <text> (the browser's fonts; about twice as fast as glyph paths); layout is
# computed once by the constrained engine instead of a second draw for bbox_inches="tight".
_RC: Any = {
    "svg.fonttype": "none",
    "svg.hashsalt": "churnguard",
    "font.size": 9,
    "font.family": "sans-serif",
    "figure.constrained_layout.use": True,
}


def _svg(fig: plt.Figure) -> Markup:
    """The figure as inline SVG markup (everything before <svg> dropped)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    match = _SVG_START.search(text)
    text = _METADATA.sub("", text[match.start() :] if match else text)
    return Markup(text)


def plot_cohort_heatmap(table: pd.DataFrame, title: str) -> Markup | None:
    """Cohort x age heat map of retention (share of the cohort's logos or starting MRR)."""
    if table.empty:
        return None
    with plt.rc_context(_RC):
        values = table.to_numpy(dtype=float)
        fig, ax = plt.subplots(figsize=(8, max(2.5, 0.22 * len(table) + 1)))
        vmax = max(1.0, float(np.nanmax(values))) if np.isfinite(values).any() else 1.0
        im = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
        ax.set_yticks(range(len(table)), [pd.Timestamp(c).strftime("%Y-%m") for c in table.index])
        step = max(1, len(table.columns) // 12)
        ax.set_xticks(range(0, len(table.columns), step), [str(a) for a in table.columns[::step]])
        ax.set_xlabel("months since start")
        ax.set_ylabel("start month")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.03)
        return _svg(fig)


def plot_revenue_and_churn(by_month: pd.DataFrame) -> Markup | None:
    """NRR / GRR (when revenue is known) and logo / MRR churn by month."""
    if by_month.empty:
        return None
    x = pd.DatetimeIndex(by_month.index)
    wanted = [
        [("net_revenue_retention", "NRR"), ("gross_revenue_retention", "GRR")],
        [("logo_churn_rate", "logo churn"), ("mrr_churn_rate", "MRR churn")],
    ]
    available = [[(c, lab) for c, lab in p if c in by_month and by_month[c].notna().any()] for p in wanted]
    panels = [p for p in available if p]
    if not panels:
        return None
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True, squeeze=False)
        for ax, panel in zip(axes[:, 0], panels, strict=True):
            for col, label in panel:
                ax.plot(x, by_month[col], marker="o", ms=3, label=label)
            if panel[0][0] == "net_revenue_retention":
                ax.axhline(1.0, color="grey", lw=0.8, ls="--")
                ax.set_ylabel("monthly revenue retention")
            else:
                ax.set_ylabel("monthly churn rate")
            ax.legend(loc="best")
        for tick in axes[-1, 0].get_xticklabels():
            tick.set_rotation(30)
            tick.set_horizontalalignment("right")
        return _svg(fig)


def plot_drift(drift: list[dict[str, Any]], bands: list[float], top_n: int = 15) -> Markup | None:
    """The features with the largest PSI, coloured by whether the drift is significant."""
    if not drift:
        return None
    rows = [r for r in drift if r.get("psi") is not None][:top_n][::-1]
    if not rows:
        return None
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(8, 0.28 * len(rows) + 1.2))
        colours = ["#c0392b" if r["drifted"] else "#7f8c8d" for r in rows]
        ax.barh([r["feature"] for r in rows], [r["psi"] for r in rows], color=colours)
        for b in bands:
            ax.axvline(b, color="black", lw=0.8, ls="--")
        ax.set_xlabel("PSI, training months vs latest snapshot (red: drifted and significant)")
        return _svg(fig)


def plot_backtest(by_date: list[dict[str, Any]]) -> Markup | None:
    """Realised ROC-AUC, top-decile capture and ECE of past predictions by snapshot date."""
    if not by_date:
        return None
    frame = pd.DataFrame(by_date)
    frame["snapshot_date"] = pd.to_datetime(frame["snapshot_date"])
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(8, 3.2))
        for col, label in (
            ("roc_auc", "ROC-AUC"),
            ("top_decile_capture", "top-decile capture"),
            ("ece", "ECE"),
        ):
            values = pd.to_numeric(frame[col], errors="coerce")
            if values.notna().any():
                ax.plot(frame["snapshot_date"], values, marker="o", ms=4, label=label)
        ax.set_ylim(0, 1)
        ax.set_ylabel("realised")
        ax.legend(loc="lower left")
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_horizontalalignment("right")
        return _svg(fig)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return None
    f = float(value)
    return f if np.isfinite(f) else None


def _pct(value: Any) -> str:
    f = _finite(value)
    return "n/a" if f is None else f"{f:.1%}"


def _num(value: Any, digits: int = 3) -> str:
    f = _finite(value)
    return "n/a" if f is None else f"{f:.{digits}f}"


def _money(value: Any) -> str:
    f = _finite(value)
    return "n/a" if f is None else f"{f:,.0f}"


def render_report(
    res: RetentionResult,
    clv: pd.DataFrame,
    report: dict[str, Any],
    monitoring: dict[str, Any],
    currency: str,
) -> str:
    """The whole HTML page; money columns are headed with `currency` (ISO 4217)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters.update(pct=_pct, num=_num, money=_money)
    plots = {
        "cohort_logo": plot_cohort_heatmap(res.cohorts_logo, "Logo retention by start-month cohort"),
        "cohort_revenue": plot_cohort_heatmap(res.cohorts_revenue, "Revenue retention by start-month cohort"),
        "revenue_churn": plot_revenue_and_churn(res.by_month),
        "drift": plot_drift(monitoring.get("feature_drift", []), monitoring["thresholds"]["psi_bands"]),
        "backtest": plot_backtest(monitoring.get("backtest", {}).get("by_date", [])),
    }
    return env.get_template("report.html").render(
        report=report,
        monitoring=monitoring,
        plots=plots,
        months=report.get("by_month", {}),
        segments=report.get("by_segment", {}),
        clv=report.get("clv", {}),
        currency=currency,
    )
