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


def summary_line(verb: str, counts: dict[str, Any]) -> str:
    """One human line from a dict of counts."""
    parts = ", ".join(f"{k}={v}" for k, v in counts.items() if not isinstance(v, dict | list))
    return f"{verb}: {parts}"


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
