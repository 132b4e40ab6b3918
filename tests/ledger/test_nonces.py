"""Nonces across processes: which node refusals are retried, the bounded retry on the embedded chain, the account's
lock file between processes, and two OS processes sending as one account on an Anvil with a 1-second block time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tclearn.errors import ConfigError, NonceConflict
from tclearn.ledger import sending
from tclearn.ledger.localchain import LocalNode
from tclearn.ledger.nonces import NonceRefusal, account_lock, lock_file, nonce_refusal
from tests.conftest import ACCOUNTS, Coalition, deploy_coalition, node_chain

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("message", "refusal"),
    [
        ("{'code': -32000, 'message': 'nonce too low'}", NonceRefusal.TOO_LOW),  # geth
        ("nonce too low: next nonce 7, tx nonce 5", NonceRefusal.TOO_LOW),  # geth 1.13+
        ("{'code': -32003, 'message': 'nonce too low'}", NonceRefusal.TOO_LOW),  # Anvil
        ("{'code': -32001, 'message': 'Nonce too low'}", NonceRefusal.TOO_LOW),  # Besu
        ("the tx doesn't have the correct nonce. account has nonce of: 5 tx has nonce of: 4", NonceRefusal.TOO_LOW),
        ("{'code': -32003, 'message': 'replacement transaction underpriced'}", NonceRefusal.REPLACEMENT_UNDERPRICED),
        ("Replacement transaction underpriced", NonceRefusal.REPLACEMENT_UNDERPRICED),  # Besu
        ("transaction can't be replaced, mining has already started", NonceRefusal.REPLACEMENT_UNDERPRICED),  # Ganache
        ("transaction underpriced", None),  # geth: a fee below the pool's minimum, not a nonce clash
        ("already known", NonceRefusal.ALREADY_KNOWN),  # geth
        ("Known transaction", NonceRefusal.ALREADY_KNOWN),  # Besu
        ("{'code': -32003, 'message': 'transaction already imported'}", NonceRefusal.ALREADY_KNOWN),  # Anvil
        ("insufficient funds for gas * price + value", None),
        ("execution reverted", None),
        ("intrinsic gas too low", None),
    ],
)
def test_which_refusals_are_about_the_nonce(message: str, refusal: NonceRefusal | None) -> None:
    assert nonce_refusal(message) is refusal


def refuse_sends(monkeypatch: pytest.MonkeyPatch, co: Coalition, answers: list[str | None]) -> list[int]:
    """The chain's node answers each send with the next message of `answers` (None: accepts it; "after": accepts
    it, then says it already knew it); returns the nonces it was sent."""
    eth = co.chain.w3.eth
    real, nonces = eth.send_raw_transaction, []

    def send_raw_transaction(raw: bytes) -> Any:
        nonces.append(_nonce(raw))
        answer = answers.pop(0) if answers else None
        if answer is None:
            return real(raw)
        if answer == "after":
            real(raw)
            answer = "already known"
        raise ValueError({"code": -32000, "message": answer})

    monkeypatch.setattr(eth, "send_raw_transaction", send_raw_transaction)
    monkeypatch.setattr(sending, "RETRY_PAUSE", 0.0)
    return nonces


def _nonce(raw: bytes) -> int:
    from eth_account.typed_transactions import TypedTransaction

    return int(TypedTransaction.from_bytes(raw).as_dict()["nonce"])


def test_a_refused_nonce_is_sent_again_with_a_fresh_count(
    coalition: Coalition, monkeypatch: pytest.MonkeyPatch
) -> None:
    co, member = coalition, coalition.hospitals[0]
    before = co.chain.w3.eth.get_transaction_count(member.address)
    nonces = refuse_sends(monkeypatch, co, ["nonce too low", "replacement transaction underpriced"])

    tx = co.client.set_encryption_key(member, os.urandom(32))

    assert nonces == [before] * 3 and tx.block_number > 0
    assert co.chain.w3.eth.get_transaction_count(member.address) == before + 1


def test_a_transaction_the_node_already_knows_is_awaited_not_resent(
    coalition: Coalition, monkeypatch: pytest.MonkeyPatch
) -> None:
    co, member = coalition, coalition.hospitals[0]
    before = co.chain.w3.eth.get_transaction_count(member.address)
    nonces = refuse_sends(monkeypatch, co, ["after"])

    tx = co.client.set_encryption_key(member, b"\x07" * 32)

    assert nonces == [before] and co.client.get_member(member.address).encryption_key == b"\x07" * 32  # type: ignore[union-attr]
    assert co.chain.w3.eth.get_transaction_count(member.address) == before + 1 and tx.event("EncryptionKeyChanged")


def test_retries_are_bounded_and_the_error_names_the_cause(
    coalition: Coalition, monkeypatch: pytest.MonkeyPatch
) -> None:
    co, member = coalition, coalition.hospitals[0]
    before = co.chain.w3.eth.get_transaction_count(member.address)
    nonces = refuse_sends(monkeypatch, co, ["nonce too low"] * 10)

    with pytest.raises(NonceConflict, match=r"refused the nonce 5 times \(nonce \d+: nonce too low;") as caught:
        co.client.set_encryption_key(member, os.urandom(32))

    assert len(nonces) == sending.NONCE_ATTEMPTS == 5 and len(caught.value.details["causes"]) == 5
    assert "without sharing its nonce lock folder" in str(caught.value)
    assert co.chain.w3.eth.get_transaction_count(member.address) == before


def test_the_embedded_chain_takes_no_lock_file(coalition: Coalition) -> None:
    assert coalition.client._sender(coalition.hospitals[0]).lock_path is None


HOLD = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "


def test_the_lock_file_keeps_another_process_waiting(tmp_path: Path) -> None:
    path = lock_file(tmp_path / "locks", 31337, "0xABC")
    with account_lock(path):
        assert path.name == "31337-0xabc.lock" and path.stat().st_mode & 0o077 == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD + "print('held', flush=True); time.sleep(1.5)", str(path)], stdout=subprocess.PIPE
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
    start = time.monotonic()

    with account_lock(path):
        waited = time.monotonic() - start

    holder.wait(10)
    assert waited > 0.8, f"took the lock while another process held it (waited {waited:.2f} s)"


def test_an_unusable_lock_folder_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with (
        pytest.raises(ConfigError, match=r"cannot open the nonce lock file .*nonce_locks"),
        account_lock(tmp_path / "file" / "1-0xabc.lock"),
    ):
        pass


def test_a_lock_folder_others_may_write_to_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # as a folder another local user made first in /tmp would be
    with (
        pytest.raises(ConfigError, match=r"nonce lock folder .* others may write to it"),
        account_lock(shared / "1-0xabc.lock"),
    ):
        pass


# ---- two processes, one account, a chain with a block time -----------------------------------------------------


@pytest.fixture(scope="module")
def slow_blocks() -> Iterator[LocalNode]:
    """Anvil mining a block every second, as a real network does: transactions wait in its pool."""
    with LocalNode("anvil", accounts=ACCOUNTS, block_time=1) as node:
        yield node


def run_senders(url: str, contract: str, key_index: int, locks: list[Path], threads: int, sends: int) -> list[Any]:
    """One `nonce_sender` process per entry of `locks` (its lock folder), all released at once; their reports."""
    command = [sys.executable, "-m", "tests.ledger.nonce_sender", url, contract, str(key_index), str(threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [*command, str(sends), str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for folder in locks
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:  # a failed step: no sender left running (or starting to send at stdin's end)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    return reports


@pytest.mark.anvil
def test_two_processes_send_as_one_account_on_a_chain_with_a_block_time(slow_blocks: LocalNode, tmp_path: Path) -> None:
    co = deploy_coalition(node_chain(slow_blocks), validators=1)
    hospital = co.hospitals[0]  # dev account 1
    w3 = co.chain.w3
    before = w3.eth.get_transaction_count(hospital.address)
    threads, sends = 4, 5
    start = time.monotonic()

    reports = run_senders(slow_blocks.url, co.client.address, 1, [tmp_path / "locks"] * 2, threads, sends)

    elapsed = time.monotonic() - start
    total = 2 * threads * sends
    assert [r["errors"] for r in reports] == [[], []]
    assert [r["retried"] for r in reports] == [[], []], "the shared lock file should leave nothing to retry"
    hashes = {h for r in reports for h in r["hashes"]}
    assert len(hashes) == total, "a transaction hash was reported twice"
    receipts = [w3.eth.get_transaction_receipt(h) for h in hashes]  # a replaced transaction has none
    assert all(r["status"] == 1 for r in receipts)
    assert w3.eth.get_transaction_count(hospital.address) == before + total, "a nonce was skipped or reused"
    changed = [e for e in co.client.events() if e.name == "EncryptionKeyChanged"]
    assert len(changed) == total
    assert len({r["blockNumber"] for r in receipts}) < total, "no two transactions shared a block: not concurrent"
    print(f"{total} transactions from 2 processes x {threads} threads in {elapsed:.1f} s")


@pytest.mark.ganache
def test_threads_of_one_process_on_ganache_with_a_block_time() -> None:
    """Ganache's pending count leaves out its pool and it replaces a pooled transaction at the same nonce without
    a word: only the sender's floor keeps one process's threads from reusing a nonce."""
    with LocalNode("ganache", accounts=ACCOUNTS, block_time=1) as node:
        co = deploy_coalition(node_chain(node), validators=1)
        hospital, w3 = co.hospitals[0], co.chain.w3
        co.client.receipt_timeout = 20.0  # a replaced transaction fails the test in 20 s, not 120
        before = w3.eth.get_transaction_count(hospital.address)
        errors: list[BaseException] = []

        def send() -> None:
            for _ in range(3):
                try:
                    co.client.set_encryption_key(hospital, os.urandom(32))
                except BaseException as exc:  # collected and asserted below
                    errors.append(exc)

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert errors == []
        assert w3.eth.get_transaction_count(hospital.address) == before + 12
