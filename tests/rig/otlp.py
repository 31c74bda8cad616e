"""OTLP/HTTP receiver on 127.0.0.1 decoding protobuf with ``opentelemetry-proto``.

    with OtlpReceiver() as otlp:
        env = {"OTEL_TRACES_EXPORTER": "otlp",
               "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        ...
        spans = otlp.wait_for_spans(3)

Written by hand because the OTel Python packages ship exporters but no receiver.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypedDict

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["LogRecordDict", "OtlpReceiver", "SpanDict", "any_value", "attributes"]


class SpanDict(TypedDict):
    """A received span, flattened. Ids are lowercase hex ("" when absent)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int  # OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    events: list[dict[str, Any]]
    start_time_unix_nano: int
    end_time_unix_nano: int


class LogRecordDict(TypedDict):
    """A received log record, flattened."""

    body: Any
    severity_text: str
    severity_number: int
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


def any_value(value: AnyValue) -> Any:
    """Convert an OTLP ``AnyValue`` into the matching Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Sequence[KeyValue]) -> dict[str, Any]:
    """Convert repeated OTLP ``KeyValue`` into a dict."""
    return {pair.key: any_value(pair.value) for pair in pairs}


_ROUTES: dict[str, tuple[type[Message], type[Message]]] = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: OtlpReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        route = _ROUTES.get(self.path.split("?", 1)[0].rstrip("/"))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if route is None:
            self._answer(404, b"")
            return
        request_type, response_type = route
        try:
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            message = request_type()
            message.ParseFromString(body)
        except (DecodeError, OSError, EOFError, zlib.error):
            self._answer(400, b"")
            return
        self.server.receiver._record(message)
        self._answer(200, response_type().SerializeToString())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class OtlpReceiver:
    """OTLP/HTTP (protobuf) receiver for ``/v1/traces``, ``/v1/logs``, ``/v1/metrics``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._traces: list[ExportTraceServiceRequest] = []
        self._logs: list[ExportLogsServiceRequest] = []
        self._metrics: list[ExportMetricsServiceRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    def __enter__(self) -> OtlpReceiver:
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
        if self._server is not None:
            return
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.receiver = self
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"otlp-receiver-{self._port}",
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def endpoint(self) -> str:
        """Value for ``OTEL_EXPORTER_OTLP_ENDPOINT``: ``http://127.0.0.1:PORT``."""
        if not self._port:
            raise RuntimeError("OtlpReceiver has not been started")
        return f"http://127.0.0.1:{self._port}"

    def _record(self, message: Message) -> None:
        with self._cond:
            if isinstance(message, ExportTraceServiceRequest):
                self._traces.append(message)
            elif isinstance(message, ExportLogsServiceRequest):
                self._logs.append(message)
            elif isinstance(message, ExportMetricsServiceRequest):
                self._metrics.append(message)
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._traces.clear()
            self._logs.clear()
            self._metrics.clear()

    @property
    def trace_requests(self) -> list[ExportTraceServiceRequest]:
        with self._cond:
            return list(self._traces)

    @property
    def log_requests(self) -> list[ExportLogsServiceRequest]:
        with self._cond:
            return list(self._logs)

    @property
    def metric_requests(self) -> list[ExportMetricsServiceRequest]:
        with self._cond:
            return list(self._metrics)

    def spans(self) -> list[SpanDict]:
        """Every received span, flattened, in arrival order."""
        result: list[SpanDict] = []
        for request in self.trace_requests:
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        result.append(
                            SpanDict(
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                kind=int(span.kind),
                                attributes=attributes(span.attributes),
                                resource=resource,
                                scope=scope_spans.scope.name,
                                status_code=int(span.status.code),
                                status_message=span.status.message,
                                events=[
                                    {"name": e.name, "attributes": attributes(e.attributes)}
                                    for e in span.events
                                ],
                                start_time_unix_nano=span.start_time_unix_nano,
                                end_time_unix_nano=span.end_time_unix_nano,
                            )
                        )
        return result

    def log_records(self) -> list[LogRecordDict]:
        """Every received log record, flattened, in arrival order."""
        result: list[LogRecordDict] = []
        for request in self.log_requests:
            for resource_logs in request.resource_logs:
                resource = attributes(resource_logs.resource.attributes)
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        result.append(
                            LogRecordDict(
                                body=any_value(record.body),
                                severity_text=record.severity_text,
                                severity_number=int(record.severity_number),
                                trace_id=record.trace_id.hex(),
                                span_id=record.span_id.hex(),
                                attributes=attributes(record.attributes),
                                resource=resource,
                            )
                        )
        return result

    def wait_for_spans(
        self, count_or_predicate: int | Callable[[list[SpanDict]], bool] = 1, timeout: float = 10.0
    ) -> list[SpanDict]:
        """Wait until at least N spans arrived (or ``predicate(spans)`` holds); return all.

        Raises ``AssertionError`` listing what was received on timeout.
        """
        predicate: Callable[[list[SpanDict]], bool]
        if isinstance(count_or_predicate, int):
            count = count_or_predicate
            predicate = lambda spans: len(spans) >= count  # noqa: E731
        else:
            predicate = count_or_predicate
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                listing = "\n".join(
                    f"  {s['name']} trace={s['trace_id']} span={s['span_id']}"
                    f" parent={s['parent_span_id']} kind={s['kind']}"
                    for s in spans
                )
                raise AssertionError(
                    f"timed out after {timeout}s waiting for spans ({count_or_predicate!r});"
                    f" received {len(spans)}:\n{listing}"
                )
            with self._cond:
                self._cond.wait(min(remaining, 0.2))
