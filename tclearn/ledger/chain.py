"""Connections to a chain: the embedded in-process chain (eth-tester + py-evm) or any JSON-RPC URL.

`Chain` wraps a web3 instance with what tclearn needs beside it: the chain id, checks that a URL
answers and serves the expected chain, and time travel on development chains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.middleware import ExtraDataToPOAMiddleware

from tclearn.errors import ChainUnreachable, LedgerError, WrongChain
from tclearn.ledger.accounts import DEV_HD_PATH, DEV_MNEMONIC, dev_accounts

EMBEDDED = "embedded"


@dataclass
class Chain:
    w3: Web3
    kind: str  # "embedded" or the JSON-RPC URL
    chain_id: int
    tester: Any = field(default=None, repr=False)  # eth_tester.EthereumTester for the embedded chain
    dev_keys: list[LocalAccount] = field(default_factory=list, repr=False)

    @property
    def embedded(self) -> bool:
        return self.tester is not None

    def latest_block(self) -> int:
        return int(self.w3.eth.block_number)

    def timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Moves the chain's clock forward and mines a block (development chains only)."""
        if self.tester is not None:
            self.tester.time_travel(self.timestamp() + seconds)
            return
        for method, params in (("evm_increaseTime", [seconds]), ("evm_mine", [])):
            response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
            if "error" in response:
                raise LedgerError(f"{self.kind} does not support {method}: {response['error']}")


def embedded_chain(accounts: int = 10, mnemonic: str = DEV_MNEMONIC) -> Chain:
    """A fresh in-process chain whose first `accounts` dev keys are funded."""
    from eth_tester import EthereumTester, PyEVMBackend

    backend = PyEVMBackend.from_mnemonic(mnemonic, num_accounts=accounts, hd_path=DEV_HD_PATH)
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    return Chain(w3, EMBEDDED, int(w3.eth.chain_id), tester, dev_accounts(accounts, mnemonic))


def connect(url: str, expected_chain_id: int | None = None, timeout: float = 10.0) -> Chain:
    """Connects to a JSON-RPC node; raises if it does not answer or serves another chain."""
    if url == EMBEDDED:
        chain = embedded_chain()
    else:
        if not url.startswith(("http://", "https://")):
            raise ChainUnreachable(f"unsupported chain URL {url!r}: use http(s)://HOST:PORT or 'embedded'")
        w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}))
        # Proof-of-authority chains (geth clique, Besu clique/IBFT/QBFT) put signer data in a block's
        # extraData, longer than web3's 32-byte limit; the middleware moves it aside on any chain.
        w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        try:
            chain_id = int(w3.eth.chain_id)
        except (requests.ConnectionError, requests.Timeout, OSError) as exc:
            raise ChainUnreachable(f"no chain answers at {url}: {type(exc).__name__}") from None
        except ValueError as exc:
            raise ChainUnreachable(f"{url} did not answer like an Ethereum JSON-RPC node: {exc}") from None
        chain = Chain(w3, url, chain_id)
    if expected_chain_id is not None and chain.chain_id != expected_chain_id:
        raise WrongChain(
            f"{url} serves chain id {chain.chain_id}, but the deployment is on chain id {expected_chain_id}"
        )
    return chain
