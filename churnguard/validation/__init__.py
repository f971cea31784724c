"""Validation of a company's exports against the data contract (see docs/data_contract.md).

`validate_frame` applies the rules to one in-memory table; `events` streams the event log
through the same rules bucket by bucket; `pipeline/validate.py` wires them to files.
"""

from __future__ import annotations

from churnguard.params import Section
from churnguard.validation.frames import TableResult, validate_frame
from churnguard.validation.rules import check_invariant


class ValidateParams(Section):
    """The `validate` section of params.yaml."""

    end_date: str | None = None  # data end; None = inferred from the event log
    chunk_rows: int = 2_000_000  # event rows per streamed bucket (bounds peak memory)
    end_quantile: float = 0.9999  # inference: percentile of event timestamps ...
    end_slack_days: int = 2  # ... plus this many days bounds the plausible end
    memory_limit: str = "3GB"  # DuckDB's memory cap; it spills to disk beyond it


__all__ = ["TableResult", "ValidateParams", "check_invariant", "validate_frame"]
