"""Unhandled Django view errors, captured by sentry-sdk without its DjangoIntegration.

sentry-sdk's DjangoIntegration wraps every request (an isolation scope, a session, a WSGI
middleware), every view and middleware call, and every SQL query (a breadcrumb and a no-op
span), even with its tracing off: that is most of what it costs, and OpenTelemetry already
does the tracing. Errors need far less. Django announces each unhandled view exception with
its ``got_request_exception`` signal, the same one DjangoIntegration listens to; this
integration answers it with sentry-sdk's own ``event_from_exception`` (frames and locals)
and request extractor, and costs nothing on requests that succeed. The per-request sentry
scope comes from :mod:`otel_bridge.scopes` (one per OTel server span).

Django's async handler runs ``response_for_exception`` in a worker thread where
``sys.exc_info()`` is empty, so that function is wrapped to hand the exception to the
receiver (as DjangoIntegration does).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sentry_sdk
from opentelemetry import trace
from sentry_sdk.integrations import DidNotEnable, Integration
from sentry_sdk.integrations.logging import ignore_logger
from sentry_sdk.scope import should_send_default_pii
from sentry_sdk.utils import capture_internal_exceptions, event_from_exception

if TYPE_CHECKING:
    from django.http import HttpRequest

MECHANISM = "django"
_handling = threading.local()


class DjangoErrorsIntegration(Integration):
    """Registered with sentry-sdk by otel-bridge when OTEL_BRIDGE_DJANGO_ERRORS=lean."""

    identifier = "otel_bridge_django_errors"

    @staticmethod
    def setup_once() -> None:
        try:
            from django.core import signals
            from django.core.handlers import exception
        except ImportError as exc:
            raise DidNotEnable("Django is not installed") from exc
        # Django logs every failed request ("Internal Server Error: ...") with the same
        # exception: reported here already, as DjangoIntegration also has it.
        ignore_logger("django.request")
        ignore_logger("django.server")
        signals.got_request_exception.connect(
            _on_request_exception, weak=False, dispatch_uid="otel_bridge.django_errors"
        )
        original = exception.response_for_exception
        if getattr(original, "__otel_bridge_wrapped__", False):
            return
        exception.response_for_exception = _remembering_exception(original)  # type: ignore[assignment]


def _remembering_exception(original: Callable[..., Any]) -> Callable[..., Any]:
    def response_for_exception(request: Any, exc: BaseException) -> Any:
        previous = getattr(_handling, "exception", None)
        _handling.exception = exc
        try:
            return original(request, exc)
        finally:
            _handling.exception = previous

    response_for_exception.__otel_bridge_wrapped__ = True  # type: ignore[attr-defined]
    response_for_exception.__wrapped__ = original  # type: ignore[attr-defined]
    return response_for_exception


def _on_request_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    client = sentry_sdk.get_client()
    if client.get_integration(DjangoErrorsIntegration) is None:
        return
    exc = sys.exc_info()[1] or getattr(_handling, "exception", None)
    if exc is None:
        return
    with capture_internal_exceptions():
        event, hint = event_from_exception(
            exc, client_options=client.options, mechanism={"type": MECHANISM, "handled": False}
        )
        transaction = _transaction_name()
        if transaction is not None:
            event["transaction"], source = transaction
            event["transaction_info"] = {"source": source}
        with sentry_sdk.new_scope() as scope:
            if request is not None:
                # As an event processor, so it runs after the scope's own user and request
                # data were applied and only fills what they left out.
                scope.add_event_processor(_request_processor(request))
            sentry_sdk.capture_event(event, hint=hint)


def _request_processor(request: HttpRequest) -> Callable[[Any, Any], Any]:
    def process(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        with capture_internal_exceptions():
            _add_request(event, request)
        return event

    return process


def _transaction_name() -> tuple[str, str] | None:
    """The name the span pipeline gives this request's transaction, so the error and the
    transaction agree in Sentry's issue and performance views."""
    from opentelemetry.sdk.trace import ReadableSpan

    from otel_bridge.pipeline.mapping import transaction_name_and_source

    span = trace.get_current_span()
    if not isinstance(span, ReadableSpan):
        return None
    return transaction_name_and_source(span)


def _add_request(event: dict[str, Any], request: HttpRequest) -> None:
    # Imported on the first error only: loading sentry-sdk's Django module costs start-up
    # time, and its request extractor (body size limits, cookies, DRF) is all we use of it.
    from sentry_sdk.integrations._wsgi_common import _filter_headers
    from sentry_sdk.integrations.django import DjangoRequestExtractor
    from sentry_sdk.integrations.wsgi import get_client_ip

    with capture_internal_exceptions():
        DjangoRequestExtractor(request).extract_into_event(event)  # type: ignore[arg-type]
    info = event.setdefault("request", {})
    meta = request.META
    info["method"] = request.method
    info["query_string"] = meta.get("QUERY_STRING", "")
    try:
        info["url"] = request.build_absolute_uri(request.path)
    except Exception:  # e.g. DisallowedHost, which may be the very error being reported
        info["url"] = request.path
    with capture_internal_exceptions():
        info["headers"] = dict(_filter_headers(dict(request.headers)))
    if should_send_default_pii():
        info["env"] = {
            key: meta[key] for key in ("REMOTE_ADDR", "SERVER_NAME", "SERVER_PORT") if key in meta
        }
        with capture_internal_exceptions():
            _add_user(event, request)
        # The client's address as sentry-sdk's WSGI middleware reads it: X-Forwarded-For,
        # else X-Real-Ip, else the peer (behind a proxy, the proxy's own address).
        client_ip = get_client_ip(meta)
        if client_ip:
            event.setdefault("user", {}).setdefault("ip_address", client_ip)


def _add_user(event: dict[str, Any], request: HttpRequest) -> None:
    # What sentry-sdk's private django._set_user_info does; it is not public API to import.
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return
    info = event.setdefault("user", {})
    info.setdefault("id", str(user.pk))
    email = getattr(user, "email", None)
    if email:
        info.setdefault("email", email)
    info.setdefault("username", user.get_username())
