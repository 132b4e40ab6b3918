"""A fingerprint of a training set: file names, sizes and content hashes — never the data itself.

The digest goes into a model's metadata so that an auditor can later check which files (by hash) a member
trained on, without the files ever leaving the hospital.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tclearn.errors import DataError, NotFoundError
from tclearn.learning.coding import Compression

CHUNK = 1 << 20


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative to the manifest root, with forward slashes
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    entries: tuple[ManifestEntry, ...]
    # what a training folder's manifest declares beside its files (`tclearn.coalition.build.training_manifest`):
    committee_chosen: int = 0  # images the coalition's committee chose for annotation (`tclearn.learning.active`)
    compression: Compression | None = None  # the images' JPEG 2000 coding (`tclearn.learning.coding`), if any

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON of the entries; independent of file order and location."""
        canonical = json.dumps(
            [[e.path, e.size, e.sha256] for e in self.entries], separators=(",", ":"), sort_keys=True
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def summary(self) -> dict[str, Any]:
        """What model metadata records: the digest, the file count and the byte count."""
        return {"manifest_sha256": self.digest, "files": len(self.entries), "bytes": self.total_bytes}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "entries": [e.__dict__ for e in self.entries]}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(root: str | Path) -> Manifest:
    """The manifest of every file under `root` (recursively; hidden files skipped)."""
    root = Path(root)
    if not root.exists():
        raise NotFoundError(f"data path {str(root)!r} does not exist")
    base = root.parent if root.is_file() else root
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    files = [f for f in files if not any(part.startswith(".") for part in f.relative_to(base).parts)]
    if not files:
        raise DataError(f"data folder {str(root)!r} holds no files to fingerprint")
    return Manifest(
        tuple(ManifestEntry(f.relative_to(base).as_posix(), f.stat().st_size, file_sha256(f)) for f in files)
    )
