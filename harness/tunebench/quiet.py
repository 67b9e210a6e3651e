"""Keeping the frameworks' start-up chatter off the user's terminal, in one place.

TensorFlow and its absl logging print lines at import and at the first op ("oneDNN custom
operations are on", "This TensorFlow binary is optimized to use available CPU instructions",
"All log messages before absl::InitializeLog() ..."). `TF_CPP_MIN_LOG_LEVEL` hides some of them on
some hosts and not others: TensorFlow 2.21 writes several before it reads the variable, straight
to file descriptor 2. So the environment is set once here (`quiet_environment`), and where the
command line itself runs framework code, it runs it in a child process whose standard error is
read back through `drop_start_up_noise`, which keeps every line that is not known start-up noise
(a real error, a traceback) and drops the rest.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping

#: TensorFlow's C++ log level for every process tunebench starts: warnings and info hidden, errors
#: kept (a search's own log keeps them; the terminal sees them through `drop_start_up_noise`).
TF_LOG_LEVEL = "2"

#: An absl/glog line: severity, date, time, thread, file:line] message.
_ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+\s+\S+:\d+\]")
#: What TensorFlow, XLA and CUDA's loaders print at start-up on a machine that works: never an error
#: a user has to act on. Info and warning lines in absl's format are dropped whatever they say.
_START_UP = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cuDNN factory", "Unable to register cuFFT factory", "Unable to register cuBLAS factory",
    "failed call to cuInit", "computation placer already registered",
    "Could not find cuda drivers on your machine", "TF-TRT Warning",
)


def quiet_environment(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set the frameworks' log levels in `env` (default: this process's environment), unless the
    user set them; returns `env`. Every process tunebench starts gets its environment from here."""
    env = os.environ if env is None else env
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    return env


def is_start_up_noise(line: str) -> bool:
    """Whether one line of a framework's standard error is start-up chatter (see `_START_UP`)."""
    text = line.strip()
    if not text:
        return False
    if _ABSL_LINE.match(text) and text[0] in "IW":
        return True
    return any(sign in text for sign in _START_UP)


def drop_start_up_noise(text: str) -> str:
    """`text` (a child's standard error) without its start-up noise; every other line is kept."""
    return "".join(line for line in text.splitlines(keepends=True) if not is_start_up_noise(line))


__all__ = ["TF_LOG_LEVEL", "drop_start_up_noise", "is_start_up_noise", "quiet_environment"]
