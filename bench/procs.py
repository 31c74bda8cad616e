"""Child processes of the benchmark: the sink, the server under test, the load generator.

CPU time of the server is read by the server itself (``Server(report_cpu=True)``, see
bench.serve): before a burst, and once its exit handlers have flushed. ``wait4``'s resource
usage gives the whole life of a process, and its peak memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
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
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
_INHERITED = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None, venv_bin: Path = VENV_BIN) -> dict[str, str]:
    """No SENTRY_*/OTEL_* of the developer's; the venv first on PATH; the repo importable."""
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env["PATH"] = os.pathsep.join([str(venv_bin), "/usr/local/bin", "/usr/bin", "/bin"])
    env["VIRTUAL_ENV"] = str(venv_bin.parent)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class CpuTimes:
    user: float
    sys: float
    # The garbage collector's full collections so far (the server's own readings only): one
    # costs 35-50 ms in the shop, which is 90-125 µs per request of a 400-request burst.
    full_collections: int = 0

    @property
    def total(self) -> float:
        return self.user + self.sys

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(
            self.user - other.user, self.sys - other.sys,
            self.full_collections - other.full_collections,
        )


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class Exited:
    returncode: int
    cpu: CpuTimes  # over the whole life, from wait4
    max_rss_bytes: int
    # The server's own reading once its exit handlers had run (Server(report_cpu=True)).
    flushed_cpu: CpuTimes | None = None


def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> Exited:
    """Reap the child with ``wait4`` (for its resource usage); SIGKILL after ``timeout``."""
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return Exited(
                process.returncode if not killed else -9,
                CpuTimes(usage.ru_utime, usage.ru_stime),
                usage.ru_maxrss * 1024,
            )
        if time.monotonic() > deadline and not killed:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            killed = True
        time.sleep(0.01)


class Sink:
    """The envelope sink process (``bench.sink``), steered over HTTP."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.sink"],
            cwd=REPO_ROOT, env=clean_env(), stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"sink did not start: {line!r}")
        self.port = int(line.split()[1])

    @property
    def dsn(self) -> str:
        return f"http://benchkey@127.0.0.1:{self.port}/1"

    def _call(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", method="POST" if "mode" in path else "GET"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def stats(self) -> dict[str, Any]:
        return self._call("/_bench/stats")

    def mode(self, mode: str = "normal", *, reset: bool = False, delay: float = 0.0) -> None:
        self._call(f"/_bench/mode?mode={mode}&delay={delay}&reset={int(reset)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_STDERR_TAIL = 4000  # characters of a server's output kept for error messages


class Server:
    """``bench.serve`` for one variant, possibly under ``opentelemetry-instrument``."""

    def __init__(
        self,
        variant: str,
        dsn: str,
        env: Mapping[str, str] | None = None,
        *,
        wrapper: Sequence[str] = (),
        ready_timeout: float = 60.0,
        report_cpu: bool = False,
    ) -> None:
        """``wrapper``: a command the server runs under (``valgrind ...``). ``report_cpu``:
        the server reads its own CPU time (see bench.serve): :meth:`cpu_mark` and
        ``Exited.flushed_cpu``."""
        self.variant = variant
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-server-"))
        self.cpu_report = self.dir / "cpu" if report_cpu else None
        instrumented = variant in ("sentry_otel", "otel_null", "bridge")
        args = [sys.executable, "-m", "bench.serve", "--variant", variant,
                "--port", str(self.port), "--dsn", dsn]
        if self.cpu_report is not None:
            args += ["--cpu-report", str(self.cpu_report)]
        if instrumented:
            args = [str(VENV_BIN / "opentelemetry-instrument"), *args]
        args = [*wrapper, *args]
        base = {
            "SHOP_DB_PATH": str(self.dir / "shop.sqlite3"),
            # importable before the script runs: auto-instrumentation reads Django's settings
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "samples" / "shop")]),
            "DJANGO_SETTINGS_MODULE": "shop.settings",
            "OTEL_SERVICE_NAME": "bench",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
        if variant == "bridge":
            base["SENTRY_DSN"] = dsn
            base["SENTRY_TRACES_SAMPLE_RATE"] = "1.0"
        elif instrumented:
            # auto-instrumentation only: no distro or configurator builds a pipeline, the
            # variant's own setup in bench.serve does (names that match no entry point)
            base["OTEL_PYTHON_DISTRO"] = "bench_none"
            base["OTEL_PYTHON_CONFIGURATOR"] = "bench_none"
            base["OTEL_TRACES_EXPORTER"] = "none"
        base.update(env or {})
        self.stderr_path = self.dir / "stderr"
        self._stderr_kept = ""
        # Requests to /health/ the server answered while it was awaited: each is a
        # transaction under a tracing variant, which the memory section accounts for.
        self.readiness_requests = 0
        try:
            with open(self.stderr_path, "wb") as stderr:
                self.process = subprocess.Popen(
                    args, cwd=REPO_ROOT, env=clean_env(base), stdout=stderr, stderr=stderr,
                    stdin=subprocess.DEVNULL,
                )
            self._wait_ready(ready_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.variant} server exited:\n{self.stderr_text()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/health/", timeout=2
                ) as response:
                    self.readiness_requests += 1
                    if response.status == 200:
                        return
            except urllib.error.HTTPError:  # answered all the same
                self.readiness_requests += 1
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.variant} server not ready:\n{self.stderr_text()}")

    def stderr_text(self, limit: int = _STDERR_TAIL) -> str:
        """The end of the server's output, also after :meth:`close` removed its file."""
        try:
            return self.stderr_path.read_text(errors="replace")[-limit:]
        except FileNotFoundError:
            return self._stderr_kept[-limit:]

    def _cpu_readings(self, label: str) -> list[CpuTimes]:
        if self.cpu_report is None:  # not an assert: those vanish under python -O
            raise RuntimeError(f"the {self.variant} server was started without report_cpu=True")
        try:
            text = self.cpu_report.read_text()
        except FileNotFoundError:
            return []
        complete = text.split("\n")[:-1]  # a line still being written has no newline yet
        readings = [line.split() for line in complete]
        return [
            CpuTimes(float(r[1]), float(r[2]), int(r[3]))
            for r in readings if len(r) == 4 and r[0] == label
        ]

    def cpu_mark(self, timeout: float = 10.0) -> CpuTimes:
        """The server's CPU time now, read by the server itself to the microsecond (the
        figures in ``/proc`` tick every 10 ms), after it has collected its garbage."""
        seen = len(self._cpu_readings("mark"))
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            readings = self._cpu_readings("mark")
            if len(readings) > seen:
                return readings[-1]
            time.sleep(0.005)
        raise RuntimeError(f"{self.variant} server did not report its CPU:\n{self.stderr_text()}")

    def terminate(self, timeout: float = 60.0) -> Exited:
        """SIGTERM and reap: the process flushes what is pending on its way out."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        exited = wait_exit(self.process, timeout)
        if self.cpu_report is None:
            return exited
        flushed = self._cpu_readings("exit")
        return dataclasses.replace(exited, flushed_cpu=flushed[-1] if flushed else None)

    def kill(self) -> None:
        process = getattr(self, "process", None)  # None: Popen itself failed
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(ChildProcessError):
                wait_exit(process, 10)

    def close(self) -> None:
        """Kill the server if it still runs and remove its directory (database, output),
        keeping the end of its output for :meth:`stderr_text`."""
        self.kill()
        with contextlib.suppress(OSError):
            self._stderr_kept = self.stderr_path.read_text(errors="replace")[-_STDERR_TAIL:]
        shutil.rmtree(self.dir, ignore_errors=True)


def load(
    port: int, count: int, path: str = "/orders/{n}/", concurrency: int = 1
) -> dict[str, Any]:
    """Run the load generator process to completion; its JSON summary."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.load", "--port", str(port), "--path", path,
         "--count", str(count), "--concurrency", str(concurrency)],
        cwd=REPO_ROOT, env=clean_env(), capture_output=True, check=True,
    )
    return dict(json.loads(completed.stdout))


def run_python(venv_bin: Path, args: Sequence[str], env: Mapping[str, str]) -> None:
    subprocess.run(
        [str(venv_bin / "python"), *args], env=clean_env(env, venv_bin), check=True,
        capture_output=True,
    )
