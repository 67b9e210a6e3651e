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


__all__ = ["atomic_file", "atomic_folder", "write_bytes_atomic", "write_text_atomic"]
