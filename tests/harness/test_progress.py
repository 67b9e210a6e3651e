"""The live progress line, as a terminal shows it (the runner's tests see only non-TTY output)."""

from __future__ import annotations

import io
import time

from tunebench.runner import Outcome, Progress, _Active
from tunebench.suite import Entry, Search


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def active(index: int = 1) -> _Active:
    search = Search("s", Entry("digits", {}, "digits"), Entry("mlp", {}, "mlp"), Entry("random", {}, "random"),
                    0, 20.0, None, None)
    a = _Active.__new__(_Active)
    a.search, a.index, a.phase, a.trials, a.ok_trials, a.best = search, index, "search", 7, 6, 0.9432
    a.search_deadline = time.time() + 12
    a.job = type("Job", (), {"run_id": 3, "budget_s": 20.0})()
    return a


def test_one_live_line_per_search_then_a_final_line():
    out = FakeTerminal()
    progress = Progress(out)
    a = active()
    progress.tick([a], total=4)
    line = out.getvalue()
    assert line.startswith("\r\x1b[K") and "\n" not in line
    assert "[1/4] digits · mlp · random · seed 0" in line and "trials 7 (6 ok)" in line and "0.9432" in line
    assert "left" in line
    progress.finished(a, Outcome(a.search, 3, "ok", test_score=0.95), total=4)
    final = out.getvalue().splitlines()[-1]
    assert "done" in final and "test 0.9500" in final and "7 trials" in final


def test_logs_get_start_and_end_lines_only():
    out = io.StringIO()
    progress = Progress(out)
    a = active()
    progress.started(a, total=4)
    progress.tick([a], total=4)  # nothing: not a terminal
    progress.finished(a, Outcome(a.search, 3, "failed", "boom"), total=4)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "start" in lines[0] and "FAILED" in lines[1] and "boom" in lines[1]
