"""Pure mapping from finished OpenTelemetry spans to Sentry payload dicts.

Nothing here does I/O, holds state or starts threads: every function takes ``ReadableSpan``s
(or a ``Resource``) and returns plain, JSON-safe dicts. The exporter decides what to send
and when. Both generations of the HTTP and database semantic conventions are read (stable
names first), because contrib instrumentations emit one, the other or both depending on
``OTEL_SEMCONV_STABILITY_OPT_IN``. The rules are tabulated in ``docs/mapping.md``.

sentry-sdk's own (deprecated) ``SentrySpanProcessor`` holds a version of these rules, but it
reads old attribute names only and writes into live sentry-sdk spans, so it cannot be reused.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.version import __version__ as _otel_sdk_version
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import Attributes

from otel_bridge import __version__ as _bridge_version
from otel_bridge.dsc import INTERNAL_ATTRIBUTES
from otel_bridge.pipeline.ids import new_event_id
from otel_bridge.span_attributes import SPAN_ID, TRACE_ID, attributes_view, span_attributes

ORIGIN = "auto.otel"
DEFAULT_OP = "default"
DEFAULT_ENVIRONMENT = "production"
TRANSACTION_SOURCES = frozenset({"custom", "url", "route", "view", "component", "task"})

# Sentry's documented tag limits; Relay drops tags that break them, so we clean instead.
MAX_TAG_KEY_LENGTH = 32
MAX_TAG_VALUE_LENGTH = 200

# As sentry-sdk's get_span_status_from_http_code, where Sentry's table allows several (400,
# 409), so that the same failure gets the same status from either; 499 as Sentry's table.
_HTTP_STATUS = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    409: "already_exists",
    413: "failed_precondition",
    429: "resource_exhausted",
    499: "cancelled",
    500: "internal_error",
    501: "unimplemented",
    503: "unavailable",
    504: "deadline_exceeded",
}

# gRPC status codes 0..16 in order, as Sentry names them.
_GRPC_STATUS = (
    "ok",
    "cancelled",
    "unknown_error",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal_error",
    "unavailable",
    "data_loss",
    "unauthenticated",
)
_GRPC_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
_GRPC_BY_NAME = dict(zip(_GRPC_NAMES, _GRPC_STATUS, strict=True))

_REQUEST_HEADER_PREFIX = "http.request.header."


# -- small helpers -------------------------------------------------------------------------


_attrs = span_attributes


def _first_str(attrs: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        stripped = value.strip()
        # isdigit() also accepts superscripts and other digits int() refuses
        if stripped.isascii() and stripped.isdigit():
            return int(stripped)
    return None


def json_safe(value: Any) -> Any:
    """A value Sentry's JSON parser accepts: sequences become lists, NaN/inf become strings.

    Relay rejects non-finite numbers, which ``json.dumps`` would write as bare ``NaN``.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(item) for item in value]
    return str(value)


# Values json_safe hands back as they are (exact types: subclasses take the long way).
_JSON_AS_IS = frozenset({str, int, bool, type(None)})


def attributes_dict(attributes: Attributes | Mapping[str, Any] | None) -> dict[str, Any]:
    """OTel attributes (or resource attributes) as a JSON-safe dict, without the sampling
    bookkeeping the bridge keeps on local roots (it travels in the envelope header)."""
    if not attributes:
        return {}
    return {
        str(key): value if value.__class__ in _JSON_AS_IS else json_safe(value)
        for key, value in attributes.items()
        if key not in INTERNAL_ATTRIBUTES
    }


def sentry_tag_key(key: str) -> str:
    """A tag key Sentry accepts: ``[a-zA-Z0-9_.:-]``, at most 32 characters."""
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_.:-") else "_" for ch in key)
    return cleaned[:MAX_TAG_KEY_LENGTH]


def sentry_tag_value(value: str) -> str:
    """A tag value Sentry accepts: no line breaks, at most 200 characters, trimmed."""
    cleaned = " ".join(value.split())
    if len(cleaned) > MAX_TAG_VALUE_LENGTH:
        cleaned = cleaned[: MAX_TAG_VALUE_LENGTH - 1] + "…"
    return cleaned


def sentry_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags cleaned to Sentry's limits; entries left empty by cleaning are dropped."""
    result: dict[str, str] = {}
    for key, value in tags.items():
        if value is None:
            continue
        clean_key = sentry_tag_key(str(key))
        clean_value = sentry_tag_value(str(value))
        if clean_key and clean_value:
            result[clean_key] = clean_value
    return result


# printf-style (noqa: UP031) rather than f"{id:032x}": int.__format__ parses its spec at
# every call and takes about twice as long, and the mapping writes three ids per span.
def format_trace_id(trace_id: int) -> str:
    return "%032x" % trace_id  # noqa: UP031


def format_span_id(span_id: int) -> str:
    return "%016x" % span_id  # noqa: UP031


def _seconds(nanoseconds: int | None) -> float:
    return (nanoseconds or 0) / 1e9


def _strip_url(url: str, *, keep_host: bool = True) -> str:
    """A URL without userinfo, query and fragment (or just its path with keep_host=False)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0]
    if not keep_host or not parts.netloc:
        return parts.path or "/"
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal loses its brackets in .hostname
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _strip_query(target: str) -> str:
    return target.split("?", 1)[0].split("#", 1)[0]


# -- HTTP ----------------------------------------------------------------------------------


def http_method(span: ReadableSpan) -> str | None:
    """The request method, stable name first; ``_OTHER`` resolves to the original method."""
    return _http_method(_attrs(span))


# The functions taking ``attrs`` are the mapping's own: a span's attributes are looked up
# once per span and handed down, rather than once per question asked of the span.
HTTP_METHOD_KEYS = ("http.request.method", "http.method")


def _http_method(attrs: Mapping[str, Any]) -> str | None:
    method = _first_str(attrs, *HTTP_METHOD_KEYS)
    if method == "_OTHER":
        method = _first_str(attrs, "http.request.method_original") or method
    return method


def http_status_code(span: ReadableSpan) -> int | None:
    return _http_status_code(_attrs(span))


def _http_status_code(attrs: Mapping[str, Any]) -> int | None:
    for key in ("http.response.status_code", "http.status_code"):
        code = _as_int(attrs.get(key))
        if code is not None:
            return code
    return None


def _full_url(attrs: Mapping[str, Any]) -> str | None:
    return _first_str(attrs, "url.full", "http.url")


def _http_path(attrs: Mapping[str, Any]) -> str | None:
    """The request path without query: ``url.path``, ``http.target``, else from the full URL."""
    path = _first_str(attrs, "url.path")
    if path:
        return path
    target = _first_str(attrs, "http.target")
    if target:
        return _strip_query(target) or "/"
    url = _full_url(attrs)
    if url:
        return _strip_url(url, keep_host=False)
    return None


def is_http_server(span: ReadableSpan) -> bool:
    return _is_http_server(span, _attrs(span))


def _is_http_server(span: ReadableSpan, attrs: Mapping[str, Any]) -> bool:
    return span._kind is SpanKind.SERVER and _http_method(attrs) is not None


def _http_description(span: ReadableSpan, attrs: Mapping[str, Any], method: str) -> str:
    if span._kind is SpanKind.CLIENT:
        # Client spans name the remote resource; Sentry's requests module groups by host.
        url = _full_url(attrs)
        if url:
            return f"{method} {_strip_url(url)}"
        target = _first_str(attrs, "http.route") or _http_path(attrs)
        return f"{method} {target}" if target else method
    target = _first_str(attrs, "http.route") or _http_path(attrs)
    return f"{method} {target}" if target else method


# -- status --------------------------------------------------------------------------------


def _status_from_http(code: int) -> str | None:
    if code in _HTTP_STATUS:
        return _HTTP_STATUS[code]
    if 400 <= code < 500:
        return "invalid_argument"
    if 500 <= code < 600:
        return "internal_error"
    return None


def _status_from_grpc(value: Any) -> str | None:
    code = _as_int(value)
    if code is not None:
        return _GRPC_STATUS[code] if 0 < code < len(_GRPC_STATUS) else None
    if isinstance(value, str):
        status = _GRPC_BY_NAME.get(value.strip().upper())
        return status if status != "ok" else None
    return None


def sentry_status(span: ReadableSpan) -> str:
    """Sentry span status from the OTel status.

    UNSET and OK give ``ok`` (the instrumentation decides what is an error: a server's 404
    is not one for OTel). ERROR is refined by the HTTP status code (>= 400), then the gRPC
    code (non-zero), else ``unknown_error``; an ERROR span never maps to ``ok``.
    """
    return _sentry_status(span, _attrs(span))


def _sentry_status(span: ReadableSpan, attrs: Mapping[str, Any]) -> str:
    if span._status._status_code is not StatusCode.ERROR:
        return "ok"
    code = _http_status_code(attrs)
    if code is not None:
        status = _status_from_http(code)
        if status is not None:
            return status
    for key in ("rpc.grpc.status_code", "rpc.response.status_code"):
        status = _status_from_grpc(attrs.get(key))
        if status is not None:
            return status
    return "unknown_error"


# -- op and description --------------------------------------------------------------------


def _messaging_op(span: ReadableSpan, attrs: Mapping[str, Any]) -> str:
    if span.kind is SpanKind.PRODUCER:
        return "queue.publish"
    if span.kind is SpanKind.CONSUMER:
        return "queue.process"
    operation = _first_str(attrs, "messaging.operation.type", "messaging.operation")
    if operation in ("publish", "send", "create"):
        return "queue.publish"
    if operation in ("process", "receive", "deliver"):
        return "queue.process"
    return "message"


def op_and_description(span: ReadableSpan) -> tuple[str, str]:
    """Sentry ``op`` and ``description`` of a span, first matching rule wins.

    1. ``sentry.op`` attribute: explicit override (our WebSocket instrumentations set
       ``websocket.server``/``websocket.client``); description is the span name.
    2. ``websocket.message.type``: ``websocket.server`` for SERVER/CONSUMER spans, else
       ``websocket.client``; description is the span name.
    3. HTTP method (``http.request.method``/``http.method``): ``http.server``/``http.client``
       by kind (``http`` for other kinds). Description ``METHOD target``: for servers the
       ``http.route``, else the path (``url.path``, ``http.target``, path of
       ``url.full``/``http.url``); for clients the full URL without credentials, query and
       fragment.
    4. ``db.system.name``/``db.system``: ``db``, description ``db.query.text``/
       ``db.statement``, else the span name.
    5. ``rpc.service``: ``rpc``, description the span name.
    6. ``messaging.system``, or kind PRODUCER/CONSUMER: ``queue.publish`` (PRODUCER),
       ``queue.process`` (CONSUMER), else from ``messaging.operation[.type]``, else
       ``message``; description the span name. (Celery's spans carry no
       ``messaging.system`` but are PRODUCER/CONSUMER.)
    7. ``faas.trigger``: the trigger value (``http``, ``pubsub``, ``timer``, ...).
    8. Anything else: ``default`` — Sentry's op for spans it knows nothing about; using the
       span name would make ops unbounded and INTERNAL does not mean ``function``.
    """
    return _op_and_description(span, _attrs(span))


def _op_and_description(span: ReadableSpan, attrs: Mapping[str, Any]) -> tuple[str, str]:
    # Runs for every span sent. The rules' keys are mostly absent (a database span has no
    # `sentry.op` and no HTTP method): a membership test first is a C-level lookup where
    # _first_str would be a Python call.
    name = span._name
    explicit = _first_str(attrs, "sentry.op") if "sentry.op" in attrs else None
    if explicit:
        return explicit, name
    kind = span._kind
    if "websocket.message.type" in attrs:
        server_side = kind in (SpanKind.SERVER, SpanKind.CONSUMER)
        return ("websocket.server" if server_side else "websocket.client"), name
    method = None if attrs.keys().isdisjoint(HTTP_METHOD_KEYS) else _http_method(attrs)
    if method:
        if kind is SpanKind.SERVER:
            op = "http.server"
        elif kind is SpanKind.CLIENT:
            op = "http.client"
        else:
            op = "http"
        return op, _http_description(span, attrs, method)
    if _first_str(attrs, "db.system.name", "db.system"):
        return "db", _first_str(attrs, "db.query.text", "db.statement") or name
    # rpc.service is deprecated in the current conventions (the service is in rpc.method);
    # rpc.system.name (rpc.system before it) says the span is a call all the same.
    if _first_str(attrs, "rpc.service", "rpc.system.name", "rpc.system"):
        return "rpc", name
    if _first_str(attrs, "messaging.system") or kind in (
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
    ):
        return _messaging_op(span, attrs), name
    trigger = _first_str(attrs, "faas.trigger")
    if trigger:
        return trigger, name
    return DEFAULT_OP, name


# -- transaction name ----------------------------------------------------------------------


def transaction_name_and_source(span: ReadableSpan) -> tuple[str, str]:
    """Transaction name and ``transaction_info.source`` for a local root.

    - HTTP with ``http.route``: ``"METHOD route"``, source ``route`` (Django 0.66 puts
      ``orders/<int:id>/`` there and names the span the same way).
    - HTTP without route: ``"METHOD path"`` (clients: ``"METHOD url"`` without query or
      credentials), source ``url``; without path either: the span name, source ``custom``.
    - CONSUMER spans, or spans with ``code.function``/``code.function.name``: tasks, named
      by ``celery.task_name`` when present, else the span name; source ``task``.
    - Anything else: the span name, source ``custom``.

    A ``sentry.source`` attribute holding a valid Sentry source overrides the source.
    """
    attrs = _attrs(span)
    name, source = _natural_name(span, attrs)
    override = _first_str(attrs, "sentry.source")
    if override in TRANSACTION_SOURCES:
        source = override
    return name, source


def _natural_name(span: ReadableSpan, attrs: Mapping[str, Any]) -> tuple[str, str]:
    method = _http_method(attrs)
    if method:
        route = _first_str(attrs, "http.route")
        if route:
            return f"{method} {route}", "route"
        if span._kind is SpanKind.CLIENT and _full_url(attrs):
            return _http_description(span, attrs, method), "url"
        path = _http_path(attrs)
        if path:
            return f"{method} {path}", "url"
        return span._name, "custom"
    if span._kind is SpanKind.CONSUMER or _first_str(
        attrs, "code.function", "code.function.name"
    ):
        return _first_str(attrs, "celery.task_name") or span._name, "task"
    return span._name, "custom"


# -- spans and events ----------------------------------------------------------------------


def _origin(attrs: Mapping[str, Any]) -> str:
    return _first_str(attrs, "sentry.origin") or ORIGIN


def span_data(span: ReadableSpan) -> dict[str, Any]:
    """All attributes, JSON-safe, plus ``otel.kind`` as the kind's name (``"SERVER"``).

    The name rather than the enum's number (DESIGN.md says "numeric"): it reads in Sentry's
    UI without a lookup table.
    """
    return _span_data(span, _attrs(span))


def _span_data(span: ReadableSpan, attrs: Mapping[str, Any]) -> dict[str, Any]:
    data = attributes_dict(attrs)
    data["otel.kind"] = span.kind.name
    return data


def _ids(span: ReadableSpan) -> tuple[str, str]:
    context = span._context
    if context is None:  # only hand-made ReadableSpans lack one; the SDK always sets it
        raise ValueError(f"span {span.name!r} has no span context")
    return format_trace_id(context[TRACE_ID]), format_span_id(context[SPAN_ID])


def span_parent_id(span: ReadableSpan) -> str | None:
    parent = span._parent
    return format_span_id(parent[SPAN_ID]) if parent is not None else None


# SpanKind's names, looked up rather than read through Enum's Python-level `name` property,
# and by the member's id: hashing an Enum member is a Python-level call too.
_KIND_NAMES = {id(kind): kind.name for kind in SpanKind}


# What a child span's name, kind and attributes make of it (op, description, data, origin),
# remembered: a request's queries repeat from one request to the next (the same SQL
# templates, the same instrumentation's attributes), and working it out again was most of
# a child span's mapping (48K instructions per request of the shop's five queries, counted
# by callgrind, 2026-11-23).
_SHAPES: dict[tuple[Any, ...], tuple[str, str, dict[str, Any], str]] = {}
_MAX_SHAPES = 1024


def sentry_span(span: ReadableSpan) -> dict[str, Any]:
    """One entry of a transaction's ``spans[]``.

    It runs for every span sent, on the exporter's thread: each of the span's fields is
    read once here, behind the SDK's properties (see otel_bridge/span_attributes.py), and
    the small helpers the other fields use (ids, times, status, data) are written out,
    each being a Python-level call per span."""
    context = span._context
    if context is None:  # only hand-made ReadableSpans lack one; the SDK always sets it
        raise ValueError(f"span {span.name!r} has no span context")
    start, end = span._start_time, span._end_time
    attrs = attributes_view(span)
    if end is None:  # a live span's attributes may still change: read a copy
        attrs = dict(attrs)
        end = start
    kind_id = id(span._kind)
    types = tuple(map(type, attrs.values()))
    # Keys compare values by ==, and True == 1 == 1.0, -0.0 == 0.0, (True,) == (1,): with
    # the values' types in the key, only floats and sequences could still be told apart
    # wrongly, and those spans are worked out every time.
    remember = tuple not in types and float not in types
    key = (span._name, kind_id, tuple(attrs.items()), types)
    shape = None
    if remember:
        try:
            shape = _SHAPES.get(key)
        except TypeError:  # an unhashable value (a list, in a span made by hand)
            remember = False
    if shape is None:
        op, description = _op_and_description(span, attrs)
        data = attributes_dict(attrs)
        data["otel.kind"] = _KIND_NAMES[kind_id]
        origin = _origin(attrs) if "sentry.origin" in attrs else ORIGIN
        shape = (op, description, data, origin)
        if remember and span._end_time is not None:  # a live span's may still change
            if len(_SHAPES) >= _MAX_SHAPES:  # keys made of data: bounded
                _SHAPES.clear()
            _SHAPES[key] = shape
    op, description, data, origin = shape
    parent = span._parent
    return {
        "trace_id": "%032x" % context[TRACE_ID],  # noqa: UP031
        "span_id": "%016x" % context[SPAN_ID],  # noqa: UP031
        "parent_span_id": "%016x" % parent[SPAN_ID] if parent is not None else None,  # noqa: UP031
        "op": op,
        "description": description,
        "status": (
            "ok"
            if span._status._status_code is not StatusCode.ERROR
            else _sentry_status(span, attrs)
        ),
        "start_timestamp": (start or 0) / 1e9,
        "timestamp": (end or 0) / 1e9,
        "origin": origin,
        "data": dict(data),  # each event its own: the remembered one is never handed out
    }


def event_fields_from_resource(
    resource: Resource, *, release: str | None, environment: str | None
) -> dict[str, Any]:
    """``release``, ``environment``, ``server_name`` and ``tags`` of an event.

    The ``release``/``environment`` arguments (``SENTRY_RELEASE``/``SENTRY_ENVIRONMENT``)
    win over ``service.version`` and ``deployment.environment.name`` (or the older
    ``deployment.environment``); the environment defaults to ``production`` like
    sentry-sdk's. ``release`` and ``server_name`` are left out when unknown.
    """
    attrs = resource.attributes
    fields: dict[str, Any] = {}
    resolved_release = release or _first_str(attrs, "service.version")
    if resolved_release:
        fields["release"] = resolved_release
    fields["environment"] = (
        environment
        or _first_str(attrs, "deployment.environment.name", "deployment.environment")
        or DEFAULT_ENVIRONMENT
    )
    server_name = _first_str(attrs, "host.name")
    if server_name:
        fields["server_name"] = server_name
    fields["tags"] = sentry_tags({"service.name": _first_str(attrs, "service.name")})
    return fields


@functools.cache
def sdk_info() -> dict[str, Any]:
    import sentry_sdk

    return {
        "name": "otel-bridge",
        "version": _bridge_version,
        "packages": [
            {"name": "pypi:otel-bridge", "version": _bridge_version},
            {"name": "pypi:opentelemetry-sdk", "version": _otel_sdk_version},
            {"name": "pypi:sentry-sdk", "version": sentry_sdk.VERSION},
        ],
    }


def _request_url(attrs: Mapping[str, Any]) -> str | None:
    url = _full_url(attrs)
    if url:
        return _strip_url(url)
    scheme = _first_str(attrs, "url.scheme", "http.scheme") or "http"
    path = _http_path(attrs) or "/"
    header_host = _first_str(attrs, "http.host")
    if header_host:
        # The Host header as the client sent it, with its port when it had one: the port
        # beside it (net.host.port) is the one the server listens on, which behind a proxy
        # is not the one requested.
        return f"{scheme}://{header_host}{path}"
    host = _first_str(attrs, "server.address", "http.server_name", "net.host.name")
    if not host:
        return None
    if host.count(":") > 1 and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address, as a URL writes it
    port = _as_int(attrs.get("server.port", attrs.get("net.host.port")))
    has_port = host.rpartition("]")[2].find(":") >= 0 if host.startswith("[") else ":" in host
    if port is not None and not has_port and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}{path}"


def _query_string(attrs: Mapping[str, Any]) -> str | None:
    query = _first_str(attrs, "url.query")
    if query:
        return query
    for target in (_first_str(attrs, "http.target"), _full_url(attrs)):
        if target and "?" in target:
            return target.split("?", 1)[1].split("#", 1)[0] or None
    return None


def request_info(span: ReadableSpan) -> dict[str, Any]:
    """Sentry's ``request`` interface from an HTTP server span (secrets are scrubbed later).

    Captured request headers (``http.request.header.<name>``, see contrib's
    ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST``) become ``headers``.
    """
    return _request_info(_attrs(span))


def _request_info(attrs: Mapping[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {"method": _http_method(attrs)}
    url = _request_url(attrs)
    if url:
        request["url"] = url
    query = _query_string(attrs)
    if query:
        request["query_string"] = query
    headers = {
        key[len(_REQUEST_HEADER_PREFIX) :].replace("_", "-"): (
            ", ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
        )
        for key, value in attrs.items()
        if key.startswith(_REQUEST_HEADER_PREFIX)
    }
    if headers:
        request["headers"] = headers
    return request


def _runtime_context(resource: Resource) -> dict[str, Any] | None:
    attrs = resource.attributes
    name = _first_str(attrs, "process.runtime.name")
    if not name:
        return None
    runtime = {"name": name}
    version = _first_str(attrs, "process.runtime.version")
    if version:
        runtime["version"] = version
    return runtime


@dataclass(frozen=True)
class _ResourceParts:
    resource: Resource
    release: str | None
    environment: str | None
    fields: dict[str, Any]
    attributes: dict[str, Any]
    runtime: dict[str, Any] | None


_resource_parts_cache: _ResourceParts | None = None


def _resource_parts(
    resource: Resource, release: str | None, environment: str | None
) -> _ResourceParts:
    # Every span of a process shares one Resource: map it once, not once per event.
    # (Resource's own hash serialises all its attributes, so this compares identity.)
    global _resource_parts_cache
    cached = _resource_parts_cache
    if (
        cached is not None
        and cached.resource is resource
        and cached.release == release
        and cached.environment == environment
    ):
        return cached
    cached = _resource_parts_cache = _ResourceParts(
        resource,
        release,
        environment,
        event_fields_from_resource(resource, release=release, environment=environment),
        attributes_dict(resource.attributes),
        _runtime_context(resource),
    )
    return cached


def resource_event_fields(
    resource: Resource, *, release: str | None, environment: str | None
) -> dict[str, Any]:
    """:func:`event_fields_from_resource`, mapped once per resource (do not modify it)."""
    return _resource_parts(resource, release, environment).fields


def base_event(
    span: ReadableSpan, *, release: str | None, environment: str | None
) -> dict[str, Any]:
    """Fields shared by transaction and error events built from one span."""
    parts = _resource_parts(span._resource, release, environment)
    event: dict[str, Any] = {
        "event_id": new_event_id(),
        "platform": "python",
        **parts.fields,
        "sdk": sdk_info(),
    }
    if "tags" in event:  # the one part that is merged into later: the event's own copy
        event["tags"] = dict(event["tags"])
    attrs = _attrs(span)
    contexts: dict[str, Any] = {
        "otel": {"attributes": attributes_dict(attrs), "resource": parts.attributes}
    }
    if parts.runtime:
        contexts["runtime"] = dict(parts.runtime)
    if _is_http_server(span, attrs):
        event["request"] = _request_info(attrs)
        status_code = _http_status_code(attrs)
        if status_code is not None:
            contexts["response"] = {"status_code": status_code}
    event["contexts"] = contexts
    return event


def trace_context(span: ReadableSpan, *, parent_id: str | None = None) -> dict[str, Any]:
    """``contexts.trace`` of an event about ``span``; ``parent_id`` overrides its parent."""
    trace_id, span_id = _ids(span)
    attrs = _attrs(span)
    op, _ = _op_and_description(span, attrs)
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent_id if parent_id is not None else span_parent_id(span),
        "op": op,
        "status": _sentry_status(span, attrs),
        "origin": _origin(attrs),
    }


def transaction_event(
    root: ReadableSpan,
    descendants: Sequence[ReadableSpan],
    *,
    release: str | None,
    environment: str | None,
    parent_span_id: str | None = None,
    name_and_source: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """A Sentry transaction event for a local root and its local descendants.

    ``parent_span_id`` is for follow-up transactions (children that ended after their root):
    it names the span they hang under; otherwise the root's own (remote) parent is used.
    ``name_and_source`` is :func:`transaction_name_and_source` of the root when the caller
    already has it (the exporter names the DSC with it first).
    """
    name, source = name_and_source or transaction_name_and_source(root)
    start, end = root._start_time, root._end_time
    if end is None:
        end = start
    event = base_event(root, release=release, environment=environment)
    trace = trace_context(root, parent_id=parent_span_id)
    # span_data(root) without converting every attribute a second time
    trace["data"] = {
        **event["contexts"]["otel"]["attributes"],
        "otel.kind": _KIND_NAMES[id(root._kind)],
    }
    event["contexts"]["trace"] = trace
    event.update(
        {
            "type": "transaction",
            "transaction": name,
            "transaction_info": {"source": source},
            "start_timestamp": _seconds(start),
            "timestamp": _seconds(end),
            "spans": [sentry_span(span) for span in descendants],
        }
    )
    return event
