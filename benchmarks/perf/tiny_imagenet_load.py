"""Loading Tiny-ImageNet-200 with `image_folder`: first load (decoding 110,000 JPEGs), cached load,
and peak host memory against the size of the decoded arrays.

Each load runs in a fresh process (as a search would), which reports its wall time and peak RSS
(`ru_maxrss`); the first load starts from an empty decoded-image cache. Figures go to
results/perf/tiny_imagenet_load.{json,md}; the goals (issue #18) are a cached load in at most 10 s
and a peak RSS at most 2x the decoded arrays.

    .venv/bin/python benchmarks/perf/tiny_imagenet_load.py --data-dir DIR [--size 64] [--size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
start = time.perf_counter()
from tunebench_plugins.datasets.image_folder import ImageFolder
ds = ImageFolder(path=sys.argv[1], size=int(sys.argv[2]))
data = ds.cached_load()  # as a search does: `splits` below takes it from the process
loaded = time.perf_counter() - start
splits = ds.splits(0) if sys.argv[3] == "split" else None
total = time.perf_counter() - start
arrays = data.x.nbytes + (data.x_test.nbytes if data.x_test is not None else 0)
print(json.dumps({"load_s": round(loaded, 2), "load_and_split_s": round(total, 2), "images": len(data.x)
                  + (len(data.x_test) if data.x_test is not None else 0), "arrays_bytes": arrays,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "sizes": splits.sizes if splits else None}))
"""


def measure(path: Path, size: int, cache: Path, split: bool) -> dict:
    env = dict(os.environ, TUNEBENCH_CACHE=str(cache))
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(size), "split" if split else "load"],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=os.environ.get("TUNEBENCH_DATA"), help="holds tiny-imagenet-200/")
    parser.add_argument("--size", type=int, action="append", help="image size (repeatable; default 64 and 32)")
    parser.add_argument("--cached-repeats", type=int, default=3, help="cached loads to take the median of")
    parser.add_argument("--out", default="results/perf")
    args = parser.parse_args()
    if not args.data_dir or not (Path(args.data_dir) / "tiny-imagenet-200").is_dir():
        sys.exit("tiny_imagenet_load: pass --data-dir DIR (or set TUNEBENCH_DATA) with DIR/tiny-imagenet-200 "
                 "(../shared/data/prepare.sh builds it)")
    root = Path(args.data_dir) / "tiny-imagenet-200"
    rows = []
    for size in args.size or [64, 32]:
        with tempfile.TemporaryDirectory(prefix="tunebench-cache-") as cache:
            first = measure(root, size, Path(cache), split=True)
            cached = [measure(root, size, Path(cache), split=True) for _ in range(args.cached_repeats)]
        cached.sort(key=lambda r: r["load_and_split_s"])
        median = cached[len(cached) // 2]
        rows.append({"size": size, "images": first["images"], "arrays_mb": round(first["arrays_bytes"] / 2**20),
                     "first_load_s": first["load_and_split_s"],
                     "first_peak_rss_mb": round(first["peak_rss_bytes"] / 2**20),
                     "cached_load_s": median["load_and_split_s"],
                     "cached_loads_s": [r["load_and_split_s"] for r in cached],
                     "cached_peak_rss_mb": round(median["peak_rss_bytes"] / 2**20),
                     "first_rss_ratio": round(first["peak_rss_bytes"] / first["arrays_bytes"], 2),
                     "cached_rss_ratio": round(median["peak_rss_bytes"] / median["arrays_bytes"], 2),
                     "sizes": first["sizes"]})
        print(json.dumps(rows[-1]), flush=True)
    figures = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
               "python": platform.python_version(), "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tiny_imagenet_load.json").write_text(json.dumps(figures, indent=2))
    lines = ["| size | images | decoded arrays | first load (decode + split) | peak RSS | cached load (median) | "
             "peak RSS | RSS / arrays (first, cached) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        loads = ", ".join(map(str, r["cached_loads_s"]))
        lines.append(f"| {r['size']}x{r['size']} | {r['images']:,} | {r['arrays_mb']:,} MiB | {r['first_load_s']} s | "
                     f"{r['first_peak_rss_mb']:,} MiB | {r['cached_load_s']} s ({loads}) | "
                     f"{r['cached_peak_rss_mb']:,} MiB | {r['first_rss_ratio']} / {r['cached_rss_ratio']} |")
    (out / "tiny_imagenet_load.md").write_text("\n".join(lines) + f"\n\n{figures['machine']}, {figures['date']}\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
