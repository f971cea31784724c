"""Load `params.yaml` sections into typed models.

Each stage owns its section: it defines a pydantic model for it and calls
`load_section`. Unknown keys are rejected so that a typo in params.yaml fails loudly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from churnguard.errors import InputError

DEFAULT_PARAMS = Path("params.yaml")

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """Base for a params.yaml section: strict about unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_currency(code: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ValueError(
            f"{code!r} is not a currency code; use 3 upper-case letters (ISO 4217), e.g. USD, EUR, JPY"
        )
    return code


DEFAULT_CURRENCY = "USD"
CurrencyCode = Annotated[str, AfterValidator(_check_currency)]


class CurrencyParams(BaseModel):
    """Only `currency` of the `features` section (which the features stage validates in full)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    currency: CurrencyCode = DEFAULT_CURRENCY


class DataParams(Section):
    source: str = "simulate"
    input: Path = Path("data/raw")
    validated: Path = Path("data/validated")
    sim_truth: Path = Path("data/sim_truth")


def read_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read the whole params file as a dict (empty when the file does not exist)."""
    if not path.exists():
        return {}
    with path.open(encoding="utf-8") as fh:
        loaded = yaml.safe_load(fh) or {}
    if not isinstance(loaded, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    return loaded


def load_section(name: str, model: type[M], path: Path = DEFAULT_PARAMS) -> M:
    """Validate one section of params.yaml into `model`; missing section -> defaults."""
    raw = read_params(path).get(name) or {}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: {name}.{where}: {first['msg']}") from exc


def load_currency(path: Path = DEFAULT_PARAMS) -> str:
    """`features.currency`: the unit of every money figure in the input (ARR, MRR)."""
    return load_section("features", CurrencyParams, path).currency
