"""A tiny peer service, NOT using otel-bridge, for interop tests.

    python -m tests.peers.peer sentry PORT   # plain sentry-sdk (SENTRY_DSN, PEER_SAMPLE_RATE)
    python -m tests.peers.peer w3c PORT      # plain OpenTelemetry SDK, W3C headers only

``/echo-headers/`` answers ``{"headers": {name: [values]}}`` (every value, so a duplicated
header shows); ``/call/?url=X`` GETs X with urllib (headers injected by the peer's own
instrumentation) and answers ``{"received": <its request headers>, "body": <X's JSON>}``.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _headers(environ: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
            # wsgiref joins repeated headers with ","; sentry-trace never contains one
            found[name] = value.split(",") if name == "sentry-trace" else [value]
    return found


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/echo-headers/":
        payload: dict[str, Any] = {"headers": _headers(environ)}
    elif path == "/call/" and query.get("url"):
        with urllib.request.urlopen(query["url"][0], timeout=20) as response:
            body = json.loads(response.read())
        payload = {"received": _headers(environ), "body": body}
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    data = json.dumps(payload).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def sentry_app() -> Wsgi:
    import sentry_sdk
    from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware

    sentry_sdk.init(
        dsn=os.environ["SENTRY_DSN"],
        traces_sample_rate=float(os.environ.get("PEER_SAMPLE_RATE", "1.0")),
        release="peer@1",
        environment="peer-env",
    )
    wrapped: Wsgi = SentryWsgiMiddleware(app)
    return wrapped


def w3c_app() -> Wsgi:
    from opentelemetry import propagate, trace
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.instrumentation.urllib import URLLibInstrumentor
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    trace.set_tracer_provider(TracerProvider())
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    URLLibInstrumentor().instrument()
    wrapped: Wsgi = OpenTelemetryMiddleware(app)
    return wrapped


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str]) -> int:
    mode, port = argv[1], int(argv[2])
    wsgi = sentry_app() if mode == "sentry" else w3c_app()
    with make_server("127.0.0.1", port, wsgi, handler_class=_Quiet) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
