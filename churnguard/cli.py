"""The `churn` command line. Each command is a thin shell over a stage's `run` function.

Bad input (a missing file, a missing column, a bad option) exits with code 2 and one
clear line on stderr; never a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from churnguard.errors import InputError

app = typer.Typer(
    name="churn",
    help="churnguard: churn risk for B2B SaaS accounts, with reasons a CS team can act on.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _clear_errors(func: F) -> F:
    """Turn InputError (and unreadable files) into one line on stderr and exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except FileNotFoundError as exc:
            typer.echo(f"error: file not found: {exc.filename or exc}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
@_clear_errors
def simulate(
    out: Annotated[Path, typer.Option(help="Folder to write the company's exports to.")],
    accounts: Annotated[int, typer.Option(min=1, help="Number of accounts.")] = 2000,
    months: Annotated[int, typer.Option(min=1, help="Months of history.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 42,
    dirty: Annotated[bool, typer.Option(help="Inject realistic data faults.")] = False,
    start: Annotated[str, typer.Option(help="First day of the simulated history.")] = "2024-01-01",
    truth_out: Annotated[
        Path | None, typer.Option(help="Folder for the oracle and ground truth (default: OUT/../sim_truth).")
    ] = None,
) -> None:
    """Generate a realistic simulated B2B SaaS company as data-contract tables."""
    from pipeline.simulate import run

    summary = run(
        out=out,
        truth_out=truth_out if truth_out is not None else out.parent / "sim_truth",
        accounts=accounts,
        months=months,
        seed=seed,
        dirty=dirty,
        start=start,
    )
    typer.echo(summary_line("simulated", summary))


@app.command()
@_clear_errors
def validate(
    input: Annotated[Path, typer.Option("--input", help="Input folder (data contract).")],
    out: Annotated[Path, typer.Option(help="Folder for clean tables, quarantine and report.")],
    end_date: Annotated[str | None, typer.Option(help="Data end date; default inferred.")] = None,
) -> None:
    """Validate a company's exports: clean tables, quarantined rows with reasons, a report."""
    from pipeline.validate import run

    report = run(input_dir=input, out_dir=out, end_date=end_date)
    typer.echo(summary_line("validated", report.get("totals", {})))


ScoresDir = Annotated[
    Path, typer.Option("--scores", envvar="CHURNGUARD_SCORES_DIR", help="Folder written by the score stage.")
]


@app.command("at-risk")
@_clear_errors
def at_risk(
    top: Annotated[int | None, typer.Option(min=1, help="Show at most N accounts.")] = 25,
    segment: Annotated[str | None, typer.Option(help="Only this segment.")] = None,
    renewal_within: Annotated[int | None, typer.Option(min=0, help="Renewal within DAYS.")] = None,
    min_risk: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Minimum churn risk.")] = None,
    tier: Annotated[str | None, typer.Option(help="high, medium or low.")] = None,
    sort: Annotated[str, typer.Option(help="expected_arr_lost, risk, arr, days_to_renewal, ...")] = (
        "expected_arr_lost"
    ),
    format: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    scores: ScoresDir = Path("data/scores"),
) -> None:
    """Print the at-risk list, ranked by expected ARR lost, with the top reason and action."""
    from churnguard.scores import AtRiskQuery, filter_at_risk, to_records
    from pipeline.score import read_scores

    if format not in ("table", "csv", "json"):
        raise InputError(f"--format: unknown format {format!r}; use table, csv or json")
    latest, _ = read_scores(scores)
    query = AtRiskQuery(
        segment=segment, renewal_within_days=renewal_within, min_risk=min_risk, tier=tier, sort=sort
    )
    rows = filter_at_risk(latest, query, top=top)
    if format == "csv":
        typer.echo(rows.drop(columns=["reasons"]).to_csv(index=False), nl=False)
    elif format == "json":
        import json

        typer.echo(json.dumps(to_records(rows), ensure_ascii=False, indent=2))
    else:
        _print_at_risk_table(rows, latest)


def _print_at_risk_table(rows: Any, latest: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    first = latest.iloc[0]
    unit = _unit(first.get("currency"))
    table = Table(
        title=f"At-risk accounts · {first['snapshot_date']:%Y-%m-%d} · model {first['model_version']}",
        caption=f"{len(rows)} of {len(latest)} active accounts shown",
    )
    for col, just in [("account", "left"), ("segment", "left"), ("risk", "right"), ("Δ", "right"),
                      ("tier", "left"), ("health", "right"), (f"ARR{unit}", "right"),
                      (f"exp. loss{unit}", "right"), ("renewal", "right"),
                      ("top reason → action", "left")]:  # fmt: skip
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows.itertuples(index=False):
        name = r.name if isinstance(r.name, str) else ""
        change = "" if r.risk_change != r.risk_change else f"{r.risk_change * 100:+.0f}"
        reason = r.reason_1 if isinstance(r.reason_1, str) else ""
        if isinstance(r.action_1, str):
            reason += f" → {r.action_1}"
        table.add_row(
            f"{r.account_id} {name}".strip(), str(r.segment or ""), f"{r.risk:.0%}", change, r.risk_tier,
            _fmt(r.health_score, "{:.0f}"), _fmt(r.arr, "{:,.0f}"), _fmt(r.expected_arr_lost, "{:,.0f}"),
            _fmt(r.days_to_renewal, "{:.0f} d"), reason,
        )  # fmt: skip
    # A pipe or a file gets the full table, not one squeezed to 80 columns.
    Console(width=None if sys.stdout.isatty() else 220).print(table)


def _unit(currency: Any) -> str:
    """' (EUR)' for a header; '' when the scores predate the `currency` column."""
    return f" ({currency})" if isinstance(currency, str) and currency else ""


def _money(value: Any, currency: Any) -> str:
    """'12,000 EUR', or the bare figure when the currency is unknown ('' when the figure is)."""
    text = _fmt(value, "{:,.0f}")
    return f"{text} {currency}" if text and isinstance(currency, str) and currency else text


def _fmt(value: Any, pattern: str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if v != v else pattern.format(v)


@app.command()
@_clear_errors
def explain(
    account_id: Annotated[str, typer.Argument(help="The account to explain.")],
    format: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    scores: ScoresDir = Path("data/scores"),
) -> None:
    """Print one account's risk, health components, reasons, playbook and risk history."""
    import json

    from churnguard.scores import health_component_columns, to_records
    from pipeline.score import read_scores

    latest, history = read_scores(scores)
    match = latest.loc[latest["account_id"].astype(str) == account_id]
    if match.empty:
        raise InputError(f"account {account_id!r} is not in {scores / 'latest.parquet'}")
    rec = to_records(match)[0]
    hist = history.loc[history["account_id"].astype(str) == account_id] if not history.empty else history
    hist_records = to_records(hist.sort_values("snapshot_date")) if not hist.empty else []
    if format == "json":
        typer.echo(json.dumps({**rec, "history": hist_records}, ensure_ascii=False, indent=2))
        return
    if format != "text":
        raise InputError(f"--format: unknown format {format!r}; use text or json")
    change = "" if rec["risk_change"] is None else f" ({rec['risk_change'] * 100:+.0f} pt since last run)"
    lines = [
        f"{rec['account_id']} {rec.get('name') or ''}".strip() + f" · {rec.get('segment') or ''}",
        f"scores of {rec['snapshot_date'][:10]} · model {rec['model_version']}",
        f"churn risk: {rec['risk']:.1%} ({rec['risk_tier']}){change}",
        f"ARR {_money(rec.get('arr'), rec.get('currency'))}"
        f" · expected loss {_money(rec.get('expected_arr_lost'), rec.get('currency'))}"
        f" · renewal in {_fmt(rec.get('days_to_renewal'), '{:.0f}')} days"
        f" ({(rec.get('renewal_date') or '')[:10]})",
        f"health score: {_fmt(rec.get('health_score'), '{:.0f}')} ({rec.get('health_tier') or ''})",
    ]
    for col in health_component_columns(list(rec)):
        lines.append(f"  {col.removeprefix('health_')}: {_fmt(rec[col], '{:.0f}')}")
    lines.append("reasons:")
    for i, r in enumerate(rec["reasons"], start=1):
        lines.append(f"  {i}. {r['text']}")
        if r.get("action"):
            lines.append(f"     playbook: {r['action']}")
    if hist_records:
        lines.append("risk history:")
        for h in hist_records:
            when, risk = h["snapshot_date"][:10], h["risk"]
            lines.append(f"  {when}  {risk:.1%}  {h['risk_tier']}  model {h['model_version']}")
    typer.echo("\n".join(lines))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request line (paths hold ids).")] = False,
) -> None:
    """Serve the API and the CS page (settings from CHURNGUARD_* environment variables)."""
    import uvicorn

    from serving.config import get_settings

    settings = get_settings()
    if settings.api_key is None:
        typer.echo("warning: CHURNGUARD_API_KEY is not set: customer-data requests will get 401", err=True)
    uvicorn.run(
        "serving.app:create_app", factory=True, host=host, port=port, workers=workers,
        access_log=access_log, log_level="info",
    )  # fmt: skip


def summary_line(verb: str, counts: dict[str, Any]) -> str:
    """One human line from a dict of counts."""
    parts = ", ".join(f"{k}={v}" for k, v in counts.items() if not isinstance(v, dict | list))
    return f"{verb}: {parts}"


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
