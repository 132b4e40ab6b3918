"""Keep freed blob buffers in the process instead of handing them back to the kernel (glibc only).

Streaming a blob allocates and frees 1 MiB chunk buffers. glibc serves such sizes by `mmap` and returns them
to the kernel on `free` (and trims its heap above 128 KiB), so the next blob faults every page in again:
about 1 ms per MiB on the development VM, a quarter of a 10 MB variant B seal. Raising the mmap threshold
above the chunk size and the trim threshold above a blob's working set keeps those pages in the process
(docs/vault.md, "Measured"). The same as `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_`, set at run time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # above any chunk buffer: chunks come from the heap, reused
TRIM_THRESHOLD = 256 * 1024 * 1024  # freed heap kept up to this much above what is in use

log = logging.getLogger(__name__)


@functools.cache
def keep_blob_buffers() -> bool:
    """Sets glibc's thresholds once per process; False where the C library is not glibc (nothing changes)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 -- present only in glibc: musl and others are left alone
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        log.warning("glibc refused the allocator thresholds; blob buffers go back to the kernel after each use")
    return done
