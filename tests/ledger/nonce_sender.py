"""One OS process sending as a shared account: `python -m tests.ledger.nonce_sender URL CONTRACT KEY_INDEX THREADS
SENDS LOCKS`. Prints `ready`, waits for a line on stdin (so that every process starts sending at once), then sends
THREADS x SENDS `setEncryptionKey` transactions from THREADS threads through `LedgerClient` (SENDS 0: each thread
sends until a second line arrives) and prints one JSON line: the transaction hashes, the errors, and the nonce
refusals the sender retried."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path

from tclearn.ledger.accounts import dev_accounts
from tclearn.ledger.chain import connect
from tclearn.ledger.client import LedgerClient

RECEIPT_TIMEOUT = 30.0  # a replaced or stuck transaction fails the run in 30 s, not 120


class Retried(logging.Handler):
    """Keeps the sender's warnings: one per nonce refusal it sent again after."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main(url: str, contract: str, key_index: str, threads: str, sends: str, locks: str) -> None:
    account = dev_accounts(int(key_index) + 1)[int(key_index)]
    client = LedgerClient(connect(url), contract, receipt_timeout=RECEIPT_TIMEOUT, nonce_locks=Path(locks))
    hashes: list[str] = []
    errors: list[str] = []
    retried = Retried()
    logging.getLogger("tclearn.ledger.sending").addHandler(retried)

    stop = threading.Event()

    def run() -> None:
        sent = 0
        while (sent < int(sends) or int(sends) == 0) and not stop.is_set():
            sent += 1
            try:
                hashes.append(client.set_encryption_key(account, os.urandom(32)).tx_hash)
            except Exception as exc:  # reported to the test, which asserts there are none
                errors.append(f"{type(exc).__name__}: {exc}")

    print("ready", flush=True)
    sys.stdin.readline()
    workers = [threading.Thread(target=run) for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    if int(sends) == 0:
        sys.stdin.readline()
        stop.set()
    for worker in workers:
        worker.join()
    print(json.dumps({"hashes": hashes, "errors": errors, "retried": retried.messages}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
