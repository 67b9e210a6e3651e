"""Every built-in dataset and model family passes the shipped conformance suites (the strategies'
are in test_strategy_conformance.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunebench.testing.conformance import DatasetConformance, ModelFamilyConformance


class TestDigits(DatasetConformance):
    dataset = "digits"
    options = {"size": 12, "channels": 3}


class TestSyntheticMultilabel(DatasetConformance):
    dataset = "synthetic"
    options = {"task": "multilabel", "classes": 5, "samples": 200, "size": 16}


def _write_images(root: Path, classes: dict[str, int], size: int = 20) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


class TestImageFolder(DatasetConformance):
    dataset = "image_folder"

    def make_options(self, tmp_path: Any) -> dict[str, Any]:
        _write_images(tmp_path / "imgs", {"cat": 12, "dog": 12})
        return {"path": str(tmp_path / "imgs"), "size": 16, "cache": False}


class TestCSVManifest(DatasetConformance):
    dataset = "csv_manifest"

    def make_options(self, tmp_path: Any) -> dict[str, Any]:
        _write_images(tmp_path / "imgs", {"x": 24})
        rows = ["path,label"] + [f"x/{i}.png,{'a|b' if i % 3 == 0 else 'ab'[i % 2]}" for i in range(24)]
        (tmp_path / "imgs" / "labels.csv").write_text("\n".join(rows) + "\n")
        return {"path": str(tmp_path / "imgs" / "labels.csv"), "size": 16, "cache": False}


class TestMLP(ModelFamilyConformance):
    family = "mlp"


class TestScratchCNN(ModelFamilyConformance):
    family = "scratch_cnn"


class TestAlexNet(ModelFamilyConformance):
    family = "alexnet"
    input_shape = (32, 32, 3)
    random_configurations = 1


class TestTransfer(ModelFamilyConformance):
    family = "transfer"
    options = {"backbones": ["mobilenet"], "weights": "none", "resolutions": [32], "alpha": 0.25}
    random_configurations = 1


class TestFeatureExtraction(ModelFamilyConformance):
    family = "feature_extraction"
    options = {"backbones": ["mobilenet"], "weights": "none", "resolutions": [32], "alpha": 0.25}
    random_configurations = 1
