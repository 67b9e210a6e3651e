"""The dataset contract and the harness's one way of splitting data.

A dataset plugin loads arrays; the harness turns them into train/validation/test splits that are
stratified with the run's seed, identical for every strategy and model family given that seed, and
identified by a fingerprint (a hash of the indices) stored with each run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from abc import abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from tunebench import environment
from tunebench.atomic import notice_once
from tunebench.errors import OptionsError
from tunebench.images import cache_dir, image_size, take
from tunebench.options import Configurable, Option

if TYPE_CHECKING:
    import numpy as np

Task = Literal["multiclass", "multilabel"]


@dataclass(frozen=True)
class DataSpec:
    """What a model must fit: image shape (H, W, C), class names and the task kind."""

    input_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    task: Task = "multiclass"
    #: Images in the training split, once the harness has split the data (None before): model
    #: families size their default epochs and batch size by it.
    train_size: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class ArrayData:
    """Images as uint8 arrays (N, H, W, C) with integer labels (or multi-hot rows for multilabel).

    `x_test`/`y_test` are the dataset's own test set when it has one; otherwise the harness carves
    a test split out of `x`/`y`. Likewise `x_val`/`y_val` for a dataset with its own validation set.
    """

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Splits:
    """The train/validation/test splits one search works on."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    spec: DataSpec
    fingerprint: str
    sizes: dict[str, int] = field(default_factory=dict)
    #: Backend tensors holding the training and validation splits in accelerator memory
    #: (`x_train`, `y_train`, `x_val`, `y_val`), when the harness copied them there before the
    #: first trial (`training: data_on_device`). The host arrays above stay the reference.
    on_device: dict[str, Any] | None = None

    @property
    def train(self) -> tuple[Any, Any]:
        """`(x, y)` of the training split as `model.fit` should get it: the accelerator copy when
        there is one (no host-to-device copy per batch), otherwise the host arrays, which Keras
        streams with prefetching."""
        d = self.on_device
        return (d["x_train"], d["y_train"]) if d else (self.x_train, self.y_train)

    @property
    def validation(self) -> tuple[Any, Any]:
        """`(x, y)` of the validation split, for `model.fit(validation_data=...)`; see `train`."""
        d = self.on_device
        return (d["x_val"], d["y_val"]) if d else (self.x_val, self.y_val)

    def class_weights(self) -> dict[int, float]:
        """Class weights from the training split, for model families: balanced weights
        n / (k * count) for multiclass; negatives / positives per label for multilabel."""
        import numpy as np

        if self.spec.task != "multiclass":
            positives = self.y_train.sum(axis=0)
            n = len(self.y_train)
            return {i: float((n - p) / p) if p else 0.0 for i, p in enumerate(positives)}
        counts = np.bincount(self.y_train.astype(int), minlength=self.spec.num_classes)
        n, k = counts.sum(), len(counts)
        return {i: float(n / (k * c)) if c else 0.0 for i, c in enumerate(counts)}


class Dataset(Configurable):
    """The contract for a dataset plugin.

    Subclasses set `name`, `task` and `options_schema`, and implement `spec` and `load`. Every
    dataset also accepts the split options `validation`, `test` and `limit`.
    """

    task: ClassVar[Task] = "multiclass"
    common_options: ClassVar[dict[str, Option]] = {
        "validation": Option(float, 0.15, "fraction of the training pool held out for validation",
                             minimum=0.01, maximum=0.9),
        "test": Option(float, 0.15, "fraction held out for test when the dataset has no test set",
                       minimum=0.01, maximum=0.9),
        "limit": Option(int, None, "stratified subsample of the training pool to this many images",
                        minimum=10),
    }

    @property
    @abstractmethod
    def spec(self) -> DataSpec:
        """Input shape, class names and task, known without loading the images."""

    def check(self) -> list[str]:
        """Problems that would stop loading (missing files...), found before any search starts."""
        return []

    @abstractmethod
    def load(self) -> ArrayData:
        """Load all images as uint8 arrays. The harness calls it through `cached_load`: once per
        suite for the same plugin, version and options (see `cache_key`)."""

    #: Whether the harness may keep this dataset's loaded arrays (in the process, and on disk when
    #: loading is slow). A dataset whose `load()` draws new data each time sets it False.
    cacheable: ClassVar[bool] = True
    #: The version of the package that registered the plugin (set when the registry instantiates it).
    plugin_version: str = ""

    def cache_key(self) -> str | None:
        """What identifies this dataset's loaded arrays: the plugin, its package's version, the
        options that shape loading (not the split options), and the size and modification time
        of every option that names a file or folder. None: never cached."""
        if not self.cacheable:
            return None
        options = {k: v for k, v in sorted(self.options.items()) if k not in self.common_options}
        stamps = {}
        for k, v in options.items():
            if isinstance(v, str) and v and os.path.exists(v):
                st = os.stat(v)
                stamps[k] = [os.path.abspath(v), st.st_size, st.st_mtime_ns]
        blob = json.dumps([self.name, type(self).__module__, type(self).__qualname__, self.plugin_version,
                           options, stamps, LOAD_CACHE_FORMAT], default=str, sort_keys=True)
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"

    def cached_load(self) -> ArrayData:
        """`load()`, once per suite: the arrays are kept in this process (a warm worker's next
        search gets them at once), and when loading took at least `DISK_CACHE_MIN_S` they are
        written to the cache folder (`$TUNEBENCH_CACHE/datasets`) and memory-mapped by later
        processes (the other lanes, another worker, the next suite). `notes["load_cache"]` says
        which: `memory`, `disk`, or absent when `load()` ran."""
        key = self.cache_key()
        if key is None:
            return self.load()
        hit = _LOADED.get(key)
        if hit is not None:
            _LOADED.move_to_end(key)
            self.notes.update(hit[1], load_cache="memory")
            return hit[0]
        target = cache_dir() / "datasets" / key
        found, damaged = _read_arrays(target)
        if found is not None:
            data, notes = found
            self.notes.update(notes, load_cache="disk")
        else:
            if damaged:
                notice_once(str(target), f"the dataset cache entry {target} is damaged ({damaged}); the dataset "
                                         f"is loaded again and the entry replaced")
            started = time.perf_counter()
            data = self.load()
            elapsed = time.perf_counter() - started
            notes = dict(self.notes)
            if elapsed >= DISK_CACHE_MIN_S and not _mapped(data):
                try:
                    _write_arrays(target, data, notes, replace=damaged is not None)
                except OSError as exc:  # no room for it, or no folder: the cache is an optimisation
                    notice_once(str(cache_dir()), f"the dataset cache {cache_dir()} cannot be written ({exc}); "
                                                  f"the dataset stays in memory")
        _LOADED[key] = (data, {k: v for k, v in notes.items() if k != "load_cache"})
        while len(_LOADED) > MEMORY_CACHE_ENTRIES:
            _LOADED.popitem(last=False)
        return data

    #: What loading noticed (e.g. `{"skipped": 3, "skipped_files": {...}}`); stored with the run.
    notes: dict[str, Any]

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.notes = {}
        held_out = self.options["validation"] + self.options["test"]
        if held_out >= 0.95:
            raise OptionsError(f"dataset '{self.name}' options are not valid:", [
                f"validation ({self.options['validation']:g}) + test ({self.options['test']:g}) = {held_out:g} "
                f"leaves {'no' if held_out >= 1 else 'almost no'} training set; keep their sum below 0.95"])

    def splits(self, seed: int) -> Splits:
        """Train/validation/test splits for `seed`: stratified, and the same in every process."""
        return split_arrays(self.cached_load(), self.spec, seed, validation=self.options["validation"],
                            test=self.options["test"], limit=self.options["limit"])


#: Loaded datasets kept in this process, most recently used last (by `Dataset.cache_key`).
_LOADED: OrderedDict[str, tuple[ArrayData, dict[str, Any]]] = OrderedDict()
#: How many loaded datasets a process keeps (a suite runs one dataset's searches one after another).
MEMORY_CACHE_ENTRIES = 1
#: A `load()` at least this slow is written to the disk cache for later processes to map.
DISK_CACHE_MIN_S = environment.number("TUNEBENCH_LOAD_CACHE_MIN_S")
LOAD_CACHE_FORMAT = 1
_FIELDS = ("x", "y", "x_test", "y_test", "x_val", "y_val")


def _mapped(data: ArrayData) -> bool:
    """Whether the images are mapped from a cache file already (the decoded-image cache)."""
    return getattr(data.x, "_mmap", None) is not None


def _write_arrays(target: Path, data: ArrayData, notes: dict[str, Any], *, replace: bool = False) -> None:
    """Write one entry atomically, sealed with its manifest: a temporary folder renamed into place
    (the first rename wins; a damaged entry is `replace`d)."""
    import numpy as np

    from tunebench.atomic import atomic_folder, seal

    if target.exists() and not replace:
        return
    try:
        with atomic_folder(target, replace=replace) as tmp:
            for name in _FIELDS:
                value = getattr(data, name)
                if value is not None:
                    np.save(tmp / f"{name}.npy", np.asarray(value), allow_pickle=False)
            (tmp / "notes.json").write_text(json.dumps(notes, default=str))
            seal(tmp)
    except (OSError, ValueError) as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from None


class SizedDataset(Dataset):
    """A dataset with a `size` option (64 or [height, width]), checked when its options are: a suite
    reports a bad size against the dataset, before any model family is paired with its images."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        try:
            image_size(self.options["size"])
        except ValueError as exc:
            raise OptionsError(f"dataset '{self.name}' options are not valid:", [str(exc)]) from None


def _read_arrays(target: Path) -> tuple[tuple[ArrayData, dict[str, Any]] | None, str | None]:
    """A cache entry (images memory-mapped) and its notes; or None and why it is damaged (None when
    there is simply no entry)."""
    import numpy as np

    from tunebench.atomic import damage

    if not target.is_dir():
        return None, None
    why = damage(target)
    if why is not None:
        return None, why
    try:
        notes = json.loads((target / "notes.json").read_text())
        arrays: dict[str, Any] = {
            name: (np.load(target / f"{name}.npy", mmap_mode="r" if name.startswith("x") else None)
                   if (target / f"{name}.npy").is_file() else None) for name in _FIELDS}
        return (ArrayData(**arrays), notes), None
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def split_arrays(data: ArrayData, spec: DataSpec, seed: int, *, validation: float = 0.15,
                 test: float = 0.15, limit: int | None = None) -> Splits:
    """Stratified train/validation/test splits of `data` for `seed`, with their fingerprint.

    A dataset's own test set is kept as is; otherwise `test` of the pool is held out. Multilabel
    data is stratified on its rarest positive label per row (an approximation of iterative
    stratification). Classes too small to stratify fall back to a plain seeded shuffle.
    """
    import numpy as np

    n = len(data.x)
    strata = _strata(data.y, spec.task)
    pool = np.arange(n)
    if limit is not None and limit < n:
        pool, _ = _split(pool, strata, train_size=limit, seed=seed)
    own_val = data.x_val is not None
    if data.x_test is not None:
        test_idx = np.arange(len(data.x_test))
        if own_val:
            train_idx, val_idx = pool, np.arange(len(data.x_val))  # type: ignore[arg-type]
        else:
            train_idx, val_idx = _split(pool, strata[pool], test_size=validation, seed=seed)
        own_test = True
    else:
        rest, test_idx = _split(pool, strata[pool], test_size=test, seed=seed)
        val_share = validation / (1.0 - test)
        train_idx, val_idx = _split(rest, strata[rest], test_size=val_share, seed=seed + 1)
        own_test = False
    digest = hashlib.sha256()
    for part in (train_idx, val_idx, test_idx):
        digest.update(np.ascontiguousarray(np.sort(part), dtype=np.int64).tobytes())
        digest.update(b"|")
    digest.update(b"own-test" if own_test else b"carved-test")
    digest.update(b"own-val" if own_val and own_test else b"carved-val")
    # `take` copies rows out of arrays mapped from the decoded-image cache a chunk at a time, so
    # that the splits are the only full copy in memory; own test / validation sets are copied too
    # (nothing mapped leaves this function)
    x_test = _in_memory(data.x_test) if own_test else take(data.x, test_idx)
    y_test = data.y_test if own_test else data.y[test_idx]
    x_val, y_val = ((_in_memory(data.x_val), data.y_val) if own_val and own_test
                    else (take(data.x, val_idx), data.y[val_idx]))
    return Splits(
        x_train=take(data.x, train_idx), y_train=data.y[train_idx],
        x_val=x_val, y_val=y_val,  # type: ignore[arg-type]
        x_test=x_test, y_test=y_test,  # type: ignore[arg-type]
        spec=dataclasses.replace(spec, train_size=len(train_idx)), fingerprint=digest.hexdigest()[:16],
        sizes={"train": len(train_idx), "validation": len(val_idx), "test": len(test_idx)},
    )


def _in_memory(x: Any) -> Any:
    """`x` itself, or a copy in memory when it is mapped from the decoded-image cache."""
    import numpy as np

    return take(x, np.arange(len(x))) if isinstance(x, np.memmap) else x


def _strata(y: np.ndarray, task: Task) -> np.ndarray:
    import numpy as np

    if task == "multiclass":
        return np.asarray(y).astype(np.int64)
    y = np.asarray(y)
    freq = y.sum(axis=0)
    rarest = np.where(y > 0, freq[None, :], np.inf).argmin(axis=1)
    return np.where(y.sum(axis=1) > 0, rarest, -1)


def _split(idx: np.ndarray, strata: np.ndarray, *, seed: int, test_size: float | None = None,
           train_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    try:
        a, b = train_test_split(idx, test_size=test_size, train_size=train_size, random_state=seed,
                                stratify=strata)
    except ValueError:  # a class with a single member cannot be stratified
        a, b = train_test_split(idx, test_size=test_size, train_size=train_size, random_state=seed)
    return a, b
