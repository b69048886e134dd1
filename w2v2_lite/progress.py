"""A small progress bar for long loops, so the core needs no tqdm.

    with ProgressBar(total=120.0, description="speech", unit="s") as bar:
        for seconds in work():
            bar.update(seconds)

It redraws one line on stderr (a terminal or a notebook) at most `refresh_s` apart.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """7384 -> '2:03:04', 65 -> '1:05'."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ProgressBar:
    """Shows done/total, percent, rate and time left; `update(amount)` adds to done."""

    def __init__(self, total: float, description: str = "", unit: str = "it", width: int = 28,
                 refresh_s: float = 0.2, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.description, self.unit, self.width = total, description, unit, width
        self.refresh_s, self.stream, self.enabled = refresh_s, stream or sys.stderr, enabled
        self.done = 0.0
        self.start = self.last_draw = time.perf_counter()

    def update(self, amount: float = 1.0) -> None:
        self.done += amount
        now = time.perf_counter()
        if now - self.last_draw >= self.refresh_s or self.done >= self.total:
            self.last_draw = now
            self.draw()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * self.width)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        return (f"{self.description} |{'#' * filled}{'.' * (self.width - filled)}| {fraction:4.0%} "
                f"{self.done:.0f}/{self.total:.0f} {self.unit} [{format_duration(elapsed)}<{format_duration(left)}, "
                f"{rate:.1f} {self.unit}/s]")

    def draw(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.draw()
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
