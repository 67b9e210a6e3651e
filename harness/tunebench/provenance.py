"""Where a result came from: package versions, hardware, the process's memory, and the check that
every process of a suite splits the same data the same way.
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebench.errors import TunebenchError

if TYPE_CHECKING:
    from tunebench.store import Store

_VERSIONED = ("tunebench", "keras", "tensorflow", "tensorflow-cpu", "keras-tuner", "autokeras",
              "optuna", "numpy", "torch", "jax")


def versions() -> dict[str, str]:
    """Versions of Python and of every package that shapes a result."""
    import importlib.metadata as md

    found = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    if "tensorflow" not in found and "tensorflow-cpu" in found:  # one key, whichever build is installed
        found["tensorflow"] = found["tensorflow-cpu"]
    return found


def hardware() -> dict[str, Any]:
    """CPU model and count, memory, and GPU names when `nvidia-smi` is there."""
    import shutil
    import subprocess

    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus: list[str] = []
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout
            gpus = [g.strip() for g in out.splitlines() if g.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "gpus": gpus, "platform": platform.platform()}


def memory_limit() -> int | None:
    """The memory guard this process runs under (`RLIMIT_DATA`), in bytes, or None."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
        return None if soft == resource.RLIM_INFINITY else int(soft)
    except (ImportError, AttributeError, OSError):
        return None


def rss_mb() -> float:
    """This process's resident memory in MB."""
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def check_fingerprint(store: Store, run_id: int, fingerprint: str) -> None:
    """Refuse to search on data that differs from what other runs of this suite, dataset and seed
    used (another node's copy of the data, say): results would not be comparable."""
    run = store.run(run_id)
    for other in store.runs(suite=run["suite"]):  # this run included: its lane 0 may have recorded one
        if (other["dataset"] == run["dataset"] and other["seed"] == run["seed"]
                and other["dataset_options"] == run["dataset_options"] and other["split_fingerprint"]
                and other["split_fingerprint"] != fingerprint):
            raise TunebenchError(
                f"dataset '{run['dataset_label'] or run['dataset']}' (seed {run['seed']}) gives split "
                f"fingerprint {fingerprint} on {socket.gethostname()}, but run {other['id']} on "
                f"{other['host']} had {other['split_fingerprint']}: the data differs between machines or "
                f"has changed since. Give every worker the same copy (its data directory or cache), or "
                f"use a new results store")
