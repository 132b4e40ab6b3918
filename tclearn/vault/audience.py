"""Who a signed request is for: the service's base URL and the coalition (chain id, contract address).

A request signed for one audience is refused by every other: a peer's request to hospital X cannot be replayed
by X to hospital Y (another URL), nor to the same kind of service of another coalition (another chain or
contract). The client names the audience from the URL it targets and the coalition it belongs to; the server
compares it with its own configured identity (`public_url`, its deployment), never with the Host header, which
the caller chooses.

A service started from a JSON member file (tests, no chain) belongs to no coalition: chain id 0 and the zero
address (`NO_COALITION`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from eth_utils import is_address, to_checksum_address

from tclearn.config import ServerSection, load_deployment
from tclearn.errors import AuthError, ConfigError

if TYPE_CHECKING:
    from tclearn.ledger.client import LedgerClient

ZERO_ADDRESS = "0x" + "00" * 20
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class CoalitionId:
    """The coalition a service serves: its chain and its Coalition contract."""

    chain_id: int = 0
    contract: str = ZERO_ADDRESS

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, int) or self.chain_id < 0:
            raise ConfigError(f"invalid chain id {self.chain_id!r}")
        if not is_address(self.contract):
            raise ConfigError(f"invalid contract address {self.contract!r}")
        object.__setattr__(self, "contract", to_checksum_address(self.contract))

    @classmethod
    def of_client(cls, client: LedgerClient) -> CoalitionId:
        """The coalition a chain client's contract is (its chain id checked on connecting): what its sites and
        services sign and verify requests for."""
        return cls(client.chain.chain_id, client.address)

    @classmethod
    def of_deployment(cls, path: str | Path | None) -> CoalitionId:
        """The coalition a deployment file describes; `NO_COALITION` without one."""
        if path is None:
            return NO_COALITION
        deployment = load_deployment(Path(path))
        return cls(deployment.chain_id, deployment.address)


NO_COALITION = CoalitionId()


def normalize_url(url: str) -> str:
    """`scheme://host:port[/path]`: scheme and host in lower case, the port always written, no trailing slash.
    `ConfigError` naming the URL when it is not an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid service URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"invalid service URL {url!r}: expected http(s)://host[:port][/path]")
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}{parts.path.rstrip('/')}"


@dataclass(frozen=True)
class Audience:
    """The service a request is signed for: its normalized base URL and its coalition."""

    url: str
    coalition: CoalitionId = NO_COALITION

    @classmethod
    def of(cls, url: str, coalition: CoalitionId = NO_COALITION) -> Audience:
        return cls(normalize_url(url), coalition)

    def header(self) -> str:
        """The `x-tclearn-audience` value: `url chain_id contract`."""
        return f"{self.url} {self.coalition.chain_id} {self.coalition.contract}"

    @classmethod
    def parse_header(cls, text: str) -> Audience:
        """The audience a client declared; `AuthError` naming the header when it is malformed."""
        parts = text.split(" ")
        try:
            url, chain_id, contract = parts
            return cls.of(url, CoalitionId(int(chain_id), contract))
        except (ValueError, ConfigError):
            raise AuthError(f"malformed audience header {text[:200]!r}: expected 'url chain_id contract'") from None

    def __str__(self) -> str:
        return f"{self.url} (chain {self.coalition.chain_id}, contract {self.coalition.contract})"


WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def service_url(public_url: str | None, server: ServerSection) -> str:
    """The URL clients reach a service at: `public_url` if set, else `http://{host}:{port}` it listens on.
    A service listening on every interface has no such URL of its own: `ConfigError` asking for `public_url`."""
    if public_url:
        return public_url
    if server.host in WILDCARD_HOSTS:
        raise ConfigError(
            f"this service listens on {server.host or 'every interface'}:{server.port}, which no client can sign "
            "requests for: set public_url to the URL clients reach it at (e.g. http://vault.hospital.example:8700)"
        )
    return f"http://{server.host}:{server.port}"


def service_audience(public_url: str | None, server: ServerSection, deployment: str | Path | None) -> Audience:
    """A service's own identity from its settings: its public URL and the coalition of its deployment file."""
    return Audience.of(service_url(public_url, server), CoalitionId.of_deployment(deployment))
