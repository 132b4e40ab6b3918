"""How members and validators reach the supervisor: in process (demo, tests) or over HTTP, one interface."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
from eth_account import Account

from tclearn.canonical import canonical_json
from tclearn.errors import SupervisorRefused
from tclearn.he.context import Ciphertexts
from tclearn.he.supervisor import Score, Supervisor
from tclearn.vault.audience import NO_COALITION, Audience, CoalitionId
from tclearn.vault.http import error_from_response
from tclearn.vault.signing import sign_request


class SupervisorClient(Protocol):
    def decrypt(self, message: Ciphertexts) -> list[list[float]]: ...

    def refresh(self, message: Ciphertexts) -> Ciphertexts: ...

    def score(self, message: Ciphertexts) -> Score: ...

    def measure(self, message: Ciphertexts) -> list[tuple[float, float]]: ...

    def aggregate(self, parts: list[Ciphertexts]) -> list[list[float]]: ...


class LocalSupervisorClient:
    """Calls a `Supervisor` object directly, as `account`."""

    def __init__(self, supervisor: Supervisor, account: str) -> None:
        self.supervisor, self.account = supervisor, account

    def decrypt(self, message: Ciphertexts) -> list[list[float]]:
        return self.supervisor.decrypt(self.account, message)

    def refresh(self, message: Ciphertexts) -> Ciphertexts:
        return self.supervisor.refresh(self.account, message)

    def score(self, message: Ciphertexts) -> Score:
        return self.supervisor.score(self.account, message)

    def measure(self, message: Ciphertexts) -> list[tuple[float, float]]:
        return self.supervisor.measure(self.account, message)

    def aggregate(self, parts: list[Ciphertexts]) -> list[list[float]]:
        return self.supervisor.aggregate(self.account, parts)


class HttpSupervisorClient:
    """The supervisor service at `base_url`; every request signed with `private_key` for that URL and
    `coalition` (`vault.signing`)."""

    def __init__(
        self,
        base_url: str,
        private_key: str | bytes,
        *,
        coalition: CoalitionId = NO_COALITION,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.account = Account.from_key(private_key)
        self.audience = Audience.of(base_url, coalition)
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        content = b"" if body is None else canonical_json(body)
        headers = sign_request(self.account, self.audience, method, path, hashlib.sha256(content).hexdigest())
        try:
            response = self.client.request(method, path, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise SupervisorRefused(f"supervisor at {self.client.base_url} unreachable: {exc}") from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response.json()

    def decrypt(self, message: Ciphertexts) -> list[list[float]]:
        values: list[list[float]] = self._call("POST", "/decrypt", message.to_json())["values"]
        return values

    def refresh(self, message: Ciphertexts) -> Ciphertexts:
        return Ciphertexts.from_json(self._call("POST", "/refresh", message.to_json()))

    def score(self, message: Ciphertexts) -> Score:
        result = self._call("POST", "/score", message.to_json())
        return Score(float(result["accuracy"]), int(result["count"]))

    def measure(self, message: Ciphertexts) -> list[tuple[float, float]]:
        return [(float(n), float(b)) for n, b in self._call("POST", "/measure", message.to_json())["bounds"]]

    def aggregate(self, parts: list[Ciphertexts]) -> list[list[float]]:
        values: list[list[float]] = self._call("POST", "/aggregate", {"parts": [p.to_json() for p in parts]})["values"]
        return values

    def context(self) -> str:
        return str(self._call("GET", "/context")["context"])

    def log(self, account: str | None = None, model: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query = {k: v for k, v in {"account": account, "model": model, "limit": limit}.items() if v is not None}
        entries: list[dict[str, Any]] = self._call("GET", f"/log?{urlencode(query)}")
        return entries
