"""Trace-propagation targets: outgoing requests to other hosts get no trace headers at all.

Propagators never see the URL, but the contrib HTTP client instrumentations (requests,
urllib, urllib3, httpx, aiohttp-client) call ``inject`` while their CLIENT span is current,
with ``url.full`` (or the old ``http.url``) set at span start. Wrapping the whole composite
gates ``traceparent``, ``sentry-trace`` and ``baggage`` together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators import textmap

_URL_ATTRIBUTES = ("url.full", "http.url")


def url_of_current_span(context: Context | None) -> str | None:
    """The URL of the outgoing request being sent, when the current span is its CLIENT
    span. A SERVER span's URL is the incoming request's (the ASGI instrumentation, and WSGI
    behind a server without ``RAW_URI``, set it): matched against the targets, it would
    gate a hand-written ``inject()`` by where the request came from."""
    span = trace.get_current_span(context)
    if getattr(span, "kind", None) is not trace.SpanKind.CLIENT:
        return None
    attributes = getattr(span, "attributes", None)
    if not attributes:
        return None
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


class TargetGatedPropagator(textmap.TextMapPropagator):
    """Injects through ``inner`` only when the outgoing URL matches a target.

    ``targets=None`` means every URL. A pattern is searched anywhere in the URL (as
    sentry-sdk's ``trace_propagation_targets``). When the URL is unknown (no current CLIENT
    span with a URL: messaging, custom code), headers are injected.
    """

    def __init__(self, inner: textmap.TextMapPropagator, targets: Sequence[str] | None) -> None:
        self.inner = inner
        self._targets = None if targets is None else tuple(re.compile(t) for t in targets)

    def allows(self, context: Context | None) -> bool:
        if self._targets is None:
            return True
        url = url_of_current_span(context)
        return url is None or any(t.search(url) for t in self._targets)

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        return self.inner.extract(carrier, context, getter)

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        if self.allows(context):
            self.inner.inject(carrier, context, setter)

    @property
    def fields(self) -> set[str]:
        return self.inner.fields
