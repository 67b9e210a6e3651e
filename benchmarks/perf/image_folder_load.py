"""Time to load a CIFAR-10-sized image folder (60,000 PNGs of 32x32 RGB, 10 classes).

Writes the folder once (from the `synthetic` dataset), then measures with `image_folder`: the first
load (decoding every file) and a later load (from the decoded-image cache), each followed by the
stratified split. Figures go to results/perf/image_folder_load.{json,md}.

    .venv/bin/python benchmarks/perf/image_folder_load.py [--images 60000] [--out results/perf]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--out", default="results/perf")
    parser.add_argument("--workdir", default=None, help="where to write the images (default: a temp folder)")
    args = parser.parse_args()

    from PIL import Image

    from tunebench_plugins.datasets.image_folder import ImageFolder
    from tunebench_plugins.datasets.synthetic import Synthetic

    work = Path(args.workdir or tempfile.mkdtemp(prefix="tunebench-cifar-like-"))
    os.environ["TUNEBENCH_CACHE"] = str(work / "cache")
    root = work / "images"
    if not root.exists():
        data = Synthetic(size=32, classes=10, samples=args.images).load()
        for i, (x, y) in enumerate(zip(data.x, data.y)):
            folder = root / f"class_{y}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(folder / f"{i:05d}.png")
    figures = {"images": args.images, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "date": time.strftime("%Y-%m-%d")}
    for label in ("first_load_s", "cached_load_s"):
        start = time.perf_counter()
        splits = ImageFolder(path=str(root), size=32).splits(0)
        figures[label] = round(time.perf_counter() - start, 2)
    figures["sizes"] = splits.sizes
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "image_folder_load.json").write_text(json.dumps(figures, indent=2))
    (out / "image_folder_load.md").write_text(
        f"| images | first load (decode) | cached load | machine | date |\n|---|---|---|---|---|\n"
        f"| {args.images} | {figures['first_load_s']} s | {figures['cached_load_s']} s | {figures['machine']} | "
        f"{figures['date']} |\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
