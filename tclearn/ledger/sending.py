"""Signing and sending one Coalition transaction: simulate it first, sign with the actor's own key, await
the receipt, and say why if it reverted.

A call the contract would refuse raises `ContractRevert` naming the custom error before anything is sent.
Nonces are handed out per account under a lock, so one account may send from several threads.
"""

from __future__ import annotations

import threading
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.exceptions import TimeExhausted

from tclearn.errors import LedgerError, TransactionTimeout
from tclearn.ledger.chain import Chain
from tclearn.ledger.reverts import decode_revert, revert_data

PRIORITY_FEE = 1_000_000_000  # 1 gwei tip on chains with EIP-1559 fees
EMBEDDED_GAS = 1_000_000  # above any Coalition call; the receipt still reports the gas really used
GAS_MARGIN = 1.2  # estimates are exact on py-evm and anvil; a margin absorbs state changing meanwhile


class Sender:
    """Hands out nonces for one account, safely across threads."""

    def __init__(self, account: LocalAccount) -> None:
        self.account = account
        self.lock = threading.Lock()
        self.next_nonce: int | None = None


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


def send(chain: Chain, sender: Sender, fn: Any, action: str, artifact: Any, *, timeout: float) -> Any:
    account = sender.account
    with sender.lock:  # simulated under the lock too: the embedded chain (py-evm) is not safe across threads
        gas = _simulate(chain, fn, {"from": account.address}, action, artifact)
        if sender.next_nonce is None:
            sender.next_nonce = int(chain.w3.eth.get_transaction_count(account.address, "pending"))
        tx = fn.build_transaction(
            {
                "from": account.address,
                "nonce": sender.next_nonce,
                "gas": gas,
                "chainId": chain.chain_id,
                **_fee_fields(chain),
            }
        )
        signed = account.sign_transaction(tx)
        try:
            tx_hash = chain.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:  # web3 and eth-tester report reverts by several exception types
            sender.next_nonce = None  # re-read from the node next time (e.g. nonce too low)
            data = revert_data(exc)
            if data is not None:
                raise decode_revert(artifact, data, action) from None
            raise LedgerError(f"{action}: the node refused the transaction: {exc}") from None
        sender.next_nonce += 1
    try:
        receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    except TimeExhausted:
        raise TransactionTimeout(f"{action}: no receipt for {tx_hash.hex()} within {timeout:.0f} s") from None
    if receipt["status"] != 1:
        _explain_failure(fn, account, receipt, action, artifact)
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
