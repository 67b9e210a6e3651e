"""Images listed in a CSV file with their label, or several labels (a multilabel task).

```csv
path,label
posters/tt0111161.jpg,Drama
posters/tt0068646.jpg,Crime|Drama
```

A row with several labels (joined by `label_separator`) makes the dataset multilabel, as in the
movie-poster experiments; `multilabel: true` forces it. Paths are relative to `root` (default: the
CSV's folder). Missing or unreadable images are skipped, counted and reported.
"""

from __future__ import annotations

import csv
import os
from functools import cached_property
from pathlib import Path

from tunebench import ArrayData, DataError, DataSpec, Option, hookimpl, image_size, load_images, readable
from tunebench.plugins.datasets.image_folder import SizedDataset, _unset_hint


class CSVManifest(SizedDataset):
    """Images listed in a CSV with one label or several per row (multilabel, e.g. movie posters)."""

    name = "csv_manifest"
    options_schema = {
        "path": Option(str, None, "the CSV file", required=True),
        "root": Option(str, None, "folder the image paths are relative to (default: the CSV's folder)"),
        "path_column": Option(str, "path", "column holding the image path"),
        "label_column": Option(str, "label", "column holding the label(s)"),
        "label_separator": Option(str, "|", "separator between several labels in one cell"),
        "delimiter": Option(str, ",", "the CSV's field delimiter"),
        "multilabel": Option(bool, None, "force the task kind (default: multilabel if any row has several labels)"),
        "classes": Option(list, None, "the class names, in order (default: every label found, sorted)"),
        "size": Option((int, list), 64, "image size after resizing: 64 or [height, width]"),
        "color_mode": Option(str, "rgb", "rgb or grayscale", choices=("rgb", "grayscale")),
        "cache": Option(bool, True, "cache decoded images on disk"),
        "encoding": Option(str, "utf-8", "the CSV's text encoding, e.g. latin-1 (a UTF-8 byte-order mark is fine)"),
    }

    @property
    def csv_path(self) -> Path:
        return Path(os.path.expandvars(self.options["path"])).expanduser()

    @property
    def root(self) -> Path:
        return (Path(os.path.expandvars(self.options["root"])).expanduser() if self.options["root"]
                else self.csv_path.parent)

    @cached_property
    def rows(self) -> list[tuple[str, list[str]]]:
        """(path, labels) of every row."""
        return [(path, labels) for path, labels in self._read()]

    def _text(self) -> str:
        """The CSV's text, in its `encoding` (a UTF-8 byte-order mark is dropped)."""
        data = self.csv_path.read_bytes()
        encoding = self.options["encoding"]
        if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
            encoding = "utf-8-sig"
        try:
            return data.decode(encoding)
        except LookupError:
            raise DataError(f"{self.csv_path}: unknown encoding {self.options['encoding']!r} (option `encoding`, "
                            f"e.g. utf-8 or latin-1)") from None
        except UnicodeDecodeError as exc:
            guess = "latin-1" if encoding == "utf-8-sig" else "utf-8"
            raise DataError(f"{self.csv_path} is not {self.options['encoding'].upper()} (byte 0x{data[exc.start]:02x} "
                            f"at position {exc.start}): set `encoding: {guess}` (or the file's own encoding) "
                            f"for this dataset") from None

    def _read(self) -> list[tuple[str, list[str]]]:
        import io

        reader = csv.DictReader(io.StringIO(self._text(), newline=""), delimiter=self.options["delimiter"])
        missing = [c for c in (self.options["path_column"], self.options["label_column"])
                   if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{self.csv_path} has no column {', '.join(missing)} (columns: "
                            f"{', '.join(reader.fieldnames or [])}); set path_column / label_column")
        sep = self.options["label_separator"]
        return [(row[self.options["path_column"]],
                 [v.strip() for v in (row[self.options["label_column"]] or "").split(sep) if v.strip()])
                for row in reader]

    @property
    def is_multilabel(self) -> bool:
        if self.options["multilabel"] is not None:
            return self.options["multilabel"]
        return any(len(labels) > 1 for _, labels in self.rows)

    @property
    def spec(self) -> DataSpec:
        names = self.options["classes"] or sorted({label for _, labels in self.rows for label in labels})
        h, w = image_size(self.options["size"])
        return DataSpec((h, w, 1 if self.options["color_mode"] == "grayscale" else 3), tuple(map(str, names)),
                        "multilabel" if self.is_multilabel else "multiclass")

    def check(self) -> list[str]:
        if not self.csv_path.is_file():
            return [f"CSV file {self.csv_path} does not exist (option `path`)" + _unset_hint(self.options["path"])]
        try:
            rows = self.rows
        except DataError as exc:
            return [str(exc)]
        problems = []
        if not rows:
            problems.append(f"{self.csv_path} lists no images")
        classes = self.spec.class_names
        unknown = sorted({label for _, labels in rows for label in labels} - set(classes))
        if unknown:
            problems.append(f"labels not among the classes: {', '.join(unknown[:20])} (option `classes`)")
        unlabelled = sum(1 for _, labels in rows if not labels)
        if unlabelled:
            problems.append(f"{unlabelled} row(s) have no label")
        if not self.is_multilabel and len(classes) < 2:
            problems.append("a multiclass dataset needs at least two classes")
        present = [self.root / path for path, _ in rows if (self.root / path).is_file()]
        if rows and not present:
            problems.append(f"none of the images exists under {self.root} (option `root`), e.g. {rows[0][0]}")
        elif present:
            ok, errors = readable(present)
            if not ok:
                example = next(iter(errors.items()))
                problems.append(f"no readable image among {min(16, len(present))} tried (e.g. {example[0]}: "
                                f"{example[1]})")
        return problems

    def load(self) -> ArrayData:
        import numpy as np

        problems = self.check()
        if problems:
            raise DataError(f"csv_manifest {self.csv_path}: " + "; ".join(problems))
        index = {name: i for i, name in enumerate(self.spec.class_names)}
        decoded = load_images([self.root / p for p, _ in self.rows], image_size(self.options["size"]),
                              self.options["color_mode"], cache=self.options["cache"])
        if self.is_multilabel:
            y = np.zeros((len(self.rows), len(index)), np.float32)
            for i, (_, labels) in enumerate(self.rows):
                y[i, [index[label] for label in labels]] = 1.0
        else:
            y = np.array([index[labels[0]] for _, labels in self.rows], np.int64)
        if decoded.skipped:
            self.notes = {"skipped": len(decoded.skipped), "skipped_files": dict(list(decoded.skipped.items())[:50])}
        return ArrayData(decoded.x, y[decoded.kept])


@hookimpl
def tunebench_register_datasets(registry):
    registry.add(CSVManifest)
