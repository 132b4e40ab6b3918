"""Vault benchmark: put/get throughput (variant A: hashing; variant B: hashing + AES-GCM) for 10, 100 and
500 MB blobs beside raw hashlib.sha256 and raw AESGCM measured in the same run, and the peak RSS of the
vault service (a separate uvicorn process on 127.0.0.1) while a blob streams in and out.

    PYTHONPATH=. python bench/vault.py [--sizes 10,100,500] [--out bench-vault.json]

Prints one JSON document (and writes it to --out). Throughputs are MB/s with MB = 10**6 bytes, each the
best of --repeats runs. Every put/get figure is measured alternately with raw sha256 and raw AES-GCM
over the same size, and `ratio` is op / min(raw sha256, raw AES-GCM) from those same rounds, so load
from other processes on a shared machine affects both sides of the ratio alike. `stores` runs with glibc's
default allocator thresholds, then `stores_buffers_kept` with those the vault service and sites set
(`tclearn.vault.allocator.keep_blob_buffers`): the same operations, side by side in one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account

from tclearn.ledger.localchain import free_port
from tclearn.vault.allocator import keep_blob_buffers
from tclearn.vault.envelope import public_bytes, seal, unseal
from tclearn.vault.http import HttpStore
from tclearn.vault.store import CHUNK_SIZE, FsspecStore

MB = 10**6
TARGET = 0.7
BLOCK = os.urandom(CHUNK_SIZE)
REPO = Path(__file__).resolve().parent.parent


def blob(size: int) -> Iterator[bytes]:
    """`size` bytes in CHUNK_SIZE pieces without holding them all (one random block repeated)."""
    full, rest = divmod(size, CHUNK_SIZE)
    for _ in range(full):
        yield BLOCK
    if rest:
        yield BLOCK[:rest]


def drain(chunks: Iterable[bytes]) -> int:
    return sum(len(chunk) for chunk in chunks)


RUNS = {"repeats": 3}  # set from --repeats


def rate(size: int, action: Callable[[], object]) -> float:
    """Best MB/s of several runs of `action` over `size` bytes (the machine is shared)."""
    best = float("inf")
    for _ in range(RUNS["repeats"]):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return round(size / MB / best, 1)


def raw_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for chunk in blob(size):
        digest.update(chunk)
    return digest.hexdigest()


def raw_aesgcm(size: int) -> None:
    aead, nonce = AESGCM(AESGCM.generate_key(bit_length=256)), os.urandom(12)
    for chunk in blob(size):
        aead.encrypt(nonce, chunk, None)  # a fixed nonce is fine for timing only


def raw_write(size: int, path: Path) -> None:
    """Plain buffered file writes of the same chunks: the disk side of a put, without hashing."""
    with open(path, "wb") as handle:
        for chunk in blob(size):
            handle.write(chunk)
    path.unlink()


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def start_service(workdir: Path, member: str) -> tuple[subprocess.Popen[bytes], str]:
    (workdir / "members.json").write_text(json.dumps({member: None}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TCLEARN_VAULT_PUBLIC_URL": url,  # the audience clients sign for (uvicorn's --port is not the settings')
        "TCLEARN_VAULT_STORE": f"file://{workdir}/service-store",
        "TCLEARN_VAULT_DATABASE": f"sqlite:///{workdir}/access.db",
        "TCLEARN_VAULT_MEMBERS": str(workdir / "members.json"),
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "services.vault.app:app_from_env"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, cwd=REPO)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("vault service did not start")


def paired(size: int, action: Callable[[], object]) -> dict[str, float]:
    """Best MB/s of `action` and of the two raw references, run alternately so all see the same load."""
    best = {"op": float("inf"), "sha256": float("inf"), "aesgcm": float("inf")}
    for _ in range(RUNS["repeats"]):
        for name, run in (
            ("sha256", lambda: raw_sha256(size)),
            ("aesgcm", lambda: raw_aesgcm(size)),
            ("op", action),
        ):
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    speeds = {name: round(size / MB / seconds, 1) for name, seconds in best.items()}
    speeds["ratio"] = round(speeds["op"] / min(speeds["sha256"], speeds["aesgcm"]), 2)
    return speeds


def bench_size(size: int, workdir: Path) -> dict[str, Any]:
    """Variant A (hash) and B (hash + AES-GCM) put/get on a file store, each paired with raw figures."""
    store = FsspecStore(f"file://{workdir}/store-{size}", max_bytes=1 << 40)
    key = X25519PrivateKey.generate()
    address = Account.from_key(b"\x01" * 32).address
    holder: dict[str, str] = {}
    ops: dict[str, Callable[[], object]] = {
        "A_put": lambda: holder.__setitem__("a", store.put_stream(blob(size))),
        "A_get": lambda: drain(store.iter_blob(holder["a"])),
        "B_put": lambda: holder.__setitem__("b", seal(store, blob(size), {address: public_bytes(key)})),
        "B_get": lambda: drain(unseal(store, holder["b"], address, key)),
    }
    result: dict[str, Any] = {"size_mb": size // MB}
    for name, action in ops.items():
        result[name] = paired(size, action)
    store.fs.rm(store.root, recursive=True)
    result["meets_target"] = all(result[name]["ratio"] >= TARGET for name in ops)
    return result


def bench_service(size: int, workdir: Path, sha: str) -> dict[str, Any]:
    key = b"\x02" * 32
    process, url = start_service(workdir, Account.from_key(key).address)
    try:
        time.sleep(1.0)
        idle = rss_kib(process.pid)["VmRSS"]
        client = HttpStore(url, key, timeout=600, max_bytes=1 << 40)
        put = rate(size, lambda: client.upload(blob(size), sha, size))
        get = rate(size, lambda: drain(client.iter_blob(sha)))
        peak = rss_kib(process.pid)["VmHWM"]
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {
        "size_mb": size // MB,
        "http_put_mb_s": put,
        "http_get_mb_s": get,
        "idle_rss_mb": round(idle / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "peak_above_idle_mb": round((peak - idle) / 1024, 1),
        "meets_rss_target": (peak - idle) / 1024 <= 200,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,500", help="blob sizes in MB, comma separated")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--dir", default=None, help="where the stores live (default: the system temp dir)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the best counts")
    args = parser.parse_args()
    RUNS["repeats"] = args.repeats
    sizes = [int(s) * MB for s in args.sizes.split(",")]
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "chunk_size": CHUNK_SIZE,
        "target_ratio": TARGET,
        "repeats": args.repeats,
        "store_dir": args.dir or tempfile.gettempdir(),
        "raw": [],
        "stores": [],
    }
    with tempfile.TemporaryDirectory(prefix="tclearn-bench-vault-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        for size in sizes:
            raw = {
                "sha256": rate(size, lambda s=size: raw_sha256(s)),
                "aesgcm": rate(size, lambda s=size: raw_aesgcm(s)),
                "file_write": rate(size, lambda s=size: raw_write(s, workdir / "raw.bin")),
            }
            report["raw"].append({"size_mb": size // MB, **{f"{k}_mb_s": v for k, v in raw.items()}})
            report["stores"].append(bench_size(size, workdir))
        # the same again with the allocator as the vault service and sites set it (glibc keeps freed buffers)
        report["buffers_kept"] = keep_blob_buffers()
        report["stores_buffers_kept"] = [bench_size(size, workdir) for size in sizes]
        largest = max(sizes)
        report["service"] = bench_service(largest, workdir, raw_sha256(largest))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
