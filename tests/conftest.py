from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTING_PLUGINS = "tunebench.testing.scripted"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tunebench's own plugins only, whatever else is installed here (a third-party plugin's test sets it to 0)
os.environ.setdefault("TUNEBENCH_BUILTIN_PLUGINS_ONLY", "1")


def tunebench(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `tunebench` command line in a subprocess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "tunebench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def catalog():
    from tunebench.registry import load_plugins

    return load_plugins([TESTING_PLUGINS])
