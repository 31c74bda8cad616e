"""``SentryBridgePropagator``: ``sentry-trace`` + ``baggage`` (+ ``traceparent`` when alone).

Extract rule when several headers are present:
- a valid ``traceparent`` wins over ``sentry-trace`` (W3C is what every OTel peer speaks);
  when both are valid and name different traces, the DSC is kept only if its own
  ``sentry-trace_id`` names the traceparent's trace (else it belongs to the other trace);
- a DSC whose ``trace_id`` differs from the continued trace is dropped;
- without any valid trace header the DSC is dropped too (it would describe an unknown trace),
  third-party baggage is kept;
- ``sentry-trace`` without a sampled flag continues the trace with the decision deferred to
  our sampler (``DEFERRED_KEY``).
Malformed headers of any kind are ignored; nothing here raises.

This propagator owns ``baggage`` entirely: on extract the application sees only third-party
entries (the ``sentry-*`` ones become the frozen DSC), on inject it writes exactly one header
with the DSC and the application's baggage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from types import MappingProxyType

from opentelemetry import baggage as baggage_api
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators import textmap
from opentelemetry.trace.span import TraceState

from otel_bridge.dsc import DEFERRED_KEY, INCOMING_DSC_KEY, active_tracker, current_dsc
from otel_bridge.propagation.baggage import SENTRY_PREFIX, merge_baggage, parse_baggage, split_dsc
from otel_bridge.propagation.sentry_trace import format_sentry_trace, parse_sentry_trace
from otel_bridge.propagation.traceparent import format_traceparent, parse_traceparent

_logger = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
SENTRY_TRACE = "sentry-trace"
BAGGAGE = "baggage"
# W3C: a vendor may drop tracestate over 512 characters.
_MAX_TRACESTATE = 512


def _first(values: Sequence[str] | None) -> str | None:
    if not values:
        return None
    value = values[0]
    return value if isinstance(value, str) else None


class SentryBridgePropagator(textmap.TextMapPropagator):
    """Sentry headers for OTel. ``inject_traceparent=False`` when a ``tracecontext``
    propagator in the same composite already writes ``traceparent``/``tracestate``."""

    def __init__(self, inject_traceparent: bool = True) -> None:
        self._inject_traceparent = inject_traceparent

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        ctx = context if context is not None else Context()
        try:
            return self._extract(carrier, ctx, getter)
        except Exception:  # a hostile header must never fail the request
            _logger.debug("otel-bridge: trace headers ignored", exc_info=True)
            return ctx

    def _extract(
        self, carrier: textmap.CarrierT, ctx: Context, getter: textmap.Getter[textmap.CarrierT]
    ) -> Context:
        parent = parse_traceparent(_first(getter.get(carrier, TRACEPARENT)))
        sentry = parse_sentry_trace(_first(getter.get(carrier, SENTRY_TRACE)))
        raw_baggage = getter.get(carrier, BAGGAGE)
        dsc, others = split_dsc(parse_baggage(raw_baggage))
        if raw_baggage:
            ctx = _replace_baggage(ctx, others)

        conflict = parent is not None and sentry is not None and sentry.trace_id != parent.trace_id
        if parent is not None:
            trace_id, span_id = parent.trace_id, parent.span_id
            flags, deferred = parent.flags, False
        elif sentry is not None:
            trace_id, span_id = sentry.trace_id, sentry.span_id
            flags = trace.TraceFlags.SAMPLED if sentry.sampled else trace.TraceFlags.DEFAULT
            deferred = sentry.sampled is None
        else:
            return ctx

        own = dsc.get("trace_id")
        if own != f"{trace_id:032x}" and (own is not None or conflict):
            dsc = {}
        tracker = active_tracker()
        if tracker is not None and not tracker.continues(dsc):
            # Another organization's trace (or, strictly, one whose organization is not
            # known) is not continued: a new trace starts, also over the remote parent a
            # tracecontext propagator may have set before this one.
            _logger.debug("otel-bridge: incoming trace of another organization not continued")
            ctx = trace.set_span_in_context(trace.INVALID_SPAN, ctx)
            ctx = context_api.set_value(DEFERRED_KEY, None, ctx)
            return context_api.set_value(INCOMING_DSC_KEY, None, ctx)
        span_context = trace.SpanContext(
            trace_id=trace_id,
            span_id=span_id,
            is_remote=True,
            trace_flags=trace.TraceFlags(flags),
            trace_state=self._trace_state(carrier, getter, ctx, trace_id) if parent else None,
        )
        ctx = trace.set_span_in_context(trace.NonRecordingSpan(span_context), ctx)
        ctx = context_api.set_value(DEFERRED_KEY, True if deferred else None, ctx)
        return context_api.set_value(
            INCOMING_DSC_KEY, MappingProxyType(dsc) if dsc else None, ctx
        )

    @staticmethod
    def _trace_state(
        carrier: textmap.CarrierT,
        getter: textmap.Getter[textmap.CarrierT],
        ctx: Context,
        trace_id: int,
    ) -> TraceState | None:
        # A tracecontext propagator that ran before us already parsed it: reuse that.
        earlier = trace.get_current_span(ctx).get_span_context()
        if earlier.is_valid and earlier.trace_id == trace_id:
            # That one keeps up to 32 members of any length: the size limit is still ours.
            state = earlier.trace_state
            if state and len(state.to_header()) > _MAX_TRACESTATE:
                return None
            return state
        headers = [h for h in getter.get(carrier, TRACESTATE) or [] if isinstance(h, str)]
        if not headers or sum(len(h) + 1 for h in headers) > _MAX_TRACESTATE + 1:
            return None
        return TraceState.from_header(headers)

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        try:
            self._inject(carrier, context, setter)
        except Exception:
            _logger.debug("otel-bridge: trace headers not injected", exc_info=True)

    def _inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None,
        setter: textmap.Setter[textmap.CarrierT],
    ) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        dsc = None
        if span_context.is_valid:
            sampled = span_context.trace_flags.sampled
            deferred = span_context.is_remote and context_api.get_value(DEFERRED_KEY, context)
            if self._inject_traceparent:
                setter.set(
                    carrier,
                    TRACEPARENT,
                    format_traceparent(
                        span_context.trace_id, span_context.span_id, span_context.trace_flags
                    ),
                )
                if span_context.trace_state:
                    setter.set(carrier, TRACESTATE, span_context.trace_state.to_header())
            setter.set(
                carrier,
                SENTRY_TRACE,
                format_sentry_trace(
                    span_context.trace_id, span_context.span_id, None if deferred else sampled
                ),
            )
            dsc = current_dsc(context)
        header = merge_baggage(dsc, _app_baggage(context))
        if header:
            setter.set(carrier, BAGGAGE, header)

    @property
    def fields(self) -> set[str]:
        names = {SENTRY_TRACE, BAGGAGE}
        if self._inject_traceparent:
            names |= {TRACEPARENT, TRACESTATE}
        return names


def _app_baggage(context: Context | None) -> Iterable[tuple[str, str]]:
    for key, value in baggage_api.get_all(context).items():
        if isinstance(value, str):
            yield key, value
        elif isinstance(value, (int, float, bool)):
            yield key, str(value)


def _replace_baggage(ctx: Context, entries: Iterable[tuple[str, str]]) -> Context:
    # Drop sentry-* entries another baggage propagator may have put there: they are the DSC.
    for key in baggage_api.get_all(ctx):
        if key.startswith(SENTRY_PREFIX):
            ctx = baggage_api.remove_baggage(key, ctx)
    for key, value in entries:
        ctx = baggage_api.set_baggage(key, value, ctx)
    return ctx
