"""Dataset plugins on small generated files: folders, CSVs, idx files, synthetic data."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, tunebench, write_suite
from tunebench.errors import DataError, OptionsError
from tunebench.images import load_images
from tunebench_plugins.datasets.csv_manifest import CSVManifest
from tunebench_plugins.datasets.image_folder import ImageFolder
from tunebench_plugins.datasets.keras_datasets import CIFAR10, FashionMNIST
from tunebench_plugins.datasets.synthetic import Synthetic


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("TUNEBENCH_DATA", raising=False)


def save(path, size=(12, 10), mode="RGB", value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path)


@pytest.fixture
def folder(tmp_path):
    """Three classes, mixed sizes, grayscale and RGB mixed, and one corrupt file."""
    root = tmp_path / "pets"
    for c, cls in enumerate(["cat", "dog", "fox"]):
        for i in range(8):
            save(root / cls / f"{i}.png", size=(10 + i, 12 + c), mode="L" if i % 2 else "RGB", value=10 * c + i)
    (root / "dog" / "broken.jpg").write_bytes(b"not really a jpeg")
    return root


def test_image_folder_decodes_mixed_files_and_skips_the_corrupt_one(folder):
    ds = ImageFolder(path=str(folder), size=16)
    assert ds.check() == []
    assert ds.spec.class_names == ("cat", "dog", "fox") and ds.spec.input_shape == (16, 16, 3)
    data = ds.load()
    assert data.x.shape == (24, 16, 16, 3) and data.x.dtype == np.uint8
    assert np.bincount(data.y).tolist() == [8, 8, 8]
    assert ds.notes["skipped"] == 1 and str(folder / "dog" / "broken.jpg") in ds.notes["skipped_files"]
    gray = ImageFolder(path=str(folder), size=[8, 6], color_mode="grayscale").load()
    assert gray.x.shape == (24, 8, 6, 1)


def test_decoded_images_are_cached_and_the_cache_follows_the_files(folder):
    paths = sorted(folder.rglob("*.png"))
    first = load_images(paths, (16, 16))
    again = load_images(paths, (16, 16))
    assert not first.from_cache and again.from_cache
    np.testing.assert_array_equal(first.x, again.x)
    save(paths[0], size=(30, 30), value=99)  # a changed file is decoded again
    assert not load_images(paths, (16, 16)).from_cache


def test_cached_images_are_mapped_and_the_splits_are_plain_arrays_with_the_same_rows(folder, monkeypatch):
    from tunebench import images

    monkeypatch.setattr(images, "TAKE_CHUNK_BYTES", 16 * 16 * 3 * 5)  # five rows a chunk: several chunks
    ds = ImageFolder(path=str(folder), size=16)
    mapped = ds.load()
    assert isinstance(mapped.x, np.memmap) and not mapped.x.flags.writeable
    plain = ImageFolder(path=str(folder), size=16, cache=False)
    assert not isinstance(plain.load().x, np.memmap)
    a, b = ds.splits(3), plain.splits(3)
    assert a.fingerprint == b.fingerprint
    for name in ("x_train", "x_val", "x_test"):
        x = getattr(a, name)
        assert type(x) is np.ndarray and x.flags.owndata  # copied out of the mapping, not a view of it
        np.testing.assert_array_equal(x, getattr(b, name))
    index = np.array([7, 0, 22, 3, 3, 15, 1])
    np.testing.assert_array_equal(images.take(mapped.x, index), np.asarray(mapped.x)[index])


def test_empty_class_and_missing_folder_are_reported_up_front(folder, tmp_path):
    (folder / "empty").mkdir()
    assert any("class 'empty' has no images" in p for p in ImageFolder(path=str(folder)).check())
    assert "does not exist" in ImageFolder(path=str(tmp_path / "nowhere")).check()[0]


def test_the_folders_own_splits_are_kept(tmp_path):
    root = tmp_path / "split"
    for split, n in (("train", 6), ("val", 3), ("test", 4)):
        for cls in ("a", "b"):
            for i in range(n):
                save(root / split / cls / f"{i}.png", value=i)
    ds = ImageFolder(path=str(root), size=8)
    assert ds.layout() == "splits" and ds.check() == []
    s = ds.splits(0)
    assert s.sizes == {"train": 12, "validation": 6, "test": 8}


def test_tiny_imagenet_layout(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    for w in wnids:
        for i in range(5):
            save(root / "train" / w / "images" / f"{w}_{i}.JPEG", value=i)
    lines = []
    for i in range(4):
        save(root / "val" / "images" / f"val_{i}.JPEG", value=50 + i)
        lines.append(f"val_{i}.JPEG\t{wnids[i % 2]}\t0\t0\t10\t10")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    ds = ImageFolder(path=str(root), size=8)
    assert ds.layout() == "tiny_imagenet" and ds.check() == [] and ds.spec.class_names == tuple(wnids)
    data = ds.load()
    assert len(data.x) == 10 and len(data.x_test) == 4 and data.y_test.tolist() == [0, 1, 0, 1]


def manifest(tmp_path, rows, header="path,label"):
    for path, _ in rows:
        if not path.startswith("missing"):
            save(tmp_path / path, value=len(path))
    csv = tmp_path / "labels.csv"
    csv.write_text(header + "\n" + "\n".join(f"{p},{label}" for p, label in rows) + "\n")
    return csv


def test_csv_manifest_multiclass_and_multilabel(tmp_path):
    single = manifest(tmp_path, [(f"img/{i}.png", ["Drama", "Comedy"][i % 2]) for i in range(10)])
    ds = CSVManifest(path=str(single), size=8)
    assert ds.check() == [] and ds.spec.task == "multiclass" and ds.spec.class_names == ("Comedy", "Drama")
    assert ds.load().y.tolist() == [1, 0] * 5

    multi = manifest(tmp_path, [(f"img/{i}.png", ["Drama", "Crime|Drama", "Comedy"][i % 3]) for i in range(9)]
                     + [("missing.png", "Drama")])
    ds = CSVManifest(path=str(multi), size=8)
    assert ds.spec.task == "multilabel"
    data = ds.load()
    assert data.y.shape == (9, 3) and data.y[1].tolist() == [0, 1, 1]  # Comedy, Crime, Drama
    assert ds.notes["skipped"] == 1


def test_csv_manifest_problems_are_reported_up_front(tmp_path):
    csv = manifest(tmp_path, [("img/0.png", "Drama"), ("img/1.png", "Westren")])
    problems = CSVManifest(path=str(csv), classes=["Drama", "Western"]).check()
    assert any("labels not among the classes: Westren" in p for p in problems)
    problems = CSVManifest(path=str(csv), label_column="genre").check()
    assert any("no column genre" in p for p in problems)
    assert "does not exist" in CSVManifest(path=str(tmp_path / "nope.csv")).check()[0]


def posters(tmp_path):
    """A posters-like folder: Id + a genre-list column + one-hot columns, a duplicated Id, a row with
    no genre, and images no row names (as in the IMDb posters snapshot)."""
    genres = ["Action", "Comedy", "Drama", "N/A"]
    rows = [("tt01", ["Comedy", "Drama"]), ("tt02", ["Drama"]), ("tt03", ["Action", "Comedy"]),
            ("tt04", ["Comedy"]), ("tt05", ["Drama", "Action"]), ("tt06", ["N/A"]), ("tt07", []),
            ("tt02", ["Drama"]), ("tt08", ["Comedy"]), ("tt09", ["Drama"]), ("tt10", ["Action"])]
    for i, (id_, _) in enumerate(rows):
        save(tmp_path / "posters" / "images" / f"{id_}.jpg", value=i)
    for extra in ("tt98", "tt99"):
        save(tmp_path / "posters" / "images" / f"{extra}.jpg", value=7)
    lines = ["Id,Genre," + ",".join(genres)]
    for id_, labels in rows:
        onehot = ",".join("1" if g in labels else "0" for g in genres)
        lines.append(f'{id_},"{labels!r}",{onehot}')
    (tmp_path / "posters" / "labels.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "posters" / "labels.csv"


def test_csv_manifest_reads_the_posters_layout_as_it_comes(tmp_path):
    csv = posters(tmp_path)
    common = dict(path=str(csv), path_column="Id", path_template="images/{}.jpg", size=8)
    multi = CSVManifest(**common, label_column="Genre", drop_classes=["N/A"])
    assert multi.check() == [] and multi.spec.task == "multilabel"
    assert multi.spec.class_names == ("Action", "Comedy", "Drama")
    data = multi.load()
    # 11 rows: tt02 twice (first kept), tt06 only N/A (outside the classes), tt07 no genre
    assert data.x.shape == (8, 8, 8, 3) and data.y[0].tolist() == [0, 1, 1]
    notes = multi.notes
    assert (notes["rows_read"], notes["rows_used"], notes["duplicated_paths"], notes["rows_without_label"],
            notes["rows_outside_the_classes"], notes["images_without_row"]) == (11, 8, 1, 1, 1, 2)
    assert notes["duplicated_examples"] == ["images/tt02.jpg"]
    assert sorted(notes["images_without_row_examples"]) == [str(csv.parent / "images" / f"{i}.jpg")
                                                             for i in ("tt98", "tt99")]
    assert "11 rows read, 8 images used" in notes["summary"] and "2 images without row" in notes["summary"]

    onehot = CSVManifest(**common, label_columns="auto", drop_classes=["N/A"]).load()
    np.testing.assert_array_equal(onehot.y, data.y)  # the one-hot columns say what the list says


def test_csv_manifest_derives_a_multiclass_task_from_first_labels(tmp_path):
    csv = posters(tmp_path)
    ds = CSVManifest(path=str(csv), path_column="Id", path_template="images/{}.jpg", label_column="Genre",
                     first_label_only=True, top_classes=2, size=8)
    # first labels: Comedy x3 (tt01, tt04, tt08), Drama x3 (tt02, tt05, tt09), Action x2, N/A x1
    assert ds.spec.task == "multiclass" and ds.spec.class_names == ("Comedy", "Drama")
    data = ds.load()
    assert data.y.tolist() == [0, 1, 0, 1, 0, 1]
    assert ds.notes["rows_outside_the_classes"] == 3 and ds.notes["rows_without_label"] == 1


def test_csv_manifest_option_mistakes_say_what_to_fix(tmp_path):
    csv = posters(tmp_path)
    with pytest.raises(OptionsError, match="path_template must hold one"):
        CSVManifest(path=str(csv), path_template="images/x.jpg")
    with pytest.raises(OptionsError, match="one-hot label_columns have no order"):
        CSVManifest(path=str(csv), label_columns=["Drama"], first_label_only=True)
    strict = CSVManifest(path=str(csv), path_column="Id", path_template="images/{}.jpg", label_column="Genre",
                         duplicates="error")
    assert any("lists 1 path(s) more than once, e.g. images/tt02.jpg" in p for p in strict.check())
    plain = CSVManifest(path=str(csv), path_column="Id", label_column="Genre")  # no template: paths missing
    assert any("none of the images exists" in p and "path_template" in p for p in plain.check())


def test_synthetic_is_seeded_and_supports_multilabel():
    a, b = Synthetic(size=16, classes=5, samples=100).load(), Synthetic(size=16, classes=5, samples=100).load()
    np.testing.assert_array_equal(a.x, b.x)
    assert a.x.shape == (100, 16, 16, 3) and sorted(set(a.y.tolist())) == [0, 1, 2, 3, 4]
    multi = Synthetic(task="multilabel", classes=6, samples=200, size=[20, 12], channels=1)
    data = multi.load()
    assert multi.spec.task == "multilabel" and data.x.shape == (200, 20, 12, 1) and data.y.shape == (200, 6)
    assert data.y.sum(axis=1).min() >= 1
    s = multi.splits(0)
    assert s.sizes["train"] + s.sizes["validation"] + s.sizes["test"] == 200


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_copy(tmp_path):
    """A small Fashion-MNIST in the same gzipped idx format as Debian's package."""
    folder = tmp_path / "fmnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 120), ("t10k", 30)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


def test_fashion_mnist_from_a_local_copy(fashion_copy):
    ds = FashionMNIST(data_dir=str(fashion_copy))
    assert ds.find() == fashion_copy and ds.check() == []
    data = ds.load()
    assert data.x.shape == (120, 28, 28, 1) and data.x_test.shape == (30, 28, 28, 1)
    assert data.y[:3].tolist() == [0, 1, 2]
    s = ds.splits(0)
    assert s.sizes == {"train": 102, "validation": 18, "test": 30}  # its own test set is kept


def test_missing_data_offline_says_what_to_get_and_where(tmp_path):
    (problem,) = CIFAR10(download=False, data_dir=str(tmp_path)).check()
    assert "cifar10 data not found locally" in problem and "cifar-10-batches-py/" in problem
    assert str(tmp_path) in problem and "--data-dir" in problem
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        CIFAR10(download=False).load()


def test_a_suite_whose_data_is_missing_fails_validation_before_training(tmp_path):
    suite = write_suite(tmp_path / "cifar.yaml", """
budget: 10s
datasets: [{cifar10: {download: false}}]
model_families: [mlp]
strategies: [random]
""")
    result = tunebench("run", str(suite), "--results", str(tmp_path / "r"), "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "cifar10 data not found locally" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


def test_splits_of_a_folder_are_identical_in_another_process(folder):
    here = ImageFolder(path=str(folder), size=8).splits(4).fingerprint
    code = (f"from tunebench_plugins.datasets.image_folder import ImageFolder; "
            f"print(ImageFolder(path={str(folder)!r}, size=8).splits(4).fingerprint)")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert there.stdout.strip() == here


def test_folder_csv_and_multilabel_suites_run_end_to_end(folder, tmp_path):
    csv = manifest(tmp_path / "posters", [(f"p/{i}.png", ["Drama", "Crime|Drama", "Comedy", "Comedy|Crime"][i % 4])
                                          for i in range(40)])
    suite = write_suite(tmp_path / "data.yaml", f"""
name: data
budget: 60s
max_epochs: 2
datasets:
  - image_folder: {{path: {folder}, size: 16}}
  - csv_manifest: {{path: {csv}, size: 16}}
  - synthetic: {{as: synthetic_multilabel, task: multilabel, classes: 5, samples: 300, size: 16}}
model_families: [mlp]
strategies: [{{random: {{max_trials: 1}}}}]
""")
    results = tmp_path / "results"
    result = tunebench("run", str(suite), "--results", str(results))
    assert result.returncode == 0, result.stderr
    runs = {r["dataset_label"]: r for r in json.loads(tunebench("runs", "--results", str(results),
                                                                 "--format", "json").stdout)}
    assert set(runs) == {"image_folder", "csv_manifest", "synthetic_multilabel"}
    assert all(r["status"] == "ok" and r["test_score"] is not None for r in runs.values())
    assert runs["csv_manifest"]["objective"] == "val_f1_macro"  # multilabel
    assert runs["image_folder"]["data_notes"]["skipped"] == 1
    board = json.loads(tunebench("leaderboard", "--results", str(results), "--format", "json").stdout)
    assert {r["dataset"] for r in board} == set(runs)
