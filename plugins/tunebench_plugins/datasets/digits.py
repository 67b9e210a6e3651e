"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes), offline."""

from __future__ import annotations

from tunebench import ArrayData, Dataset, DataSpec, Option, hookimpl


class Digits(Dataset):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), bundled, offline."""

    name = "digits"
    options_schema = {
        "size": Option(int, 8, "resize images to size x size (bilinear)", minimum=8, maximum=512),
        "channels": Option(int, 1, "1 for grayscale, 3 to repeat it as RGB", choices=(1, 3)),
    }

    @property
    def spec(self) -> DataSpec:
        size = self.options["size"]
        return DataSpec((size, size, self.options["channels"]), tuple(str(i) for i in range(10)))

    def load(self) -> ArrayData:
        import numpy as np
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = bunch.images.astype(np.float32) * (255.0 / 16.0)  # 0..16 -> 0..255
        size = self.options["size"]
        if size != 8:
            from scipy.ndimage import zoom

            images = zoom(images, (1, size / 8, size / 8), order=1)
        x = np.clip(np.rint(images), 0, 255).astype(np.uint8)[..., None]
        if self.options["channels"] == 3:
            x = np.repeat(x, 3, axis=-1)
        return ArrayData(x=x, y=bunch.target.astype(np.int64))


@hookimpl
def tunebench_register_datasets(registry):
    registry.add(Digits)
