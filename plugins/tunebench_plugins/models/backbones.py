"""keras.applications backbones shared by the `transfer` and `feature_extraction` families.

Each backbone has its minimum input size, its own preprocessing (applied inside the model, with
layers that work on every Keras backend), and the weight file Keras looks for in its cache
(`~/.keras/models`). Weights are `imagenet` (from that cache, downloaded by Keras when online),
a path to a weights file, or `none`. Missing ImageNet weights are found before any training and
reported with the file name and where to put it; there is never a silent fallback to random weights.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunebench import DataError, ModelFamily, Option, OptionsError, augmentation, scaled_inputs

CAFFE_MEAN = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Backbone:
    app: str  # the keras.applications constructor
    min_size: int
    preprocessing: str  # caffe, tf or none (the model preprocesses itself)
    weights_file: str  # for alpha-free backbones; see `weights_file()`


BACKBONES = {
    "vgg16": Backbone("VGG16", 32, "caffe", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "inception_v3": Backbone("InceptionV3", 75, "tf", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": Backbone("ResNet50", 32, "caffe", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "mobilenet": Backbone("MobileNet", 32, "tf", ""),
    "mobilenet_v2": Backbone("MobileNetV2", 32, "tf", ""),
    "efficientnet_b0": Backbone("EfficientNetB0", 32, "none", "efficientnetb0_notop.h5"),
}

OPTIONS = {
    "backbones": Option(list, ["mobilenet_v2"], f"backbones to choose from: {', '.join(BACKBONES)}"),
    "weights": Option(str, "imagenet", "imagenet (Keras cache), none, or a path to a weights file"),
    "alpha": Option(float, 1.0, "width multiplier of mobilenet / mobilenet_v2", choices=(0.25, 0.35, 0.5, 0.75,
                                                                                            1.0, 1.3, 1.4)),
    "resolutions": Option(list, [96, 128, 160, 224], "input resolutions to choose from (raised to each "
                                                     "backbone's minimum)"),
    "download_weights": Option(bool, True, "let Keras download missing ImageNet weights when online"),
}


def keras_models_dir() -> Path:
    """Where keras.applications looks for weights. Keras reads KERAS_HOME when it is imported, so
    once it is, ask Keras rather than the environment."""
    import sys

    if "keras" in sys.modules:
        from keras.src.backend import config

        return Path(config.keras_home()) / "models"
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def weights_file(name: str, alpha: float, resolution: int) -> str:
    """The file keras.applications loads for `weights="imagenet"`, include_top=False."""
    if name == "mobilenet":
        rows = resolution if resolution in (128, 160, 192, 224) else 224
        alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}.get(alpha, "1_0")
        return f"mobilenet_{alpha_text}_{rows}_tf_no_top.h5"
    if name == "mobilenet_v2":
        rows = resolution if resolution in (96, 128, 160, 192, 224) else 224
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"
    return BACKBONES[name].weights_file


#: The resolutions keras.applications publishes no-top weights for. Those weights do not depend on
#: the input size (the network is fully convolutional), so any one of them serves every resolution.
WEIGHT_ROWS = {"mobilenet": (128, 160, 192, 224), "mobilenet_v2": (96, 128, 160, 192, 224)}


def cached_weights(name: str, alpha: float, resolution: int) -> Path | None:
    """The no-top ImageNet weights file in the Keras cache for this backbone and resolution: the
    resolution's own file, else (MobileNets) the same width's file for another resolution, else None."""
    own = keras_models_dir() / weights_file(name, alpha, resolution)
    if own.is_file():
        return own
    for rows in reversed(WEIGHT_ROWS.get(name, ())):
        other = keras_models_dir() / weights_file(name, alpha, rows)
        if other.is_file():
            return other
    return None


def resolutions_for(name: str, resolutions: list[int]) -> list[int]:
    """The usable resolutions for a backbone: each raised to its minimum size, without duplicates."""
    low = BACKBONES[name].min_size
    return sorted({max(int(r), low) for r in resolutions})


def check_structure(options: dict[str, Any]) -> None:
    """Options that can never work (unknown backbones), as an options error."""
    unknown = [b for b in options["backbones"] if b not in BACKBONES]
    if unknown or not options["backbones"]:
        raise OptionsError("backbone options are not valid:",
                           [f"unknown backbone(s) {unknown or '[]'}; choose from {', '.join(BACKBONES)}"])


def check_options(options: dict[str, Any]) -> list[str]:
    """Missing weights (or a weights file that does not fit), found before any training."""
    problems = []
    weights = options["weights"]
    if weights not in ("imagenet", "none"):
        if not Path(os.path.expandvars(weights)).expanduser().is_file():
            problems.append(f"weights file {weights} does not exist (option `weights`: imagenet, none, or a path)")
        if len(options["backbones"]) > 1:
            problems.append("a weights file fits one backbone: list a single backbone with it")
        return problems
    if weights == "none":
        return problems
    missing = sorted({(b, weights_file(b, options["alpha"], r)) for b in options["backbones"]
                      for r in resolutions_for(b, options["resolutions"])
                      if cached_weights(b, options["alpha"], r) is None})
    for backbone, filename in missing:
        if options["download_weights"] and _download(backbone, options["alpha"], filename):
            continue
        problems.append(f"ImageNet weights for {backbone} are not in the Keras cache and cannot be downloaded "
                        f"here: put {filename} in {keras_models_dir()}/ (or set weights to a file path, or to "
                        f"none for random initialisation)")
    return problems


def _download(backbone: str, alpha: float, filename: str) -> bool:
    """Let keras.applications fetch the weights the way it does in training (True if it could)."""
    try:
        build_base(backbone, (224, 224, 3), "imagenet", alpha)
        return (keras_models_dir() / filename).is_file()
    except Exception:
        return False


def build_base(name: str, shape: tuple[int, int, int], weights: str, alpha: float) -> Any:
    """The backbone without its classifier, named `backbone`."""
    import keras

    constructor = getattr(keras.applications, BACKBONES[name].app)
    kwargs: dict[str, Any] = {"include_top": False, "input_shape": shape,
                              "weights": None if weights == "none" else weights}
    if name in ("mobilenet", "mobilenet_v2"):
        kwargs["alpha"] = alpha
    other = None
    if weights == "imagenet":
        found = cached_weights(name, alpha, shape[0])
        if found is not None and found.name != weights_file(name, alpha, shape[0]):
            other = found  # another resolution's file: the same weights, loaded by hand below
            kwargs["weights"] = None
    try:
        with warnings.catch_warnings():  # Keras's note that 224 px weights serve other sizes: as intended
            warnings.filterwarnings("ignore", message=".*Weights for input shape.*")
            base = constructor(**kwargs)
        if other is not None:
            base.load_weights(str(other))
    except Exception as exc:
        if weights == "none":
            raise
        where = keras_models_dir() / weights_file(name, alpha, shape[0]) if weights == "imagenet" else weights
        raise DataError(f"could not load {weights} weights for {name} ({where}): {type(exc).__name__}: {exc}") from exc
    base.name = "backbone"
    return base


def preprocess(x: Any, name: str, resolution: int) -> Any:
    """Resize uint8-range images to `resolution`, give them 3 channels, and apply the backbone's
    own preprocessing, all inside the model."""
    from keras import layers, ops

    if x.shape[1] != resolution or x.shape[2] != resolution:
        x = layers.Resizing(resolution, resolution)(x)
    if x.shape[-1] == 1:
        x = layers.Concatenate()([x, x, x])
    mode = BACKBONES[name].preprocessing
    if mode == "tf":
        x = layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    elif mode == "caffe":  # RGB -> BGR, minus ImageNet's channel means
        x = layers.Lambda(lambda t: ops.flip(t, axis=-1), name="rgb_to_bgr")(x)
        x = layers.Normalization(mean=list(CAFFE_MEAN), variance=[1.0, 1.0, 1.0])(x)
    return x


class BackboneFamily(ModelFamily):
    """What `transfer` and `feature_extraction` share: backbone options, the weights check, and the
    frozen backbone (chosen, resized, preprocessed) that their heads sit on."""

    tasks = frozenset({"multiclass", "multilabel"})
    min_input_size = 8
    options_schema = OPTIONS

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        check_structure(self.options)

    def check_resources(self) -> list[str]:
        return check_options(self.options)

    def frozen_base(self, hp: Any, spec: Any, *, augment: bool = False) -> tuple[Any, Any, Any]:
        """(inputs, backbone output in inference mode, backbone): declares `backbone` and `resolution`
        (and `augment` when asked)."""
        import keras

        name = hp.Choice("backbone", list(self.options["backbones"]), default=self.options["backbones"][0])
        sizes = resolutions_for(name, self.options["resolutions"])
        resolution = hp.Choice("resolution", sizes, default=sizes[0])
        self._built = (name, resolution)
        if self.options["weights"] == "none":
            keras.utils.set_random_seed(0)  # a random backbone is the same in every trial and rebuild
        inputs, _ = scaled_inputs(spec)
        x = inputs
        if augment and hp.Boolean("augment", default=False):
            x = augmentation(x)
        x = preprocess(x, name, resolution)
        base = build_base(name, (resolution, resolution, 3), self.options["weights"], self.options["alpha"])
        base.trainable = False
        return inputs, base(x, training=False), base  # batch norm stays in inference mode, also when fine-tuned
