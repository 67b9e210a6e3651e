"""Decoding image files into uint8 arrays, once: helpers for dataset plugins.

`load_images` decodes a list of files to one size and colour mode, skips (and reports) the ones
that cannot be read, and caches the result on disk. The cache is keyed by the file list (path,
size, modification time), the target size and the colour mode, so later searches and trials load
an array instead of decoding again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CACHE_ENV = "TUNEBENCH_CACHE"
DATA_ENV = "TUNEBENCH_DATA"


def data_dir() -> Path | None:
    """The user's data directory (`--data-dir` or `$TUNEBENCH_DATA`), if set."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def unset_variable_hint(path: str) -> str:
    """For a message about a path option that does not exist: say that an environment variable in
    it is not set (`${TUNEBENCH_DATA}/cifar10` without `--data-dir`), else nothing."""
    expanded = os.path.expandvars(path)
    return "; an environment variable in it is not set (TUNEBENCH_DATA: use --data-dir)" if "$" in expanded else ""


def cache_dir() -> Path:
    """Where decoded images are cached: `$TUNEBENCH_CACHE`, else `~/.cache/tunebench`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tunebench").expanduser()


@dataclass
class Decoded:
    """Decoded images: `x[i]` is `paths[kept[i]]`; `skipped` maps unreadable paths to errors."""

    x: np.ndarray
    kept: np.ndarray
    skipped: dict[str, str] = field(default_factory=dict)
    from_cache: bool = False


def image_size(value: Any) -> tuple[int, int]:
    """An image size option, `64` or `[64, 48]`, as (height, width).

    Raises:
        ValueError: with what a size must look like.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        parts = [value, value]
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        parts = list(value)
    else:
        raise ValueError(f"size must be a number of pixels (64) or [height, width] ([64, 48]), not {value!r}")
    if min(parts) < 1 or max(parts) > 4096:
        raise ValueError(f"size must be at least 1 and at most 4096 pixels a side, not {value!r}")
    return int(parts[0]), int(parts[1])


def readable(paths: Sequence[str | Path], sample: int = 16) -> tuple[int, dict[str, str]]:
    """How many of up to `sample` files, spread over `paths`, decode as images; and why the others did
    not. A cheap check before anything trains that a folder of images is not all broken."""
    from PIL import Image

    step = max(1, len(paths) // sample)
    ok, errors = 0, {}
    for p in list(paths)[::step][:sample]:
        try:
            with Image.open(p) as image:
                image.load()
            ok += 1
        except Exception as exc:  # PIL raises many kinds for broken files
            errors[str(p)] = f"{type(exc).__name__}: {exc}"
    return ok, errors


def is_image(path: str | Path) -> bool:
    """Whether a file's extension is one of the image formats tunebench decodes (`IMAGE_EXTENSIONS`)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def load_images(paths: Sequence[str | Path], size: tuple[int, int], color_mode: str = "rgb", *,
                cache: bool = True, workers: int | None = None) -> Decoded:
    """Decode `paths` to uint8 arrays of `size` (height, width) in `color_mode` (rgb or grayscale).

    Unreadable or corrupt files are skipped and listed in `Decoded.skipped`; the rest are resized
    (bilinear) and converted, whatever their original size or mode. With `cache`, the array is
    written once to the decoded-image cache (`x.npy` in a folder named by the cache key) and
    returned memory-mapped from there, read-only: later loads cost a file mapping, and `take`
    copies rows out of it without keeping the whole file in the process's memory.
    """
    from tunebench.atomic import damage, notice_once

    files = [os.fspath(p) for p in paths]
    key = _cache_key(files, size, color_mode)
    target = cache_dir() / "images" / key
    damaged = None
    if cache and target.is_dir():
        damaged = damage(target)
        if damaged is None:
            try:
                return _read_cached(target)
            except (OSError, ValueError, KeyError) as exc:  # an entry of an earlier version, damaged
                damaged = f"{type(exc).__name__}: {exc}"
        notice_once(str(target), f"the decoded-image cache entry {target} is damaged ({damaged}); the images are "
                                 f"decoded again and the entry replaced")
    decoded = _decode_all(files, size, color_mode, workers)
    if not cache:
        return decoded
    try:
        _write_cached(target, decoded, replace=damaged is not None)
    except OSError as exc:  # a cache is an optimisation: an unwritable one is skipped
        notice_once(str(cache_dir()), f"the decoded-image cache {cache_dir()} cannot be written "
                                      f"({exc.strerror or exc}); images stay in memory (set $TUNEBENCH_CACHE "
                                      f"to a writable folder to cache them)")
        return decoded
    del decoded  # the mapped file holds the images from here on
    return _read_cached(target, from_cache=False)


def _decode_all(files: list[str], size: tuple[int, int], color_mode: str, workers: int | None) -> Decoded:
    import numpy as np

    channels = 1 if color_mode == "grayscale" else 3
    out = np.zeros((len(files), size[0], size[1], channels), np.uint8)
    ok = np.zeros(len(files), bool)
    skipped: dict[str, str] = {}

    def decode(i: int) -> None:
        try:
            out[i] = _decode(files[i], size, color_mode)
            ok[i] = True
        except Exception as exc:  # PIL raises many kinds for broken files
            skipped[str(files[i])] = f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        list(pool.map(decode, range(len(files))))
    kept = np.flatnonzero(ok)
    # no copy when every file decoded (a copy of 110,000 64x64 images is another 1.3 GB at the peak)
    return Decoded(out if len(kept) == len(files) else out[kept], kept, dict(sorted(skipped.items())))


def _write_cached(target: Path, decoded: Decoded, *, replace: bool = False) -> None:
    """Write a cache entry atomically, sealed with its manifest (sizes and sampled checksums): a
    temporary folder renamed into place, so that concurrent searches never read a half-written entry
    (the first rename wins; the others are dropped); a damaged entry is `replace`d."""
    import numpy as np

    from tunebench.atomic import atomic_folder, seal

    with atomic_folder(target, replace=replace) as tmp:
        np.save(tmp / "x.npy", decoded.x)
        np.save(tmp / "kept.npy", decoded.kept)
        (tmp / "skipped.json").write_text(json.dumps(decoded.skipped))
        seal(tmp)


def _read_cached(target: Path, *, from_cache: bool = True) -> Decoded:
    import numpy as np

    x = np.load(target / "x.npy", mmap_mode="r")
    kept = np.load(target / "kept.npy")
    skipped = json.loads((target / "skipped.json").read_text())
    return Decoded(x, kept, skipped, from_cache=from_cache)


#: Rows copied at a time out of a memory-mapped array by `take`, in bytes.
TAKE_CHUNK_BYTES = 64 * 2**20


def take(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`x[index]` as an array in memory. For an array mapped from the decoded-image cache, the rows
    are read from the file in file order, a block at a time, into the result: the peak is the copy
    and one block, and nothing is faulted in through the mapping (page faults made that the
    slowest part of a cached load)."""
    import numpy as np

    index = np.asarray(index, dtype=np.int64)
    source = _mapped_file(x)
    if source is None:
        return np.asarray(x[index])
    path, offset = source
    out = np.empty((len(index), *x.shape[1:]), x.dtype)
    if not len(index):
        return out
    order = np.argsort(index, kind="stable")
    wanted = index[order]
    row = int(np.prod(x.shape[1:])) * x.dtype.itemsize
    step = max(1, TAKE_CHUNK_BYTES // max(1, row))
    block = np.empty((step, *x.shape[1:]), x.dtype)
    with open(path, "rb", buffering=0) as f:
        lo = 0
        while lo < len(wanted):
            first = int(wanted[lo])
            hi = int(np.searchsorted(wanted, first + step, side="left"))
            last = int(wanted[hi - 1]) + 1
            view = memoryview(block[: last - first]).cast("B")  # type: ignore[arg-type]
            f.seek(offset + first * row)
            done = 0
            while done < len(view):
                n = f.readinto(view[done:])
                if not n:
                    raise OSError(f"{path} ended early: a damaged decoded-image cache entry")
                done += n
            out[order[lo:hi]] = block[wanted[lo:hi] - first]
            lo = hi
    return out


def _mapped_file(x: Any) -> tuple[str, int] | None:
    """(file, byte offset of row 0) of a whole-file `np.memmap` of a `.npy` file, else None."""
    import numpy as np

    filename = getattr(x, "filename", None)
    if not isinstance(x, np.memmap) or filename is None or not x.flags.c_contiguous:
        return None
    row = int(np.prod(x.shape[1:])) * x.dtype.itemsize
    try:
        size = os.path.getsize(filename)
    except OSError:
        return None
    if x.offset + len(x) * row != size:  # a slice of the mapping: its offset is not row 0's
        return None
    return str(filename), int(x.offset)


def _decode(path: str, size: tuple[int, int], color_mode: str) -> np.ndarray:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        image = image.convert("L" if color_mode == "grayscale" else "RGB")
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _cache_key(paths: Sequence[str], size: tuple[int, int], color_mode: str) -> str:
    """The cache key of a file list: each file's absolute path, size and modification time, the
    target size and the colour mode (`os.stat` on strings: 110,000 files in about a second)."""
    digest = hashlib.sha256(json.dumps([list(size), color_mode, "v2"]).encode())
    for p in paths:
        name = os.path.abspath(p)
        try:
            st = os.stat(name)
            digest.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name}|missing\n".encode())
    return digest.hexdigest()[:32]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), plain or gzipped."""
    import gzip

    import numpy as np

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file")
    dtypes = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    dtype, ndim = np.dtype(dtypes[data[2]]), data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {shape}, got {array.size} values")
    reshaped: np.ndarray = array.reshape(shape)
    return reshaped
