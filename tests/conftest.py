from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTING_PLUGINS = "harness.testing.plugins"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tunebench(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `tunebench` command line in a subprocess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def catalog():
    from harness.plugins import load_plugins

    return load_plugins([TESTING_PLUGINS])
