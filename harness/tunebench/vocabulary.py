"""The words tunebench's parts use with each other, in one place: what state a run or a trial is in,
what kind of failure ended a trial, and which events a search's process sends its runner.

A ground-floor module: it imports nothing of tunebench, so every layer (the store, the runner, the
search's process, the strategies, the leaderboard) can read and write the same words. The members
are `str` enums: they compare equal to the strings the store and the event pipe carry (`"ok"`),
so rows written by any version read the same.
"""

from __future__ import annotations

import errno
from enum import Enum


class _Word(str, Enum):
    """A word of the vocabulary: an enum member that is also its own string."""

    def __str__(self) -> str:
        return str(self.value)


class RunStatus(_Word):
    """The state of one run (one attempt at a search). The store owns it: the runner, the search's
    process and a cluster change it only through `Store` methods (`dispatch_run`, `finish_run`,
    `fail_run`, `interrupt_run`)."""

    QUEUED = "queued"  # created by a cluster driver, waiting for a worker
    RUNNING = "running"
    OK = "ok"  # the selected configuration has a test score
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its runner or worker was lost; the next `tunebench run` runs it again

    @classmethod
    def active(cls) -> frozenset[str]:
        """States in which some process is (or will be) working on the run."""
        return frozenset({cls.QUEUED.value, cls.RUNNING.value})

    @classmethod
    def ended(cls) -> frozenset[str]:
        """States a run never leaves."""
        return frozenset({cls.OK.value, cls.FAILED.value})


class TrialStatus(_Word):
    """How one trial ended (or `running` while it is in flight)."""

    OK = "ok"
    FAILED = "failed"  # an exception; `error_kind` says which (`FailureKind`)
    NAN = "nan"  # a non-finite loss
    PRUNED = "pruned"  # stopped by the strategy's per-epoch report
    TIMEOUT = "timeout"  # stopped at its deadline (or by the feasibility guard), its epochs kept
    RUNNING = "running"
    INTERRUPTED = "interrupted"  # the runner died while it ran

    @classmethod
    def selectable(cls) -> frozenset[str]:
        """Statuses whose validation score is real and may be selected: `ok` and `timeout`."""
        return _SELECTABLE

    @classmethod
    def failures(cls) -> frozenset[str]:
        """Statuses of trials that ended without a usable model: failed, nan, interrupted."""
        return _FAILURES


_SELECTABLE = frozenset({TrialStatus.OK.value, TrialStatus.TIMEOUT.value})
_FAILURES = frozenset({TrialStatus.FAILED.value, TrialStatus.NAN.value, TrialStatus.INTERRUPTED.value})


class FailureKind(_Word):
    """Why a trial failed or was stopped (the trial's `error_kind`)."""

    EXCEPTION = "exception"  # the trial raised
    OOM = "oom"  # out of host or accelerator memory
    DISK_FULL = "disk_full"  # a write failed for lack of space
    NAN = "nan"  # the loss became NaN or infinite
    SPACE = "space"  # a pin the model family does not declare
    CRASHED = "crashed"  # the search's process died while it ran
    KILLED = "killed"  # the runner killed it (a trial cap, a hang, the deadline)
    DEADLINE = "deadline"  # stopped cooperatively at its deadline
    INFEASIBLE = "infeasible"  # the feasibility guard: its first epoch could not end in time


class EventKind(_Word):
    """The events a search's process writes to its runner, one JSON line each (`job.Events`)."""

    READY = "ready"  # a warm worker has imported the frameworks
    STARTED = "started"  # the search's clock started
    TRIAL_START = "trial_start"  # a trial started (its deadline, for the runner's per-trial kill)
    PROGRESS = "progress"  # batches are ending (the runner's hang detection)
    TRIAL = "trial"  # a trial ended (its status, score, the search's best)
    FATAL = "fatal"  # the search's record could not be written; the runner closes the run
    SEARCH_DONE = "search_done"  # the clock stopped; the test evaluation follows
    JOB_END = "job_end"  # a warm worker finished a job and waits for the next


#: What an out-of-memory error says, on any backend, in an exception or at the end of a log (a C++
#: `bad_alloc` under the memory guard aborts the process rather than raising).
OOM_SIGNS = ("ResourceExhausted", "RESOURCE_EXHAUSTED", "OutOfMemory", "out of memory", "MemoryError",
             "OOM when allocating", "bad_alloc", "Cannot allocate memory")
#: What a write that failed for lack of space says: the operating system, SQLite, HDF5.
DISK_FULL_SIGNS = ("No space left on device", "No space left", "File too large", "database or disk is full",
                   "disk is full", "disk I/O error")
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def failure_kind(source: BaseException | str) -> FailureKind:
    """What kind of failure an exception, or a log's text, shows: `disk_full` (a full disk, a quota,
    a file-size limit), `oom` (host or accelerator memory), or else `exception`."""
    if isinstance(source, BaseException):
        if isinstance(source, OSError) and source.errno in _DISK_FULL_ERRNOS:
            return FailureKind.DISK_FULL
        if isinstance(source, MemoryError) or (isinstance(source, OSError) and source.errno == errno.ENOMEM):
            return FailureKind.OOM
        text = f"{type(source).__name__} {source} {getattr(source, 'orig', '')}"
    else:
        text = source
    if any(sign in text for sign in DISK_FULL_SIGNS):
        return FailureKind.DISK_FULL
    if any(sign in text for sign in OOM_SIGNS):
        return FailureKind.OOM
    return FailureKind.EXCEPTION


__all__ = ["DISK_FULL_SIGNS", "OOM_SIGNS", "EventKind", "FailureKind", "RunStatus", "TrialStatus", "failure_kind"]
