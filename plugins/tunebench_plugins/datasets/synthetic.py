"""Generated images at any size, class count and sample count: for tests and dry runs.

Each class is a striped pattern of its own orientation and frequency, with noise; in a
multilabel dataset an image overlays the patterns of its labels. Learnable in a few epochs, and
identical for the same options and seed.
"""

from __future__ import annotations

from tunebench import ArrayData, DataSpec, Option, SizedDataset, hookimpl, image_size


class Synthetic(SizedDataset):
    """Generated striped patterns: any size, classes and count; multiclass or multilabel; seeded."""

    name = "synthetic"
    options_schema = {
        "size": Option((int, list), 32, "image size: 32 or [height, width]"),
        "channels": Option(int, 3, "1 or 3", choices=(1, 3)),
        "classes": Option(int, 4, "number of classes (labels, for multilabel)", minimum=2, maximum=1000),
        "samples": Option(int, 600, "number of images", minimum=10),
        "task": Option(str, "multiclass", "multiclass or multilabel", choices=("multiclass", "multilabel")),
        "noise": Option(float, 0.25, "standard deviation of the pixel noise (0..1 scale)", minimum=0.0),
        "seed": Option(int, 0, "generator seed (the run's seed only chooses the splits)", minimum=0),
    }

    @property
    def task(self):  # type: ignore[override]
        return self.options["task"]

    @property
    def spec(self) -> DataSpec:
        h, w = image_size(self.options["size"])
        return DataSpec((h, w, self.options["channels"]), tuple(f"class_{i}" for i in range(self.options["classes"])),
                        self.options["task"])

    def load(self) -> ArrayData:
        import numpy as np

        o = self.options
        h, w, c = self.spec.input_shape
        k, n = o["classes"], o["samples"]
        rng = np.random.default_rng(o["seed"])
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        angles = np.pi * np.arange(k) / k
        freqs = 2 + 3 * (np.arange(k) % 3)
        patterns = np.stack([np.sin(2 * np.pi * f * (xx * np.cos(a) + yy * np.sin(a)))
                             for a, f in zip(angles, freqs)])  # (k, h, w) in [-1, 1]
        if o["task"] == "multiclass":
            y = np.arange(n) % k
            rng.shuffle(y)
            active = np.eye(k, dtype=np.float32)[y]
        else:
            active = (rng.random((n, k)) < 0.35).astype(np.float32)
            empty = active.sum(axis=1) == 0
            active[empty, rng.integers(0, k, empty.sum())] = 1.0
            y = active
        mix = np.einsum("nk,khw->nhw", active, patterns) / np.maximum(active.sum(axis=1), 1)[:, None, None]
        phase = rng.uniform(0.8, 1.2, (n, 1, 1))
        images = 0.5 + 0.5 * mix * phase
        images = images[..., None] + rng.normal(0, o["noise"], (n, h, w, c))
        x = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
        return ArrayData(x, y if o["task"] == "multilabel" else y.astype(np.int64))


@hookimpl
def tunebench_register_datasets(registry):
    registry.add(Synthetic)
