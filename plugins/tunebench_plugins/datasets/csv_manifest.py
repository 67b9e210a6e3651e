"""Images listed in a CSV file with their label, or several labels (a multilabel task).

```csv
path,label
posters/tt0111161.jpg,Drama
posters/tt0068646.jpg,Crime|Drama
```

Labels come from one column, joined by `label_separator` or written as a list (`['Crime', 'Drama']`,
as pandas writes one), or from one-hot columns (`label_columns`: their names, or `auto` for every
column holding only 0 and 1). A row with several labels makes the dataset multilabel, as in the
movie-poster experiments; `multilabel: true` forces it. `first_label_only`, `top_classes` and
`drop_classes` derive a smaller task from the same file (the posters' 7-genre multiclass task is
`first_label_only: true, top_classes: 7`). When the path column holds an id rather than a path,
`path_template` makes the path (`images/{}.jpg`). Paths are relative to `root` (default: the
CSV's folder).

Nothing is dropped silently: a path listed twice (the first row is kept), a row left with no label,
a listed image that is missing or unreadable, and an image in the listed folders that no row names
are counted in the dataset's notes, which the run records and prints.
"""

from __future__ import annotations

import ast
import csv
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tunebench import (
    ArrayData,
    DataError,
    DataSpec,
    Option,
    OptionsError,
    SizedDataset,
    hookimpl,
    image_size,
    is_image,
    load_images,
    readable,
    unset_variable_hint,
)


@dataclass
class Manifest:
    """The CSV's rows after duplicates, dropped classes and the task's filters, with what was dropped."""

    rows: list[tuple[str, list[str]]]
    read: int = 0
    listed: list[str] = field(default_factory=list)  # every path the file names, once, in order
    duplicates: list[str] = field(default_factory=list)  # paths listed more than once (first row kept)
    conflicting: list[str] = field(default_factory=list)  # ... whose later rows had other labels
    unlabelled: list[str] = field(default_factory=list)  # rows with no label in the file
    outside: list[str] = field(default_factory=list)  # rows whose labels were all filtered out

    def counts(self) -> dict[str, int]:
        return {"rows_read": self.read, "rows_used": len(self.rows), "duplicated_paths": len(self.duplicates),
                "duplicates_with_other_labels": len(self.conflicting), "rows_without_label": len(self.unlabelled),
                "rows_outside_the_classes": len(self.outside)}


class CSVManifest(SizedDataset):
    """Images listed in a CSV with one label or several per row (multilabel, e.g. movie posters)."""

    name = "csv_manifest"
    options_schema = {
        "path": Option(str, None, "the CSV file", required=True),
        "root": Option(str, None, "folder the image paths are relative to (default: the CSV's folder)"),
        "path_column": Option(str, "path", "column holding the image path (or an id, with path_template)"),
        "path_template": Option(str, None, "makes the path from the path column, e.g. images/{}.jpg for an Id column"),
        "label_column": Option(str, "label", "column holding the label(s): joined by label_separator, or a list"),
        "label_separator": Option(str, "|", "separator between several labels in one cell"),
        "label_columns": Option((list, str), None, "one-hot label columns (0/1): their names, or auto for every "
                                "0/1 column; replaces label_column"),
        "label_values": Option(list, None, "the [positive, negative] cell values of one-hot label columns, when they "
                               "are not 1 and 0, e.g. [yes, no] or [true, false]"),
        "delimiter": Option(str, ",", "the CSV's field delimiter"),
        "multilabel": Option(bool, None, "force the task kind (default: multilabel if any row has several labels)"),
        "first_label_only": Option(bool, False, "keep each row's first label: a multiclass task from a label list"),
        "drop_classes": Option(list, None, "labels to ignore, e.g. ['N/A']"),
        "top_classes": Option(int, None, "keep the N most frequent labels; rows left with none are dropped and "
                              "counted", minimum=2),
        "classes": Option(list, None, "the class names, in order (default: every label found, sorted)"),
        "duplicates": Option(str, "first", "a path listed twice: keep its first row, or stop with an error",
                             choices=("first", "error")),
        "size": Option((int, list), 64, "image size after resizing: 64 or [height, width]"),
        "color_mode": Option(str, "rgb", "rgb or grayscale", choices=("rgb", "grayscale")),
        "cache": Option(bool, True, "cache decoded images on disk"),
        "encoding": Option(str, "utf-8", "the CSV's text encoding, e.g. latin-1 (a UTF-8 byte-order mark is fine)"),
    }

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        problems = []
        template = self.options["path_template"]
        if template is not None and template.count("{}") != 1:
            problems.append(f"path_template must hold one '{{}}' for the path column's value, not {template!r}")
        if self.options["first_label_only"] and self.options["label_columns"] is not None:
            problems.append("first_label_only needs an ordered label column; one-hot label_columns have no order")
        columns = self.options["label_columns"]
        if isinstance(columns, str) and columns != "auto":
            problems.append(f"label_columns must be a list of column names or auto, not {columns!r}")
        values = self.options["label_values"]
        if values is not None and (len(values) != 2 or len({str(v).strip().lower() for v in values}) != 2):
            problems.append(f"label_values must be two different values, [positive, negative], not {values!r}")
        if problems:
            raise OptionsError(f"dataset '{self.name}' options are not valid:", problems)

    @property
    def csv_path(self) -> Path:
        return Path(os.path.expandvars(self.options["path"])).expanduser()

    @property
    def root(self) -> Path:
        return (Path(os.path.expandvars(self.options["root"])).expanduser() if self.options["root"]
                else self.csv_path.parent)

    @cached_property
    def manifest(self) -> Manifest:
        """The rows to use, (path, labels), and what was left out on the way."""
        return self._select(self._read())

    @property
    def rows(self) -> list[tuple[str, list[str]]]:
        """(path, labels) of every row used."""
        return self.manifest.rows

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
        """(path, labels) of every row of the file, in order."""
        reader = csv.DictReader(io.StringIO(self._text(), newline=""), delimiter=self.options["delimiter"])
        table = list(reader)
        fields = list(reader.fieldnames or [])
        path_column = self.options["path_column"]
        one_hot = self.options["label_columns"]
        if one_hot == "auto":
            one_hot = [c for c in fields if c != path_column and table
                       and all((row.get(c) or "").strip() in ("0", "1") for row in table)]
            if not one_hot:
                raise DataError(f"{self.csv_path} has no column holding only 0 and 1 (label_columns: auto); "
                                f"columns: {', '.join(fields)}")
        wanted = [path_column] + (list(one_hot) if one_hot is not None else [self.options["label_column"]])
        missing = [c for c in wanted if c not in fields]
        if missing:
            raise DataError(f"{self.csv_path} has no column {', '.join(missing)} (columns: "
                            f"{', '.join(fields)}); set path_column / label_column / label_columns")
        template = self.options["path_template"]
        rows = []
        for line, row in enumerate(table, start=2):
            path = (row[path_column] or "").strip()
            if template is not None:
                path = template.replace("{}", path)
            if one_hot is not None:
                labels = [c for c in one_hot if self._one_hot(row[c], c, line)]
            else:
                labels = self._labels(row[self.options["label_column"]] or "", line)
            rows.append((path, labels))
        return rows

    def _one_hot(self, cell: str | None, column: str, line: int) -> bool:
        """Whether a one-hot cell marks its label: 1 or 0 (1.0, 0.0; an empty cell is 0), or the
        declared `label_values`. Anything else is an error: read as "not 0", a `yes`/`no` column
        gave every row every label."""
        text = (cell or "").strip().lower()
        declared = self.options["label_values"]
        if declared is not None:
            positive, negative = (str(v).strip().lower() for v in declared)
            if text in (positive, negative) or text == "":
                return text == positive
        elif text in ("1", "1.0", "0", "0.0", ""):
            return text in ("1", "1.0")
        expected = f"{declared[0]} or {declared[1]}" if declared else "1 or 0"
        raise DataError(f"{self.csv_path}, line {line}: one-hot label column {column!r} holds {cell!r}, not "
                        f"{expected}. Declare what the column's values mean with label_values: [positive, "
                        f"negative] (e.g. [yes, no]), or list only 0/1 columns in label_columns")

    def _labels(self, cell: str, line: int) -> list[str]:
        """The labels in one cell: a list literal (`['Drama', 'Crime']`) or separated values."""
        text = cell.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise DataError(f"{self.csv_path}, line {line}: the label cell {text[:60]!r} looks like a list "
                                f"but cannot be read as one") from None
            if isinstance(value, (list, tuple)):
                return [str(v).strip() for v in value if str(v).strip()]
        return [v.strip() for v in text.split(self.options["label_separator"]) if v.strip()]

    def _select(self, rows: list[tuple[str, list[str]]]) -> Manifest:
        """Apply `duplicates`, `drop_classes`, `first_label_only` and `top_classes`, in that order."""
        out = Manifest(rows=[], read=len(rows))
        first: dict[str, list[str]] = {}
        kept: list[tuple[str, list[str]]] = []
        for path, labels in rows:
            if path in first:
                if path not in out.duplicates:
                    out.duplicates.append(path)
                if sorted(labels) != sorted(first[path]) and path not in out.conflicting:
                    out.conflicting.append(path)
                continue
            first[path] = labels
            kept.append((path, labels))
        out.listed = list(first)
        if out.duplicates and self.options["duplicates"] == "error":
            raise DataError(f"{self.csv_path} lists {len(out.duplicates)} path(s) more than once, e.g. "
                            f"{out.duplicates[0]} (duplicates: first keeps the first row)")
        drop = set(map(str, self.options["drop_classes"] or []))
        if self.options["first_label_only"]:
            kept = [(path, [label for label in labels if label not in drop][:1]) for path, labels in kept]
        else:
            kept = [(path, [label for label in labels if label not in drop]) for path, labels in kept]
        top = self.options["top_classes"]
        if top is not None:
            freq = Counter(label for _, labels in kept for label in labels)
            chosen = {label for label, _ in sorted(freq.items(), key=lambda item: (-item[1], item[0]))[:top]}
            kept = [(path, [label for label in labels if label in chosen]) for path, labels in kept]
        for (path, labels), (_, original) in zip(kept, [(p, first[p]) for p, _ in kept], strict=True):
            if labels:
                out.rows.append((path, labels))
            elif original:
                out.outside.append(path)
            else:
                out.unlabelled.append(path)
        return out

    def unlisted(self) -> list[Path]:
        """Images in the folders the CSV's rows point into that no row of the file names."""
        listed = {self.root / path for path in self.manifest.listed}
        folders = {p.parent for p in listed}
        return sorted(p for folder in folders if folder.is_dir()
                      for p in folder.iterdir() if p.is_file() and is_image(p) and p not in listed)

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
        if self.csv_path.is_dir():
            return [f"{self.csv_path} is a folder, not a CSV file (option `path`: the CSV's own path)"]
        if not self.csv_path.is_file():
            return [f"CSV file {self.csv_path} does not exist (option `path`)"
                    + unset_variable_hint(self.options["path"])]
        try:
            rows = self.rows
        except DataError as exc:
            return [str(exc)]
        problems = []
        if not rows:
            problems.append(f"{self.csv_path} has no row with a label to use ({self.manifest.read} rows read)")
        labels = {label for _, labels in rows for label in labels}
        every = sum(1 for _, row_labels in rows if set(row_labels) >= labels)
        if rows and len(labels) > 1 and every == len(rows):
            problems.append(f"{self.csv_path}: every one of the {len(rows)} rows has every label "
                            f"({', '.join(sorted(labels)[:10])}): there is nothing to learn and any model scores "
                            f"perfectly; check the label columns (and label_values)")
        classes = self.spec.class_names
        unknown = sorted({label for _, labels in rows for label in labels} - set(classes))
        if unknown:
            problems.append(f"labels not among the classes: {', '.join(unknown[:20])} (option `classes`)")
        if not self.is_multilabel and len(classes) < 2:
            problems.append("a multiclass dataset needs at least two classes")
        if not self.is_multilabel and any(len(labels) > 1 for _, labels in rows):
            problems.append("multilabel: false, but some rows have several labels (first_label_only: true keeps "
                            "the first)")
        present = [self.root / path for path, _ in rows if (self.root / path).is_file()]
        if rows and not present:
            problems.append(f"none of the images exists under {self.root} (option `root`, or path_template), "
                            f"e.g. {rows[0][0]}")
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
        self.notes = self._notes(decoded.skipped)
        return ArrayData(decoded.x, y[decoded.kept])

    def _notes(self, skipped: dict[str, str]) -> dict[str, Any]:
        """What was left out, for the run's record and the log: counts, a few examples each."""
        m = self.manifest
        unlisted = self.unlisted()
        counts = dict(m.counts(), images_skipped=len(skipped), images_without_row=len(unlisted))
        notes: dict[str, Any] = dict(counts)
        for key, items in (("duplicated_examples", m.duplicates), ("duplicates_with_other_labels_examples",
                           m.conflicting), ("rows_without_label_examples", m.unlabelled),
                           ("rows_outside_the_classes_examples", m.outside),
                           ("images_without_row_examples", [str(p) for p in unlisted])):
            if items:
                notes[key] = items[:10]
        if skipped:
            notes["skipped"] = len(skipped)
            notes["skipped_files"] = dict(list(skipped.items())[:50])
        left_out = [f"{n:,} {what.replace('_', ' ')}" for what, n in counts.items()
                    if n and what not in ("rows_read", "rows_used")]
        notes["summary"] = (f"{m.read:,} rows read, {len(m.rows) - len(skipped):,} images used"
                            + (f"; left out: {', '.join(left_out)}" if left_out else ""))
        return notes


@hookimpl
def tunebench_register_datasets(registry):
    registry.add(CSVManifest)
