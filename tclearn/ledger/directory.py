"""The coalition's members as the Coalition contract registers them, for the vault and the services.

Implements `tclearn.vault.directory.MemberDirectory`: who is an active member, and the X25519 key each
registered. The registry is re-read at most every `ttl` seconds, so a busy vault does not ask the chain
for every request, and a deactivation takes effect within `ttl` (plus the one re-read that notices it). A
re-read never holds up other requests: they are answered from the current snapshot (`snapshot.Refreshed`).
"""

from __future__ import annotations

from pathlib import Path

from eth_utils import is_address, to_checksum_address

from tclearn.ledger.deployment import open_deployment
from tclearn.ledger.ledger import Ledger
from tclearn.ledger.snapshot import Refreshed
from tclearn.types import Member

_NO_KEY = b"\x00" * 32


class ChainDirectory:
    def __init__(self, client: Ledger, ttl: float = 5.0) -> None:
        self.client, self.ttl = client, ttl
        self._members = Refreshed(self._read, ttl)

    def _read(self, _previous: dict[str, Member] | None) -> dict[str, Member]:
        return {m.address: m for m in self.client.members() if m.active}

    def _active(self) -> dict[str, Member]:
        return self._members.get()

    def is_active_member(self, address: str) -> bool:
        return is_address(address) and to_checksum_address(address) in self._active()

    def encryption_keys(self) -> dict[str, bytes]:
        return {a: m.encryption_key for a, m in self._active().items() if m.encryption_key != _NO_KEY}


def chain_directory(deployment_file: Path, ttl: float = 5.0) -> ChainDirectory:
    """The members of the coalition a deployment file names (chain id and contract are checked)."""
    _, client = open_deployment(deployment_file)
    return ChainDirectory(client, ttl)
