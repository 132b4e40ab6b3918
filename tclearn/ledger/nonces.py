"""Nonces safe across processes: one lock file per (chain, account), and which refusals of a node mean
"this nonce was taken meanwhile, try again".

A hospital's member API and node daemon sign with the same account in two processes. Each send takes the
account's lock file (`fcntl.flock`), reads the node's pending transaction count and sends under it, so two
processes on one host (or two containers sharing the folder) never hand out the same nonce. Processes that
do not share the folder (other hosts) can still collide; the sender then retries, a bounded number of times,
on the refusals `nonce_refusal` recognises.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from tclearn.errors import ConfigError


class NonceRefusal(StrEnum):
    """Why a node refused a transaction because of its nonce (each retried with a fresh pending count)."""

    TOO_LOW = "nonce too low"
    REPLACEMENT_UNDERPRICED = "replacement transaction underpriced"
    ALREADY_KNOWN = "already known"  # this very transaction is in the node's pool: it is waited for, not resent


# Lower-case fragments of the messages geth, Besu, Anvil and Ganache send, checked in order. geth's plain
# "transaction underpriced" is not among them: it means a fee below the pool's minimum, whatever the nonce.
# Anvil's and Ganache's were seen from the nodes the tests run; geth's and Besu's are as their sources word
# them (no geth or Besu node runs in the tests).
_MESSAGES: tuple[tuple[str, NonceRefusal], ...] = (
    ("nonce too low", NonceRefusal.TOO_LOW),  # geth, Anvil, Besu ("Nonce too low")
    ("correct nonce", NonceRefusal.TOO_LOW),  # Ganache: "the tx doesn't have the correct nonce"
    ("replacement transaction underpriced", NonceRefusal.REPLACEMENT_UNDERPRICED),  # geth, Anvil, Besu
    ("transaction can't be replaced", NonceRefusal.REPLACEMENT_UNDERPRICED),  # Ganache
    ("already known", NonceRefusal.ALREADY_KNOWN),  # geth
    ("known transaction", NonceRefusal.ALREADY_KNOWN),  # Besu
    ("already imported", NonceRefusal.ALREADY_KNOWN),  # Anvil
)


def nonce_refusal(message: str) -> NonceRefusal | None:
    """The nonce refusal a node's error message reports, or None for any other refusal."""
    lowered = message.lower()
    return next((refusal for fragment, refusal in _MESSAGES if fragment in lowered), None)


def default_lock_dir() -> Path:
    """The system temp folder's `tclearn-nonces-<uid>`: shared by every process of this user on this host."""
    return Path(tempfile.gettempdir()) / f"tclearn-nonces-{os.getuid()}"


def lock_file(folder: Path, chain_id: int, address: str) -> Path:
    """The lock file of `address` on chain `chain_id` inside `folder`."""
    return folder / f"{chain_id}-{address.lower()}.lock"


@contextlib.contextmanager
def account_lock(path: Path) -> Iterator[None]:
    """Holds the exclusive lock on `path` (created, with its folder, if missing); other processes wait."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = path.parent.stat()
        if folder.st_uid != os.getuid() or folder.st_mode & 0o022:  # another user could swap the lock files
            raise ConfigError(
                f"the nonce lock folder {path.parent} belongs to another user or others may write to it; "
                "give a folder of this account's own as the site's `nonce_locks`"
            )
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot open the nonce lock file {path}: {exc.strerror}; "
            "give a writable folder as the site's `nonce_locks`"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
