"""Validation of a company's exports against the data contract (see docs/data_contract.md).

`validate_frame` applies the rules to one in-memory table; `events` streams the event log
through the same rules bucket by bucket; `pipeline/validate.py` wires them to files.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from churnguard.params import Section
from churnguard.validation.frames import TableResult, validate_frame
from churnguard.validation.rules import check_invariant


class ValidateParams(Section):
    """The `validate` section of params.yaml."""

    end_date: str | None = None  # data end; None = inferred from the event log
    chunk_rows: int = 2_000_000  # event rows per streamed bucket (bounds peak memory)
    # Inference of the data end (see churnguard/validation/end_date.py): trailing days
    # with fewer events than end_density x the median day, or more than end_gap_days after
    # the previous day, are not the end, as long as they hold < end_max_tail of events.
    end_density: float = 0.02
    end_gap_days: int = 7
    end_max_tail: float = 0.01
    # Event timestamps later than the wall clock + this many days are left out of the
    # inference (and counted in a warning); None = no cap. 1 day covers any time zone.
    end_max_ahead_days: Annotated[float, Field(ge=0)] | None = 1.0
    memory_limit: str = "3GB"  # DuckDB's memory cap; it spills to disk beyond it


__all__ = ["TableResult", "ValidateParams", "check_invariant", "validate_frame"]
