"""otel-bridge in one command: a Django shop, instrumented only by env vars, reporting
transactions and errors to a local Sentry-compatible ingest.

    .venv/bin/python samples/demo.py

It starts ``samples/local_ingest.py`` on 127.0.0.1, runs the shop with
``opentelemetry-instrument python manage.py runserver --noreload`` and
``SENTRY_DSN``/``OTEL_SERVICE_NAME=shop``, makes a few requests (an order, a 404, an
unhandled error), then prints what the ingest received. Exit status 0 if at least one
transaction and one error arrived, else 1 (with the shop's stderr).
"""

from __future__ import annotations

import contextlib
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from samples.local_ingest import RecordingIngest  # noqa: E402

SHOP_DIR = ROOT / "samples" / "shop"
BIN = Path(sys.executable).parent
REQUESTS = ["/orders/1/", "/orders/2/", "/not-found/", "/boom/"]
SETTLE_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def delivered_all(ingest: RecordingIngest) -> bool:
    """One transaction per request and at least one error."""
    return len(ingest.events("transaction")) >= len(REQUESTS) and bool(ingest.events("event"))


def summarize(ingest: RecordingIngest) -> tuple[int, int]:
    transactions = ingest.events("transaction")
    errors = ingest.events("event")
    print(f"\nTransactions received: {len(transactions)}")
    for tx in transactions:
        trace: dict[str, Any] = tx.get("contexts", {}).get("trace", {})
        print(
            f"  {tx.get('transaction')!s:<32} op={trace.get('op')!s:<12}"
            f" status={trace.get('status')!s:<10} spans={len(tx.get('spans', []))}"
            f" trace={trace.get('trace_id')}"
        )
    print(f"Errors received: {len(errors)}")
    for event in errors:
        values = (event.get("exception") or {}).get("values") or [{}]
        trace = event.get("contexts", {}).get("trace", {})
        title = f"{values[-1].get('type')}: {values[-1].get('value')}"
        print(f"  {title:<40} trace={trace.get('trace_id')} span={trace.get('span_id')}")
    others = sorted({item.type for item in ingest.items()} - {"transaction", "event"})
    if others:
        print("Other items: " + ", ".join(f"{t} x{len(ingest.items(t))}" for t in others))
    return len(transactions), len(errors)


def main() -> int:
    # Started as a background job of a non-interactive shell (`./scripts/demo &`), this
    # process inherits SIGINT ignored and the shop would too: it would not stop on the SIGINT
    # below. A handler of our own is reset to the default in the shop when it execs.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="otel-bridge-demo-"))
    port = free_port()
    with RecordingIngest() as ingest:
        env = {
            "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "/usr/bin:/bin")]),
            "HOME": os.environ.get("HOME", str(workdir)),
            "PYTHONUNBUFFERED": "1",
            "SENTRY_DSN": ingest.dsn,
            "SENTRY_TRACES_SAMPLE_RATE": "1.0",
            "SENTRY_ENVIRONMENT": "demo",
            # the OTel Django instrumentation reads settings before manage.py runs: without
            # this it configures empty default settings
            "DJANGO_SETTINGS_MODULE": "shop.settings",
            "OTEL_SERVICE_NAME": "shop",
            "OTEL_TRACES_EXPORTER": "sentry",
            "OTEL_METRICS_EXPORTER": "none",
            "SHOP_DB_PATH": str(workdir / "shop.sqlite3"),
        }
        command = [
            str(BIN / "opentelemetry-instrument"), sys.executable, "manage.py",
            "runserver", "--noreload", f"127.0.0.1:{port}",
        ]
        print(f"ingest: {ingest.dsn}")
        print("shop:   " + " ".join([*command[:1], "python", *command[2:]]))
        stderr_path = workdir / "shop.stderr"
        with open(stderr_path, "wb") as stderr:
            shop = subprocess.Popen(
                command, cwd=SHOP_DIR, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                stdin=subprocess.DEVNULL,
            )
        try:
            if not wait_listening(port, shop):
                print("the shop did not start", file=sys.stderr)
                print(stderr_path.read_text(errors="replace"), file=sys.stderr)
                return 1
            for path in REQUESTS:
                print(f"GET {path} -> {get(f'http://127.0.0.1:{port}{path}')}")
            print(f"waiting up to {SETTLE_SECONDS:.0f}s for the pipeline to deliver...")
            with contextlib.suppress(AssertionError):
                ingest.wait_for(delivered_all, timeout=SETTLE_SECONDS)
        finally:
            # SIGINT: runserver exits through KeyboardInterrupt, so exit-time flushes run
            shop.send_signal(signal.SIGINT)
            try:
                shop.wait(timeout=10)
            except subprocess.TimeoutExpired:
                shop.kill()
                shop.wait()
        # give a flush-on-exit a moment to land
        time.sleep(0.5)
        transactions, errors = summarize(ingest)
    ok = transactions >= 1 and errors >= 1
    if not ok:
        print("\nExpected at least one transaction and one error. Shop stderr:", file=sys.stderr)
        print(stderr_path.read_text(errors="replace")[-5000:], file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
