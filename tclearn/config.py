"""Configuration files: `coalition.toml` (what to deploy) and the deployment file (what was deployed).

Both are validated with pydantic at the edge; a bad file gives one `ConfigError` naming the file and
every field that is wrong.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from tclearn.errors import ConfigError, NotFoundError
from tclearn.types import Role, Variant


def hex32(value: Any) -> bytes:
    if isinstance(value, bytes) and len(value) == 32:
        return value
    text = str(value).removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{value!r} is not hex") from None
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes (64 hex digits), got {len(raw)}")
    return raw


def _address(value: Any) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError(f"{value!r} is not an Ethereum address")
    return to_checksum_address(value)


Hex32 = Annotated[bytes, BeforeValidator(hex32)]
Address = Annotated[str, BeforeValidator(_address)]


class MemberConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: Address
    roles: list[str] = ["member", "validator"]
    name: str = ""
    encryption_key: Hex32 = b"\x00" * 32

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        Role.parse(value)  # raises with the valid names
        return value

    @property
    def role_flags(self) -> Role:
        return Role.parse(self.roles)


class ChainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = "http://127.0.0.1:8545"
    chain_id: int | None = None


class CoalitionConfig(BaseModel):
    """`coalition.toml`: the coalition to deploy and its first members."""

    model_config = ConfigDict(extra="forbid")
    variant: str = "B"
    general_timeout: int = Field(3600, gt=0)
    voting_timeout: int = Field(86400, gt=0)
    genesis_hash: Hex32
    genesis_uri: str
    global_test_set_hash: Hex32 = b"\x00" * 32
    chain: ChainConfig = ChainConfig()
    members: list[MemberConfig] = []

    @field_validator("variant")
    @classmethod
    def _variant(cls, value: str) -> str:
        return Variant.parse(value).name


class Deployment(BaseModel):
    """The deployment file: enough to find and check the coalition again."""

    model_config = ConfigDict(extra="forbid")
    chain_id: int
    address: Address
    block: int
    variant: str
    url: str
    deployer: Address
    tx_hash: str
    tclearn_version: str
    contract_sha256: str


M = TypeVar("M", bound=BaseModel)


def _explain(path: Path, exc: ValidationError) -> ConfigError:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors())
    return ConfigError(f"{path}: {problems}")


def _read(path: Path, parse: Any) -> Any:
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not valid: {exc}") from None


def _load(path: Path, model: type[M], parse: Any) -> M:
    raw = _read(path, parse)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _explain(path, exc) from None


class ServiceSettings(BaseSettings):
    """Settings of a service: environment variables override the values a TOML file gives the constructor."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings


S = TypeVar("S", bound=ServiceSettings)


def load_settings(model: type[S], path: Path | None = None) -> S:
    """Service settings: the TOML file at `path` (if any), overridden by the model's environment variables.

    A missing or malformed file, or a bad field from either source, is one `ConfigError` naming the file.
    """
    values: dict[str, Any] = {} if path is None else _read(path, tomllib.loads)
    try:
        return model(**values)
    except ValidationError as exc:
        prefix = model.model_config.get("env_prefix", "")
        raise _explain(path or Path(f"settings ({prefix}* environment variables)"), exc) from None


def load_coalition_config(path: Path) -> CoalitionConfig:
    return _load(path, CoalitionConfig, tomllib.loads)


def load_deployment(path: Path) -> Deployment:
    return _load(path, Deployment, json.loads)


def save_deployment(deployment: Deployment, path: Path) -> Path:
    """Writes the deployment file atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(deployment.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path
