"""A dependency-free progress bar on stderr: redrawn in place on a terminal, a line per 10 % otherwise
(CI logs stay readable)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: float, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.total = max(float(total), 1e-9)
        self.done = 0.0
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.monotonic()
        self._tty = self.stream.isatty()
        self._last_decile = -1
        self._note = ""

    def add_total(self, amount: float) -> None:
        self.total += amount

    def advance(self, amount: float = 1.0, note: str | None = None) -> None:
        self.done = min(self.total, self.done + amount)
        if note is not None:
            self._note = note
        self._draw()

    def note(self, text: str) -> None:
        self._note = text
        self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        fraction = self.done / self.total
        elapsed = time.monotonic() - self.started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{self.label}] [{bar}] {fraction:5.1%} {elapsed:5.0f}s eta {eta:4.0f}s {self._note}"
        if self._tty:
            self.stream.write("\r\x1b[K" + line[:160])
            self.stream.flush()
            return
        decile = int(fraction * 10)
        if force or decile != self._last_decile:
            self._last_decile = decile
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        self.done = self.total
        self._draw(force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
