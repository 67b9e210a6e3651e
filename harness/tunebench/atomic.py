"""Writing files and folders so that a crash, a kill or a full disk never leaves half of one under
its real name: everything is written to a temporary name in the same folder, then renamed. This is
the one place that does it: leaderboards and reports, weights and checkpoints, the caches' entries.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: str | Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on leaving the block without an error it is
    renamed to `path`, which is then either its old self or complete. A failed write leaves no
    temporary file behind. `suffix` ends the temporary name (Keras wants `.weights.h5`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically (`atomic_file`)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (`atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextmanager
def atomic_folder(target: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `target` to fill; on leaving the block without an
    error it is renamed to `target`, so that a reader never sees a half-written folder.

    If `target` exists already (another process wrote the same entry first), the new folder is
    dropped, unless `replace`: then the old folder is moved aside and removed after the rename (a
    damaged entry being rebuilt). A failed block leaves nothing behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if replace and target.exists():
            aside = target.parent / f"{target.name}.old-{os.getpid()}"
            shutil.rmtree(aside, ignore_errors=True)
            os.rename(target, aside)
            os.rename(tmp, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            try:
                os.rename(tmp, target)
            except OSError:  # another process wrote the same entry first: theirs stands
                if not target.exists():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: What a cache entry's manifest is called: the size of each of its files and a checksum of samples of them.
MANIFEST = "entry.json"
SAMPLE_BLOCKS, SAMPLE_BYTES = 16, 65536


def sampled_digest(path: Path) -> str:
    """A checksum of a file from 16 blocks of 64 KiB spread over it, and its last block: it catches a
    file overwritten with garbage, without reading a cache entry of gigabytes whole on every load."""
    import hashlib

    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for i in range(SAMPLE_BLOCKS + 1):
            f.seek(min(size - min(size, SAMPLE_BYTES), i * size // SAMPLE_BLOCKS) if i < SAMPLE_BLOCKS
                   else max(0, size - SAMPLE_BYTES))
            digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()


def seal(folder: Path) -> None:
    """Write a cache entry's manifest (`MANIFEST`): each file's size and sampled checksum."""
    import json

    entries = {p.name: {"bytes": p.stat().st_size, "sha256_sampled": sampled_digest(p)}
               for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": entries}))


def damage(folder: Path) -> str | None:
    """Why a sealed cache entry cannot be trusted (a file missing, truncated or changed), or None.
    An entry of an earlier tunebench, without a manifest, is taken as it is."""
    import json

    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its manifest is unreadable ({type(exc).__name__})"
    for name, expected in files.items():
        path = folder / name
        try:
            if path.stat().st_size != expected["bytes"]:
                return f"{name} has {path.stat().st_size:,} bytes, not {expected['bytes']:,}"
            if sampled_digest(path) != expected["sha256_sampled"]:
                return f"{name} does not hold what was written"
        except OSError as exc:
            return f"{name}: {exc.strerror or exc}"
    return None


_NOTIFIED: set[str] = set()


def notice_once(key: str, message: str) -> None:
    """Print a notice about a cache on standard error, once per process and key."""
    import sys

    if key not in _NOTIFIED:
        _NOTIFIED.add(key)
        print(f"notice: {message}", file=sys.stderr, flush=True)


__all__ = ["MANIFEST", "atomic_file", "atomic_folder", "damage", "notice_once", "sampled_digest", "seal",
           "write_bytes_atomic", "write_text_atomic"]
