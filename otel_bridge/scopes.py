"""One sentry-sdk isolation scope per unit of work, started by the OTel span that begins it.

sentry-sdk keeps breadcrumbs, the user and tags on an *isolation scope*; its web framework
integrations fork one per request by wrapping the request handler. When otel-bridge captures
errors without those wrappers (OTEL_BRIDGE_DJANGO_ERRORS=lean), the OTel span that starts a
unit of work marks the same boundary: a local root (no parent, or a remote one) that is not
an outgoing call. This span processor forks the process's isolation scope when such a span
starts and restores the previous one when it ends, so what one request records never shows
up in another's errors. As sentry-sdk's ``isolation_scope()`` does, the current scope is
forked with it, and as its WSGI/ASGI middlewares do, the unit of work starts with no
breadcrumbs. For SERVER spans it also tracks a request-mode session, as sentry-sdk's request
middleware does (release health: crash-free sessions), and gives the errors captured during
the request (a logged error, ``capture_message``) the transaction name and the request data
the server span has, where nothing else gave them any.

Unsampled units of work get all of this too: the sampler records their local roots (see
``BridgeSampler``) without exporting them.

Nothing is done where a scope is already set up for this unit of work: by a sentry-sdk
integration's middleware (its scope holds a session), or by an enclosing root of ours.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sentry_sdk
from opentelemetry import context as context_api
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind
from sentry_sdk.scope import Scope
from sentry_sdk.session import Session
from sentry_sdk.utils import capture_internal_exceptions

from otel_bridge.pipeline.ids import new_uuid4
from otel_bridge.span_attributes import IS_REMOTE, SPAN_ID

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

# Roots that never end must not keep their scopes alive forever.
MAX_OPEN_SCOPES = 10_000
_OUTGOING = (SpanKind.CLIENT, SpanKind.PRODUCER)


@dataclass
class _OpenScope:
    scope: Scope
    previous: Scope
    current: Scope
    previous_current: Scope
    session: bool
    root: Span


class SentryScopeProcessor(SpanProcessor):
    def __init__(self, base: Scope | None = None, max_open: int = MAX_OPEN_SCOPES) -> None:
        # The isolation scope every unit of work starts from: what the application set at
        # start-up (sentry_sdk.set_tag at import time) is inherited, nothing of other requests.
        self._base = base if base is not None else Scope.get_isolation_scope()
        self._max_open = max_open
        self._open: OrderedDict[int, _OpenScope] = OrderedDict()
        # The same, by id(isolation scope): which unit of work an event is captured in.
        self._by_scope: dict[int, _OpenScope] = {}
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        # Read behind the SDK's properties: see otel_bridge/span_attributes.py.
        parent = span._parent
        kind = span._kind
        if (parent is not None and not parent[IS_REMOTE]) or kind in _OUTGOING:
            return
        current = Scope.get_isolation_scope()
        if id(current) in self._by_scope or _has_session(current):
            return
        client = sentry_sdk.get_client()
        if not client.is_active():
            return
        scope = self._base.fork()
        scope.clear_breadcrumbs()
        previous_current = Scope.get_current_scope()
        current_scope = previous_current.fork()
        session = kind is SpanKind.SERVER and _tracks_sessions(client.options)
        if session:
            _start_request_session(scope, client.options)
        Scope.set_isolation_scope(scope)
        Scope.set_current_scope(current_scope)
        opened = _OpenScope(scope, current, current_scope, previous_current, session, span)
        with self._lock:
            self._open[span.context.span_id] = opened
            self._by_scope[id(scope)] = opened
            while len(self._open) > self._max_open:
                _, stale = self._open.popitem(last=False)
                self._by_scope.pop(id(stale.scope), None)

    def on_end(self, span: ReadableSpan) -> None:
        context = span._context
        # Most spans opened no scope: looked up without the lock (a dict read is atomic).
        if context is None or context[SPAN_ID] not in self._open:
            return
        with self._lock:
            opened = self._open.pop(context[SPAN_ID], None)
            if opened is None:
                return
            self._by_scope.pop(id(opened.scope), None)
        if opened.session:
            opened.scope.end_session()
        # In the context the span ends in: for a thread per request that is the one it
        # started in; for asyncio the request's task context is dropped with the task anyway.
        if Scope.get_isolation_scope() is opened.scope:
            Scope.set_isolation_scope(opened.previous)
        if Scope.get_current_scope() is opened.current:
            Scope.set_current_scope(opened.previous_current)

    def shutdown(self) -> None:
        with self._lock:
            still_open = list(self._open.values())
            self._open.clear()
            self._by_scope.clear()
        for opened in still_open:
            if opened.session:
                opened.scope.end_session()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def server_span_of(self, scope: Scope) -> Span | None:
        """The SERVER span whose unit of work ``scope`` is the isolation scope of."""
        opened = self._by_scope.get(id(scope))
        if opened is None or opened.scope is not scope or opened.root.kind is not SpanKind.SERVER:
            return None
        return opened.root


_active: SentryScopeProcessor | None = None


def install(processor: SentryScopeProcessor) -> None:
    """Make ``processor`` the one errors are told their request by (see
    :func:`add_request_from_server_span`)."""
    from sentry_sdk.scope import add_global_event_processor, global_event_processors

    global _active
    _active = processor
    if add_request_from_server_span not in global_event_processors:
        add_global_event_processor(add_request_from_server_span)


def add_request_from_server_span(event: Event, hint: Hint) -> Event | None:
    """sentry-sdk global event processor: an error captured while a request runs (a logged
    error, ``capture_message``) gets the transaction name and ``request`` interface the span
    pipeline gives the request's transaction, where no integration gave any, as
    sentry-sdk's web framework integrations set both on every event of a request. Found at
    capture time by the isolation scope, so a request that captures nothing pays nothing."""
    processor = _active
    if processor is None or event.get("type") == "transaction":
        return event
    span = processor.server_span_of(Scope.get_isolation_scope())
    if span is None:
        return event
    with capture_internal_exceptions():
        from otel_bridge.pipeline.mapping import request_info, transaction_name_and_source

        if not event.get("transaction"):
            name, source = transaction_name_and_source(span)
            event["transaction"] = name
            event["transaction_info"] = {"source": source}
        if not event.get("request"):
            event["request"] = request_info(span)
    return event


def _has_session(scope: Scope) -> bool:
    # sentry-sdk's request middlewares (Flask, ASGI, ...) start a request session on the
    # isolation scope they fork; there is no public accessor for it.
    return getattr(scope, "_session", None) is not None


def _start_request_session(scope: Scope, options: dict[str, Any]) -> None:
    """``scope.start_session(session_mode="request")`` without its ``uuid.uuid4()``.

    uuid4 reads ``os.urandom``, a system call around which CPython hands the GIL to the
    exporter's threads, on every request (see otel_bridge/pipeline/ids.py). A request-mode
    session is only counted into sentry-sdk's aggregates, its id never sent, so it gets one
    from a pseudo-random generator. On a sentry-sdk whose scope keeps these elsewhere,
    sentry-sdk starts the session itself."""
    if not (hasattr(scope, "_session") and hasattr(scope, "_user")):
        scope.start_session(session_mode="request")
        return
    scope.end_session()  # what start_session does first
    scope._session = Session(
        sid=new_uuid4(),
        release=options.get("release"),
        environment=options.get("environment"),
        user=scope._user,
        session_mode="request",
    )


def _tracks_sessions(options: dict[str, object]) -> bool:
    return bool(options.get("auto_session_tracking", True)) and bool(options.get("release"))
