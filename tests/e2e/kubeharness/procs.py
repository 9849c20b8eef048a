"""Child processes of the harness: started with logs to a file, stopped by PID, waited on with bounds.

Every wait here has a deadline and, when it runs out, says what it was waiting for and shows the tail
of the logs of the processes involved: a hung e2e run is worse than a failed one.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it, so collisions are rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """GET returning (status, body) for any HTTP status. The response is always closed: an HTTPError
    holds the open response, and leaking its socket is an error under filterwarnings=error."""
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), bytes(exc.read())


def _die_with_parent() -> None:
    # Linux only: if the test runner itself is SIGKILLed, its children get SIGKILL too instead of
    # holding ports and etcd data dirs forever.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One child process whose output goes to ``log_path``; stopped by its PID, never by name."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._die_with_parent = die_with_parent
        self._log: IO[bytes] | None = None
        self.popen: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name} is already running as PID {self.pid}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._env,
            cwd=self._cwd,
            # Own session: a Ctrl-C in the terminal reaches pytest only, which then stops the children
            # in order (scheduler before apiserver before etcd) instead of all dying at once.
            start_new_session=True,
            preexec_fn=_die_with_parent if self._die_with_parent else None,
        )

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds. Safe to call twice."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL without grace: what a crash or an OOM kill looks like to the rest of the system."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def describe(self, lines: int = 40) -> str:
        state = "running" if self.alive() else f"exited with {self.returncode()}"
        return f"--- {self.name} ({state}), log {self.log_path} (last {lines} lines):\n{self.tail(lines)}"


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message carries the evidence (an AssertionError so pytest shows it)."""


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    watch: Sequence[ManagedProcess] = (),
    interval: float = 0.1,
    context: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than None/False; fail fast if a watched process dies.

    Exceptions from the probe count as "not yet" (a server that is still starting refuses connections);
    the last one is shown if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
        except Exception as exc:
            last_error = exc
            result = None
        if result is not None and result is not False:
            return result
        dead = [p for p in watch if not p.alive()]
        if dead or time.monotonic() >= deadline:
            reason = f"{', '.join(p.name for p in dead)} exited" if dead else f"timed out after {timeout:g} s"
            parts = [f"waiting for {what}: {reason}"]
            if last_error is not None:
                parts.append(f"last probe error: {type(last_error).__name__}: {last_error}")
            if context is not None:
                parts.append(context())
            parts.extend(p.describe() for p in watch)
            raise WaitTimeout("\n".join(parts))
        time.sleep(interval)
