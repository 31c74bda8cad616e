"""Start instrumented child processes with a clean environment, and always stop them.

    with InstrumentedServer(["python", "manage.py", "runserver", "--noreload",
                             "127.0.0.1:{port}"], env={...}, cwd=SHOP_DIR,
                            ready_path="/health/") as server:
        requests.get(server.url("/orders/1/"))
    print(server.stderr_text())

The child gets only PATH/HOME/LANG/TMPDIR/... from the parent, never the developer's
``SENTRY_*``/``OTEL_*`` variables, then ``env`` on top.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "REPO_ROOT",
    "VENV_BIN",
    "CompletedRun",
    "InstrumentedServer",
    "ProcessStartError",
    "clean_env",
    "free_port",
    "give_children_default_sigint",
    "run_instrumented",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
# sys.executable keeps the venv's bin path (not the resolved interpreter), so its
# siblings are the venv's console scripts (opentelemetry-instrument, gunicorn, ...)
VENV_BIN = Path(sys.executable).parent

_INHERITED = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "LOGNAME", "SYSTEMROOT")


class ProcessStartError(AssertionError):
    """The child exited or never became ready; the message includes its output."""


def give_children_default_sigint() -> None:
    """A process started as a background job of a non-interactive shell (``./scripts/test
    &``, some CI runners) inherits SIGINT ignored, and so would every process it starts:
    Python keeps an inherited SIG_IGN, so the shop would never see the SIGINT the shutdown
    tests send (it went on serving until SIGTERM, 11-24). A handler of our own is reset to
    the default when a child execs, so children start as a user's shell would start them."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment (venv first on PATH, unbuffered Python) plus ``env``."""
    base = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    base["PATH"] = os.pathsep.join([str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"])
    base["PYTHONUNBUFFERED"] = "1"
    base["PYTHONDONTWRITEBYTECODE"] = "1"
    base["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    base.update(env or {})
    return base


def _command(args: Sequence[str], instrument: bool, port: int | None) -> list[str]:
    fill = {"port": str(port)} if port is not None else {}
    resolved = [arg.format(**fill) if fill else arg for arg in args]
    if resolved and resolved[0] in ("python", "python3"):
        resolved[0] = sys.executable
    elif resolved and (VENV_BIN / resolved[0]).exists():
        resolved[0] = str(VENV_BIN / resolved[0])
    if instrument:
        return [str(VENV_BIN / "opentelemetry-instrument"), *resolved]
    return resolved


@dataclass(frozen=True)
class CompletedRun:
    """Result of ``run_instrumented``."""

    returncode: int
    stdout: str
    stderr: str


def run_instrumented(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | Path | None = None,
    instrument: bool = True,
    timeout: float = 60.0,
) -> CompletedRun:
    """Run a command to completion (under ``opentelemetry-instrument`` unless
    ``instrument=False``) with a clean env; ``"python"`` means the venv's Python."""
    completed = subprocess.run(
        _command(args, instrument, None),
        env=clean_env(env),
        cwd=str(cwd) if cwd else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CompletedRun(completed.returncode, completed.stdout, completed.stderr)


class InstrumentedServer:
    """A long-running child (server) started with a clean env, ready-checked, stopped
    with SIGTERM then SIGKILL.

    ``args`` may contain ``{port}``, replaced by ``port`` (a free port if not given).
    Readiness: ``GET http://127.0.0.1:{port}{ready_path}`` answers with a status below
    500 within ``ready_timeout`` seconds; with ``ready_path=None`` a TCP connect to the
    port suffices (no request, so no span/transaction is caused by the check).
    stdout/stderr go to files in ``log_dir`` (a temp dir by default).
    """

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | Path | None = None,
        port: int | None = None,
        ready_path: str | None = "/",
        ready_timeout: float = 30.0,
        instrument: bool = True,
        log_dir: str | Path | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.args = _command(args, instrument, self.port)
        self.env = clean_env(env)
        self.cwd = str(cwd) if cwd else None
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="rig-proc-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.log_dir / f"{self.port}.stdout"
        self.stderr_path = self.log_dir / f"{self.port}.stderr"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("not started")
        return self.process.pid

    def __enter__(self) -> InstrumentedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start and wait until ready; a no-op while already running (so a server
        returned started can still be used in a ``with`` block)."""
        if self.running:
            return
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            # own session: a SIGKILL fallback can take down workers a server forked
            self.process = subprocess.Popen(
                self.args, env=self.env, cwd=self.cwd, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProcessStartError(
                    f"{self.args} exited with {self.process.returncode} before ready\n"
                    + self.output_text()
                )
            if self.ready_path is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError as exc:
                    last_error = repr(exc)
                time.sleep(0.1)
                continue
            try:
                with urllib.request.urlopen(self.url(self.ready_path), timeout=2) as response:
                    if response.status < 500:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
                last_error = repr(exc)
            except OSError as exc:
                last_error = repr(exc)
            time.sleep(0.1)
        raise ProcessStartError(
            f"{self.args} not ready at {self.url(self.ready_path or '')} after"
            f" {self.ready_timeout}s ({last_error})\n" + self.output_text()
        )

    def stop(self) -> int | None:
        """SIGTERM, wait up to ``stop_timeout``, then SIGKILL the process group.
        Returns the exit code (None if never started)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # leftovers of the group (forked workers) must not outlive the test
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.returncode

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def output_text(self) -> str:
        """stdout and stderr, labelled, for failure messages."""
        return f"--- stdout ---\n{self.stdout_text()}\n--- stderr ---\n{self.stderr_text()}"
