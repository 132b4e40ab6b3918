"""The allocator setting the vault service and sites apply: freed 1 MiB blob buffers stay in the process, so the
next blob does not fault its pages in again (counted as minor page faults, in a fresh interpreter each)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, sys
from tclearn.vault.allocator import keep_blob_buffers
if sys.argv[1] == "kept":
    assert keep_blob_buffers()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def blob():  # ten 1 MiB chunks alive at once, each written whole, as a 10 MB blob's buffers in a pipeline
    chunks = [bytearray(1 << 20) for _ in range(10)]
    del chunks
for _ in range(3):
    blob()
before = faults()
for _ in range(20):
    blob()
print(faults() - before)
"""

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")


def faults_for(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_kept_buffers_are_reused_instead_of_faulted_in_again() -> None:
    default, kept = faults_for("default"), faults_for("kept")

    assert default > 20_000  # 256 pages per MiB, faulted in again for every chunk of every blob (~51,000 here)
    assert kept < 2_000  # 0 here: the pages stay in the process


def test_setting_it_twice_is_harmless() -> None:
    from tclearn.vault.allocator import keep_blob_buffers

    assert keep_blob_buffers() is keep_blob_buffers() is True
