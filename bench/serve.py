"""The server under test: the sample shop's WSGI app in one process.

    python -m bench.serve --variant native --port 8000 --dsn http://key@127.0.0.1:9000/1

One process (wsgiref without its request log; one request at a time unless ``--threaded``):
the runner reads that process's CPU time, and every variant pays the same server overhead.
Variants set up their tracing here, before Django loads, as their documentation says:

- ``bare``: nothing;
- ``native``: ``sentry_sdk.init(dsn, traces_sample_rate=1.0)`` (its Django integration);
- ``sentry_errors``: ``sentry_sdk.init(dsn)``, tracing off: what sentry-sdk costs as the error
  engine alone (otel-bridge starts it that way);
- ``sentry_otel``: sentry-sdk's documented OpenTelemetry bridge: ``instrumenter="otel"``, a
  ``TracerProvider`` with ``SentrySpanProcessor`` and ``SentryPropagator``;
- ``otel_null``: a ``TracerProvider`` with a ``BatchSpanProcessor`` and an exporter that
  drops everything (the floor of any OTel pipeline);
- ``bridge``: nothing here: ``opentelemetry-instrument`` with ``SENTRY_DSN`` did it all.

``sentry_otel``, ``otel_null`` and ``bridge`` run under ``opentelemetry-instrument`` (the
runner sees to it), so the same contrib instrumentations are loaded in all three.

SIGTERM ends the process through ``SystemExit``, so atexit hooks flush what is pending. When a
handler is already installed (otel-bridge installs one), that one is kept.

With ``--cpu-report FILE`` the process writes its own CPU time (``getrusage``: every thread,
exited ones too, to the microsecond) and how many full collections its garbage collector has
made to FILE: a ``mark`` line on each SIGUSR1 (the runner's reading just before a burst) and
an ``exit`` line once the exit handlers have run, that is, once every variant has flushed what
it had pending. After the ``exit`` line it leaves with ``os._exit``, skipping the
interpreter's teardown: freeing the modules of a Django process costs 130-210 ms of CPU,
which moved by up to 70 ms between runs of the same variant (11-24), up to 175 µs per request
of a 400-request burst that no variant's work explains.

Before a mark's reading the process collects its garbage. Start-up leaves tens of thousands
of objects the collector has not yet examined, and the full collection they are owed (35-50
ms in the shop, 90-125 µs per request of a 400-request burst) otherwise fell wherever each
variant's start-up had left the collector's counters: inside otel-bridge's burst every time,
the floor's one burst later, native's during its start-up (11-24).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import resource
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from socketserver import ThreadingMixIn
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

SHOP_DIR = Path(__file__).resolve().parents[1] / "samples" / "shop"
VARIANTS = ("bare", "native", "sentry_errors", "sentry_otel", "otel_null", "bridge")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """A thread per request, as Django's runserver (``--threaded``)."""

    daemon_threads = True
    request_queue_size = 128


class _Server(WSGIServer):
    """One request at a time; a burst waits in the listen backlog, so the process never
    idles during it, and no thread start or GIL hand-over is measured with the request."""

    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one stderr line per request
        pass


def _setup_native(dsn: str, traces_sample_rate: float | None = 1.0) -> None:
    import sentry_sdk

    sentry_sdk.init(dsn=dsn, traces_sample_rate=traces_sample_rate)


def _setup_sentry_otel(dsn: str) -> None:
    import sentry_sdk
    from opentelemetry import trace
    from opentelemetry.propagate import set_global_textmap
    from opentelemetry.sdk.trace import TracerProvider
    from sentry_sdk.integrations.opentelemetry import SentryPropagator, SentrySpanProcessor

    sentry_sdk.init(dsn=dsn, traces_sample_rate=1.0, instrumenter="otel")
    provider = TracerProvider()
    provider.add_span_processor(SentrySpanProcessor())
    trace.set_tracer_provider(provider)
    set_global_textmap(SentryPropagator())


def _setup_otel_null() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from bench.null_exporter import NullSpanExporter

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullSpanExporter()))
    trace.set_tracer_provider(provider)


def setup(variant: str, dsn: str) -> None:
    if variant == "native":
        _setup_native(dsn)
    elif variant == "sentry_errors":
        _setup_native(dsn, traces_sample_rate=None)
    elif variant == "sentry_otel":
        _setup_sentry_otel(dsn)
    elif variant == "otel_null":
        _setup_otel_null()
    elif variant not in ("bare", "bridge"):
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")


def _exit_on_sigterm() -> None:
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)


def _write_cpu(path: str, label: str) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    full_collections = gc.get_stats()[-1]["collections"]
    with open(path, "a") as report:
        report.write(f"{label} {usage.ru_utime!r} {usage.ru_stime!r} {full_collections}\n")


def _mark_cpu_on_sigusr1(path: str) -> None:
    def _mark(signum: int, frame: FrameType | None) -> None:
        gc.collect()  # the start-up's garbage, before the reading (see the module's doc)
        _write_cpu(path, "mark")

    signal.signal(signal.SIGUSR1, _mark)


def _flush_report_cpu_and_leave(path: str, code: int) -> None:
    """What the interpreter does on its way out up to its teardown (threads that are not
    daemons joined, then the exit handlers, which flush), then the CPU report and out."""
    shutdown_threads = getattr(threading, "_shutdown", None)
    if shutdown_threads is not None:
        shutdown_threads()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    _write_cpu(path, "exit")
    os._exit(code)


def _exit_code(stop: SystemExit) -> int:
    return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the benchmark's server under test")
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", default=os.environ.get("SENTRY_DSN", ""))
    parser.add_argument("--threaded", action="store_true", help="a thread per request")
    parser.add_argument("--cpu-report", default="",
                        help="file for CPU readings: on SIGUSR1, and after the exit handlers")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(SHOP_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    setup(args.variant, args.dsn)
    _exit_on_sigterm()
    if args.cpu_report:
        _mark_cpu_on_sigusr1(args.cpu_report)

    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    server = make_server(
        "127.0.0.1", args.port, application,
        server_class=_ThreadingServer if args.threaded else _Server,
        handler_class=_QuietHandler,
    )
    code = 0
    try:
        server.serve_forever(poll_interval=0.5)
    except SystemExit as stop:
        if not args.cpu_report:
            raise
        code = _exit_code(stop)
    finally:
        server.server_close()
    if args.cpu_report:
        _flush_report_cpu_and_leave(args.cpu_report, code)
    return code


if __name__ == "__main__":
    sys.exit(main())
