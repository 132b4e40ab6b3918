"""Signing and sending one Coalition transaction: simulate it first, sign with the actor's own key, await
the receipt, and say why if it reverted.

A call the contract would refuse raises `ContractRevert` naming the custom error before anything is sent.
Nonces are safe across threads and processes: each send takes the account's lock (a thread lock, and on a
node also the account's lock file, `tclearn.ledger.nonces`), reads the node's pending transaction count and
sends under it. A node refusing the nonce (taken meanwhile by a process that does not share the lock file)
is retried with a fresh count, `NONCE_ATTEMPTS` times at most, then `NonceConflict` names the cause.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3.exceptions import TimeExhausted

from tclearn.errors import LedgerError, NonceConflict, TransactionTimeout
from tclearn.ledger.chain import Chain
from tclearn.ledger.nonces import NonceRefusal, account_lock, lock_file, nonce_refusal
from tclearn.ledger.reverts import decode_revert, revert_data

PRIORITY_FEE = 1_000_000_000  # 1 gwei tip on chains with EIP-1559 fees
EMBEDDED_GAS = 1_000_000  # above any Coalition call; the receipt still reports the gas really used
GAS_MARGIN = 1.2  # estimates are exact on py-evm and anvil; a margin absorbs state changing meanwhile
NONCE_ATTEMPTS = 5  # sends of one transaction whose nonce a node refused, before giving up
RETRY_PAUSE = 0.25  # seconds before the n-th retry: n times this, outside the lock

log = logging.getLogger(__name__)


class Sender:
    """Sends for one account: one thread at a time, and one process at a time where `lock_path` is given.

    The embedded chain lives inside one process, so it needs no lock file (`lock_path` None). `floor` is the
    nonce after this process's last accepted transaction: a node whose pending count leaves out its pool
    (Ganache with a block time) is never trusted below it; a refused nonce or a lost transaction clears it."""

    def __init__(self, account: LocalAccount, lock_path: Path | None = None) -> None:
        self.account = account
        self.lock = threading.Lock()
        self.lock_path = lock_path
        self.floor = 0

    def next_nonce(self, chain: Chain) -> int:
        """The node's pending transaction count, read now (another process may have sent), or the floor."""
        return max(int(chain.w3.eth.get_transaction_count(self.account.address, "pending")), self.floor)

    @classmethod
    def on(cls, chain: Chain, account: LocalAccount, lock_dir: Path) -> Sender:
        """The sender of `account` on `chain`: with the account's lock file in `lock_dir` unless embedded."""
        return cls(account, None if chain.embedded else lock_file(lock_dir, chain.chain_id, account.address))

    @contextlib.contextmanager
    def across_processes(self) -> Iterator[None]:
        if self.lock_path is None:
            yield
            return
        with account_lock(self.lock_path):
            yield


def _fee_fields(chain: Chain) -> dict[str, int]:
    base_fee = chain.w3.eth.get_block("latest").get("baseFeePerGas")
    if base_fee is None:
        return {"gasPrice": int(chain.w3.eth.gas_price)}
    return {"maxFeePerGas": 2 * int(base_fee) + PRIORITY_FEE, "maxPriorityFeePerGas": PRIORITY_FEE}


def _simulate(chain: Chain, fn: Any, params: dict[str, Any], action: str, artifact: Any) -> int:
    """Runs the call without sending it: a revert raises `ContractRevert`; returns the gas limit to send with.

    On the embedded chain one `eth_call` is enough (gas is free there), while py-evm's `eth_estimateGas`
    binary-searches the limit by running the call a dozen times; real nodes get the exact estimate.
    """
    try:
        if chain.embedded and hasattr(fn, "call"):
            fn.call(params, block_identifier="pending")  # the block the transaction will be mined in
            return EMBEDDED_GAS
        return int(fn.estimate_gas(params) * GAS_MARGIN) + 10_000
    except Exception as exc:  # web3 and eth-tester report reverts by several exception types
        data = revert_data(exc)
        if data is None:
            raise LedgerError(f"{action} failed before sending: {exc}") from None
        raise decode_revert(artifact, data, action) from None


def _send_once(chain: Chain, sender: Sender, fn: Any, action: str, artifact: Any) -> tuple[HexBytes | None, str]:
    """Simulates, signs and sends at the pending nonce, under the account's locks: the transaction hash, or
    None and the nonce refusal that calls for another try."""
    account = sender.account
    with sender.lock:  # simulated under the lock too: the embedded chain (py-evm) is not safe across threads
        gas = _simulate(chain, fn, {"from": account.address}, action, artifact)
        with sender.across_processes():
            nonce = sender.next_nonce(chain)
            tx = fn.build_transaction(
                {"from": account.address, "nonce": nonce, "gas": gas, "chainId": chain.chain_id, **_fee_fields(chain)}
            )
            signed = account.sign_transaction(tx)
            try:
                tx_hash = HexBytes(chain.w3.eth.send_raw_transaction(signed.raw_transaction))
            except Exception as exc:  # web3 and eth-tester report reverts by several exception types
                sender.floor = 0
                data = revert_data(exc)
                if data is not None:
                    raise decode_revert(artifact, data, action) from None
                refusal = nonce_refusal(str(exc))
                if refusal is None:
                    raise LedgerError(f"{action}: the node refused the transaction: {exc}") from None
                if refusal is not NonceRefusal.ALREADY_KNOWN:
                    return None, f"nonce {nonce}: {refusal.value}"
                tx_hash = HexBytes(signed.hash)  # this very transaction is pending: wait for it
            sender.floor = nonce + 1
            return tx_hash, ""


def send(chain: Chain, sender: Sender, fn: Any, action: str, artifact: Any, *, timeout: float) -> Any:
    causes: list[str] = []
    for attempt in range(NONCE_ATTEMPTS):
        if attempt:
            log.warning("%s as %s: %s; sending again", action, sender.account.address, causes[-1])
            time.sleep(RETRY_PAUSE * attempt)  # outside the lock: lets the other sender's transaction land
        tx_hash, cause = _send_once(chain, sender, fn, action, artifact)
        if tx_hash is not None:
            break
        causes.append(cause)
    else:
        raise NonceConflict(
            f"{action}: the node refused the nonce {NONCE_ATTEMPTS} times ({'; '.join(causes)}); another process "
            f"is sending as {sender.account.address} without sharing its nonce lock folder",
            causes=causes,
        )
    try:
        receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    except TimeExhausted:
        sender.floor = 0  # the transaction may be lost: trust the node's count again
        raise TransactionTimeout(f"{action}: no receipt for 0x{bytes(tx_hash).hex()} within {timeout:.0f} s") from None
    if receipt["status"] != 1:
        _explain_failure(fn, sender.account, receipt, action, artifact)
    return receipt


def _explain_failure(fn: Any, account: LocalAccount, receipt: Any, action: str, artifact: Any) -> None:
    """A mined transaction reverted (the state changed after the simulation): say why, by replaying it."""
    try:
        fn.call({"from": account.address})
    except Exception as exc:
        data = revert_data(exc)
        if data is not None:
            raise decode_revert(artifact, data, action) from None
    raise LedgerError(f"{action}: transaction {bytes(receipt['transactionHash']).hex()} reverted")
