"""nbval runs each notebook as a test file; this prints how long each one took.

`make test-notebooks` runs every chapter in quick mode (W2V2_LITE_QUICK=1); the suite's
budget is ten minutes on a 2-core CPU, and this table is where to see which chapter spends it.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _seconds[report.nodeid.split("::", 1)[0]] += report.duration  # setup, call and teardown


def pytest_terminal_summary(terminalreporter) -> None:
    if not _seconds:
        return
    mode = "quick" if os.environ.get("W2V2_LITE_QUICK") == "1" else "full"
    write = terminalreporter.write_line
    write(f"notebook wall time ({mode} mode):")
    for name, seconds in sorted(_seconds.items()):
        write(f"  {seconds:7.1f} s  {name}")
    write(f"  {sum(_seconds.values()):7.1f} s  in all")
