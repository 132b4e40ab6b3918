"""Supervisor service settings: `TCLEARN_SUPERVISOR_*` environment variables over an optional TOML file."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tclearn.config import ServerSection, ServiceSettings


class SupervisorSettings(ServiceSettings):
    """Where the secret context and the decryption log live, who may ask, and how much."""

    model_config = SettingsConfigDict(env_prefix="TCLEARN_SUPERVISOR_")

    key_file: str = Field(default="./supervisor-data/ckks.key", description="encrypted secret context file")
    database: str = Field(default="sqlite:///./supervisor-data/log.db", description="SQLAlchemy URL of the log")
    deployment: str | None = Field(default=None, description="deployment file: members from the contract")
    members: str | None = Field(default=None, description="JSON member file (tests, no chain)")
    max_request_bytes: int = Field(default=64 << 20, gt=0, description="largest request body, in bytes")
    max_values: int = Field(default=1 << 16, gt=0, description="most values decrypted per request")
    requests_per_minute: int = Field(default=120, gt=0, description="requests per member per minute")
    max_skew_s: int = Field(default=300, gt=0, description="largest accepted clock difference of a signed request")
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="the URL clients reach the supervisor at, which signed requests name (default: http://host:port)",
    )
    replay_store: str | None = Field(
        default=None, description="SQLAlchemy URL of the seen-nonce table replicas share (default: in memory)"
    )
    server: ServerSection = Field(default=ServerSection(port=8710), description="where the service listens")
