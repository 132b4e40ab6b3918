"""Configuration: `coalition.toml` (what to deploy), the deployment file (what was deployed) and the one
settings system every service shares (`ServiceSettings`, `load_settings`, `dump_settings`).

Each is validated with pydantic at the edge; a bad file gives one `ConfigError` naming the file and
every field that is wrong. A service's settings come from, strongest first: values the caller passes (the
CLI's options), `{PREFIX}*` environment variables (nested fields as `{PREFIX}SECTION__FIELD`), its TOML file,
the defaults. `{PREFIX}CONFIG` names the file when no caller does (`settings_from_env`).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, TypeVar

import tomli_w
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from tclearn.errors import ConfigError, NotFoundError
from tclearn.logs import LogFormat, LogLevel
from tclearn.types import Role, Variant, hex32


def _address(value: Any) -> str:
    from eth_utils import is_address, to_checksum_address  # here: `tclearn --help` reads settings without it

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
    """`coalition.toml`: the coalition to deploy and its founding members."""

    model_config = ConfigDict(extra="forbid")
    variant: str = "B"
    general_timeout: int = Field(3600, gt=0)
    voting_timeout: int = Field(86400, gt=0)
    genesis_hash: Hex32
    genesis_uri: str
    # sha256 of the acceptance policy record in the vault (`tclearn coalition policy` writes one)
    policy_hash: Hex32
    global_test_set_hash: Hex32 = b"\x00" * 32
    # how long a governance proposal gathers votes, and the validators no proposal may go below (None: the
    # defaults of `tclearn.ledger.governance.Parameters`)
    proposal_timeout: int | None = Field(None, gt=0)
    min_validators: int | None = Field(None, ge=0)
    # each member's privacy budget on chain, epsilon over all its increments (the policy's privacy.epsilon_cap); None:
    # no cap kept
    epsilon_cap: float | None = Field(None, gt=0)
    chain: ChainConfig = ChainConfig()
    # the founders: the coalition's only members at deployment, who admit and change every other by proposal
    members: list[MemberConfig] = Field(min_length=1)

    @field_validator("variant")
    @classmethod
    def _variant(cls, value: str) -> str:
        return Variant.parse(value).name

    @field_validator("policy_hash")
    @classmethod
    def _declared(cls, value: bytes) -> bytes:
        if value == b"\x00" * 32:
            raise ValueError(
                "a coalition declares its acceptance policy: write it with `tclearn coalition policy`, store it with "
                "`tclearn vault put`, and give the hash the vault prints"
            )
        return value


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


def _explain(where: Path | str, exc: ValidationError, note: str = "") -> ConfigError:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors())
    return ConfigError(f"{where}: {problems}{note}")


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


_SETTINGS_FILE: ContextVar[Path | None] = ContextVar("settings_file", default=None)


class ServerSection(BaseModel):
    """Where a service listens (`[server]` in its file)."""

    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)


class LogSection(BaseModel):
    """What a service logs and how (`[log]` in its file; `--log-level`, `--log-format` on its serve command)."""

    model_config = ConfigDict(extra="forbid")
    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.TEXT


class ServiceSettings(BaseSettings):
    """The one base of every service's settings: init values over `{env_prefix}*` variables over the TOML
    file `load_settings` was given, over the defaults. Each service sets its own `env_prefix`."""

    model_config = SettingsConfigDict(
        extra="forbid", env_nested_delimiter="__", nested_model_default_partial_update=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _SETTINGS_FILE.get()
        file = () if path is None else (TomlConfigSettingsSource(settings_cls, toml_file=path),)
        return init_settings, env_settings, *file

    server: ServerSection = ServerSection()
    log: LogSection = LogSection()

    @classmethod
    def env_prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix", ""))

    @classmethod
    def overrides_set(cls) -> list[str]:
        """The environment variables that override this service's file now (its `{PREFIX}CONFIG` names it)."""
        prefix = cls.env_prefix().upper()
        return [name for name in os.environ if name.upper().startswith(prefix) and name.upper() != cls.config_env()]

    @classmethod
    def config_env(cls) -> str:
        """The environment variable naming this service's file when no caller gives one."""
        return f"{cls.env_prefix()}CONFIG"


S = TypeVar("S", bound=ServiceSettings)


@contextmanager
def _reading(path: Path | None) -> Iterator[None]:
    token = _SETTINGS_FILE.set(path)
    try:
        yield
    finally:
        _SETTINGS_FILE.reset(token)


def load_settings(model: type[S], path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> S:
    """Service settings: `overrides` (options left None are dropped) over the model's environment variables
    over the TOML file at `path` (if any).

    A missing or malformed file, or a bad field from any source, is one `ConfigError` naming the file (or the
    environment prefix) and every bad field.
    """
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    if path is not None:
        _read(path, tomllib.loads)  # a missing file or bad TOML is named here; the source ignores a missing file
    try:
        with _reading(path):
            return model(**given)
    except ValidationError as exc:
        if path is None:
            raise _explain(f"settings ({model.env_prefix()}* environment variables)", exc) from None
        overriding = sorted(model.overrides_set())
        raise _explain(path, exc, f" (overridden by {', '.join(overriding)})" if overriding else "") from None


def settings_from_env(model: type[S]) -> S:
    """The settings of a service started without a caller (`uvicorn --factory`): the file named by
    `{PREFIX}CONFIG`, if set, under the environment."""
    path = os.environ.get(model.config_env())
    return load_settings(model, Path(path) if path else None)


def settings_toml(settings: BaseModel) -> str:
    """`settings` as the TOML its loader reads back: the fields that were set, Nones left out."""
    return tomli_w.dumps(settings.model_dump(mode="json", exclude_unset=True, exclude_none=True))


def dump_settings(settings: BaseModel, path: Path, header: str = "") -> Path:
    """Writes `settings` as a TOML file (`header` as a leading comment), for `load_settings` to read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comment + settings_toml(settings))
    return path


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
