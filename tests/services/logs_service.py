"""A tiny WSGI service that logs through structlog and stdlib logging inside a request.

Run under ``opentelemetry-instrument`` (tests/test_logs_service.py does):

    LOGS_SERVICE_BACKEND=stdlib opentelemetry-instrument python tests/services/logs_service.py 8000

``LOGS_SERVICE_BACKEND``: ``stdlib`` (structlog.stdlib.LoggerFactory, records go through
stdlib logging too) or ``print`` (structlog's PrintLogger). structlog is configured the usual
way, with no otel-bridge code: the ``structlog`` instrumentation adds the processors.

Routes: ``/health``; ``/work`` logs and answers the request's trace id as JSON; ``/flush``
flushes sentry-sdk and the OTel logger provider so the test need not wait for exit.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import structlog
from opentelemetry import trace
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

BACKEND = os.environ.get("LOGS_SERVICE_BACKEND", "stdlib")

logging.basicConfig(
    level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s %(message)s"
)
structlog.configure(
    processors=[
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(),
    ],
    logger_factory=(
        structlog.stdlib.LoggerFactory()
        if BACKEND == "stdlib"
        else structlog.PrintLoggerFactory(sys.stdout)
    ),
    wrapper_class=(
        structlog.stdlib.BoundLogger
        if BACKEND == "stdlib"
        else structlog.make_filtering_bound_logger(logging.INFO)
    ),
    cache_logger_on_first_use=True,
)

# PrintLogger has no name: bind it as the `logger` key, as `add_logger_name` would for stdlib.
log = (
    structlog.get_logger("shop.orders")
    if BACKEND == "stdlib"
    else structlog.get_logger().bind(logger="shop.orders")
)
stdlib_log = logging.getLogger("shop.payments")

StartResponse = Callable[..., Any]


class PaymentDeclined(RuntimeError):
    pass


def work() -> dict[str, str]:
    span_context = trace.get_current_span().get_span_context()
    log.debug("order.debug_detail", order_id=7)  # below every threshold: nowhere
    log.info("order.loaded", order_id=7, tenant="acme", password="hunter2")
    stdlib_log.info("stdlib step %s", "reserve")
    try:
        raise PaymentDeclined("card declined")
    except PaymentDeclined:
        log.exception("payment.failed", order_id=7, tenant="acme", card_token="tok_123")
    log.error("inventory.low", sku="A-1", left=0)  # an error without an exception
    stdlib_log.error("stdlib failure for order %s", 7)
    return {
        "trace_id": format(span_context.trace_id, "032x"),
        "span_id": format(span_context.span_id, "016x"),
    }


def flush() -> None:
    import sentry_sdk
    from opentelemetry._logs import get_logger_provider

    sentry_sdk.flush(timeout=5)
    provider = get_logger_provider()
    force_flush = getattr(provider, "force_flush", None)
    if callable(force_flush):
        force_flush()


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    body: dict[str, Any] = {"ok": True}
    if path == "/work":
        body = work()
    elif path == "/flush":
        flush()
    elif path != "/health":
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b"{}"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ["LOGS_SERVICE_PORT"])
    wsgi = OpenTelemetryMiddleware(app)
    with make_server("127.0.0.1", port, wsgi, handler_class=QuietHandler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
