"""Deployment settings from the environment (prefix `CHURNGUARD_`), never from params.yaml."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the model and scores are, the API keys, and the service's limits."""

    model_config = SettingsConfigDict(env_prefix="CHURNGUARD_", extra="ignore")

    api_key: SecretStr | None = Field(None, description="Bearer key that may read customer data.")
    admin_key: SecretStr | None = Field(
        None, description="Bearer key for admin actions (reload); may also read."
    )
    model_uri: str = Field(
        "artifacts/model", description="A local MLflow pyfunc dir, or models:/NAME@ALIAS from the registry."
    )
    tracking_uri: str | None = Field(None, description="MLflow tracking URI for models:/ URIs.")
    scores_dir: Path = Path("data/scores")
    params_path: Path = Field(Path("params.yaml"), description="Read once at start for the risk tiers.")
    report_path: Path = Path("metrics/report.json")
    monitoring_path: Path = Path("metrics/monitoring.json")
    max_batch: int = Field(1000, ge=1, le=10_000, description="Most feature rows per POST /v1/score.")
    max_body_bytes: int = Field(
        16_000_000, ge=1024, description="Largest accepted body (1,000 rows x 100 features ~ 3.3 MB)."
    )
    poll_seconds: float = Field(10.0, ge=0.0, description="Check for new scores/model this often; 0 = off.")
    reason_language: str = "en"
    top_reasons: int = Field(3, ge=1, le=10)
    cookie_secure: bool = Field(False, description="Mark the CS page's session cookie Secure (behind HTTPS).")
    session_secret: SecretStr | None = Field(
        None,
        min_length=32,
        description="Signs the CS page's session cookies; unset = random per process (a restart logs "
        "everyone out, and several workers need one shared secret).",
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="Lifetime of a CS page sign-in, from when it was made."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()  # type: ignore[call-arg]  # values come from the environment
