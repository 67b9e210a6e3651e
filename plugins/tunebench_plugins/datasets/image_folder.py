"""Images in class sub-folders, including Tiny-ImageNet-200's layout.

Layouts (`layout: auto` detects them):
- `classes`: `PATH/<class>/*.jpg`; the harness splits it.
- `splits`: `PATH/train/<class>/...`, `PATH/val/<class>/...` (or `validation/`) and/or
  `PATH/test/<class>/...`: the folders' own splits are kept.
- `tiny_imagenet`: `PATH/train/<wnid>/images/*.JPEG` and `PATH/val/images/*.JPEG` labelled by
  `PATH/val/val_annotations.txt`; the labelled val set is the test set (Tiny-ImageNet's test images
  have no labels), and validation is carved from train.
Images are decoded once to `size` and `color_mode`, then cached; unreadable files are skipped,
counted and reported.
"""

from __future__ import annotations

import os
from pathlib import Path

from tunebench import (
    ArrayData,
    DataError,
    DataSpec,
    Option,
    SizedDataset,
    hookimpl,
    image_size,
    is_image,
    load_images,
    readable,
    unset_variable_hint,
)

LAYOUTS = ("auto", "classes", "splits", "tiny_imagenet")


class ImageFolder(SizedDataset):
    """Images in class sub-folders (cats/dogs style, a CIFAR JPEG tree, Tiny-ImageNet-200)."""

    name = "image_folder"
    options_schema = {
        "path": Option(str, None, "the dataset's root folder", required=True),
        "size": Option((int, list), 64, "image size after resizing: 64 or [height, width]"),
        "color_mode": Option(str, "rgb", "rgb or grayscale", choices=("rgb", "grayscale")),
        "layout": Option(str, "auto", "classes, splits (train/val/test folders), tiny_imagenet, or auto",
                         choices=LAYOUTS),
        "cache": Option(bool, True, "cache decoded images on disk ($TUNEBENCH_CACHE or ~/.cache/tunebench)"),
    }

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self._files: dict[str, list[tuple[str, str]]] | None = None

    @property
    def root(self) -> Path:
        return Path(os.path.expandvars(self.options["path"])).expanduser()

    # -- what is on disk --------------------------------------------------------------------------------
    def layout(self) -> str:
        if self.options["layout"] != "auto":
            return self.options["layout"]
        root = self.root
        if (root / "val" / "val_annotations.txt").is_file() and (root / "train").is_dir():
            return "tiny_imagenet"
        if (root / "train").is_dir() and any((root / d).is_dir() for d in ("val", "validation", "test")):
            return "splits"
        return "classes"

    def _split_dirs(self) -> dict[str, Path]:
        found = {"train": self.root / "train"}
        for name in ("val", "validation"):
            if (self.root / name).is_dir():
                found["val"] = self.root / name
                break
        if (self.root / "test").is_dir():
            found["test"] = self.root / "test"
        return found

    def _class_folders(self, folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _images(self, folder: Path) -> list[str]:
        """The image files under `folder`, as strings, in path order (os.walk and plain strings:
        Tiny-ImageNet's 100,000 in well under a second; `Path` objects cost seconds at that count)."""
        found: list[str] = []
        for dirpath, _, filenames in os.walk(folder):
            found.extend(os.path.join(dirpath, f) for f in filenames if is_image(f))
        found.sort(key=lambda p: p.split(os.sep))  # the order of sorted Paths, component by component
        return found

    def files(self) -> dict[str, list[tuple[str, str]]]:
        """(image path, class name) per split: `all`, or `train`/`val`/`test` (listed once per instance)."""
        if self._files is None:
            self._files = self._list_files()
        return self._files

    def _list_files(self) -> dict[str, list[tuple[str, str]]]:
        layout = self.layout()
        if layout == "classes":
            return {"all": [(img, c.name) for c in self._class_folders(self.root) for img in self._images(c)]}
        if layout == "splits":
            return {split: [(img, c.name) for c in self._class_folders(folder) for img in self._images(c)]
                    for split, folder in self._split_dirs().items()}
        train = [(img, c.name) for c in self._class_folders(self.root / "train")
                 for img in self._images(c / "images" if (c / "images").is_dir() else c)]
        test = []
        for line in (self.root / "val" / "val_annotations.txt").read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                test.append((os.path.join(self.root, "val", "images", parts[0]), parts[1]))
        return {"train": train, "test": test}

    # -- the contract ------------------------------------------------------------------------------------
    def check(self) -> list[str]:
        root = self.root
        if not root.is_dir():
            return [f"folder {root} does not exist (option `path`)" + unset_variable_hint(self.options["path"])]
        layout = self.layout()
        problems = []
        if layout == "tiny_imagenet":
            class_root = root / "train"
        elif layout == "splits":
            class_root = self._split_dirs()["train"]
        else:
            class_root = root
        classes = self._class_folders(class_root)
        if len(classes) < 2:
            problems.append(f"{class_root} needs at least two class sub-folders; found {len(classes)}")
        files = self.files()
        training = files.get("all") or files.get("train") or []
        counts = {c.name: 0 for c in classes}
        for _, label in training:
            counts[label] = counts.get(label, 0) + 1
        for c in classes:
            if not counts[c.name]:
                folder = c / "images" if layout == "tiny_imagenet" and (c / "images").is_dir() else c
                problems.append(f"class '{c.name}' has no images ({folder})")
        if not problems:
            names = {c.name for c in classes}
            for split, items in files.items():
                unknown = sorted({label for _, label in items} - names)
                if unknown:
                    problems.append(f"the {split} split has labels that are not training classes: "
                                    f"{', '.join(unknown[:10])}")
            first = next(iter(files.values()), [])
            ok, errors = readable([p for p, _ in first])
            if first and not ok:
                example = next(iter(errors.items()))
                problems.append(f"no readable image among {min(16, len(first))} tried across {root} (e.g. "
                                f"{example[0]}: {example[1]}); are these image files?")
        return problems

    @property
    def spec(self) -> DataSpec:
        layout = self.layout()
        class_root = self.root if layout == "classes" else self.root / "train"
        names = tuple(c.name for c in self._class_folders(class_root)) if class_root.is_dir() else ()
        h, w = image_size(self.options["size"])
        return DataSpec((h, w, 1 if self.options["color_mode"] == "grayscale" else 3), names)

    def load(self) -> ArrayData:
        import numpy as np

        problems = self.check()
        if problems:
            raise DataError(f"image_folder {self.root}: " + "; ".join(problems))
        index = {name: i for i, name in enumerate(self.spec.class_names)}
        size = image_size(self.options["size"])
        arrays, skipped = {}, {}
        for split, items in self.files().items():
            decoded = load_images([p for p, _ in items], size, self.options["color_mode"],
                                  cache=self.options["cache"])
            labels = np.array([index[label] for _, label in items], dtype=np.int64)[decoded.kept]
            arrays[split] = (decoded.x, labels)
            skipped.update(decoded.skipped)
        self.notes = {"skipped": len(skipped), "skipped_files": dict(list(skipped.items())[:50])} if skipped else {}
        if "all" in arrays:
            return ArrayData(*arrays["all"])
        x, y = arrays["train"]
        test = arrays.get("test")
        val = arrays.get("val")
        if test is None and val is not None:  # no test folder: pool both, the harness carves val and test
            return ArrayData(np.concatenate([x, val[0]]), np.concatenate([y, val[1]]))
        return ArrayData(x, y, *(test or (None, None)), *(val or (None, None)))


@hookimpl
def tunebench_register_datasets(registry):
    registry.add(ImageFolder)
