"""Parent-based sampling with Sentry's rules: rates, upstream decisions, ``sample_rand``.

opentelemetry-sdk's ParentBased/TraceIdRatioBased cannot read ``sample_rand`` from baggage
nor a deferred ``sentry-trace`` decision, so this sampler is ours; it decides only for local
roots and lets children follow their local parent.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

from otel_bridge.config import BridgeConfig
from otel_bridge.dsc import (
    ATTR_DSC,
    ATTR_SAMPLE_RAND,
    ATTR_SAMPLE_RATE,
    LocalRootTracker,
    active_tracker,
    backfill_incoming,
    consistent_rand_rate,
    generate_sample_rand,
    head_sample_rand,
    incoming_dsc,
    parse_rand,
    parse_unit,
    serialize_dsc,
    transaction_from_span,
    upstream_decision,
)
from otel_bridge.span_attributes import IS_REMOTE, IS_VALID, SAMPLED, TRACE_FLAGS, TRACE_STATE

_logger = logging.getLogger(__name__)

_URL_ATTRIBUTES = ("url.full", "http.url")


@dataclass(frozen=True)
class SamplingRule:
    pattern: re.Pattern[str]
    rate: float

    def matches(self, candidates: Sequence[str]) -> bool:
        return any(self.pattern.fullmatch(candidate) for candidate in candidates)


def parse_rules(raw: Sequence[str]) -> tuple[tuple[SamplingRule, ...], tuple[str, ...]]:
    """Rules from ``pattern=rate`` strings; unusable ones are returned as problems."""
    rules: list[SamplingRule] = []
    problems: list[str] = []
    for text in raw:
        # The rate never contains "=", a regular expression may: split on the last one.
        pattern, sep, rate_text = text.rpartition("=")
        rate = parse_unit(rate_text.strip()) if sep else None
        if not pattern or rate is None:
            problems.append(f"sampling rule {text!r} ignored: expected pattern=rate in [0, 1]")
            continue
        try:
            rules.append(SamplingRule(re.compile(pattern.strip()), rate))
        except re.error as exc:
            problems.append(f"sampling rule {text!r} ignored: {exc}")
    return tuple(rules), tuple(problems)


def rule_candidates(name: str, attributes: Attributes) -> list[str]:
    """What a rule is matched against, for a span that is just starting.

    At start Django (contrib 0.66) gives the span name ``GET route`` (resolved early) and
    the URL (``http.url`` with the old conventions, ``url.path`` with the stable ones), but
    not ``http.route`` yet (set in process_view); so a rule matches the span name, the
    ``http.route`` attribute when present, or the URL path (query left out).
    """
    attrs: Mapping[str, Any] = attributes or {}
    found = [name]
    for key in ("http.route", "url.path", "http.target"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            found.append(value.split("?", 1)[0])
    for key in ("url.full", "http.url"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            with contextlib.suppress(ValueError):
                found.append(urlsplit(value).path)
    return found


class BridgeSampler(Sampler):
    """Sentry's sampling rules, parent-based.

    - child of a local parent: follows the parent;
    - upstream decision (``traceparent`` flags, ``sentry-trace`` ``-1``/``-0``, or the DSC's
      ``sampled`` when the flag was deferred): honoured, ``sample_rand`` back-filled;
    - otherwise ``sample_rand`` (from the incoming DSC, else derived from the trace id)
      ``< rate``, the rate being the first matching rule's or the configured one.

    Some unsampled spans are recorded but not sampled; nothing exports them, and the
    sampled path is unchanged:

    - CLIENT spans with a URL, when ``record_unsampled_clients`` is on: target gating needs
      their URL at inject time;
    - local roots other than outgoing calls, when ``record_unsampled_roots`` is on (errors
      go to Sentry): the span processors start the unit of work's sentry-sdk scope and
      release-health session from them, which an unsampled request needs as much as any
      (its user and breadcrumbs would otherwise land on the scope every request starts
      from, and its crash would not be counted);
    - CLIENT spans under a recorded unsampled local root, when ``record_unsampled_queries``
      is on: the query breadcrumbs of an error in an unsampled request come from the
      database ones among them.
    """

    def __init__(
        self,
        rate: float,
        rules: Sequence[SamplingRule] = (),
        *,
        tracker: LocalRootTracker | None = None,
        record_unsampled_clients: bool = False,
        record_unsampled_roots: bool = False,
        record_unsampled_queries: bool = False,
    ) -> None:
        self._rate = rate
        self._rules = tuple(rules)
        self._tracker = tracker
        self._record_unsampled_clients = record_unsampled_clients
        self._record_unsampled_roots = record_unsampled_roots
        self._record_unsampled_queries = record_unsampled_queries

    def should_sample(
        self,
        parent_context: context_api.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        # Called for every span: the context read by position, not through its properties
        # (see otel_bridge/span_attributes.py).
        valid = parent[IS_VALID]
        parent_state = parent[TRACE_STATE] if valid else None
        if valid and not parent[IS_REMOTE]:
            sampled = bool(parent[TRACE_FLAGS] & SAMPLED)
            # A database span is only told apart once it has started (the DB-API
            # instrumentation sets its attributes then): every outgoing call of a recorded
            # unsampled unit of work is recorded, and the query breadcrumbs processor keeps
            # the database ones.
            if (
                not sampled
                and kind is SpanKind.CLIENT
                and self._record_unsampled_queries
                and trace.get_current_span(parent_context).is_recording()
            ):
                return SamplingResult(Decision.RECORD_ONLY, attributes, parent_state)
            return self._result(sampled, kind, attributes, None, parent_state, root=False)
        try:
            sampled, extra = self._decide_root(parent_context, parent, trace_id, name, attributes)
        except Exception:  # a sampler that raises breaks the request: never
            _logger.debug("sampling failed, dropping the span", exc_info=True)
            return SamplingResult(Decision.DROP, None, parent_state)
        return self._result(sampled, kind, attributes, extra, parent_state, root=True)

    def _result(
        self,
        sampled: bool,
        kind: SpanKind | None,
        attributes: Attributes,
        extra: dict[str, Any] | None,
        trace_state: TraceState | None,
        *,
        root: bool,
    ) -> SamplingResult:
        # The SDK starts the span with the result's attributes: the caller's must be in them.
        if sampled:
            merged = _merged(attributes, extra)
            return SamplingResult(Decision.RECORD_AND_SAMPLE, merged, trace_state)
        if self._records_unsampled(kind, attributes, root):
            return SamplingResult(Decision.RECORD_ONLY, _merged(attributes, extra), trace_state)
        return SamplingResult(Decision.DROP, None, trace_state)

    def _records_unsampled(self, kind: SpanKind | None, attributes: Attributes, root: bool) -> bool:
        if kind is SpanKind.CLIENT:
            return self._record_unsampled_clients and _has_url(attributes)
        return root and self._record_unsampled_roots and kind is not SpanKind.PRODUCER

    def _decide_root(
        self,
        parent_context: context_api.Context | None,
        parent: trace.SpanContext,
        trace_id: int,
        name: str,
        attributes: Attributes,
    ) -> tuple[bool, dict[str, Any]]:
        incoming = incoming_dsc(parent_context, trace_id) if parent.is_valid else None
        upstream = _upstream_decision(parent_context, parent, incoming)
        rate = self._rate_for(name, attributes)
        rand = parse_rand((incoming or {}).get("sample_rand"))
        if upstream is None:
            if rand is None and not parent.is_valid:
                rand = head_sample_rand(trace_id)
            elif rand is None:
                rand = generate_sample_rand(trace_id) or 0.0
            sampled = rand < rate
        else:
            sampled = upstream
            sender_rate = parse_unit((incoming or {}).get("sample_rate"))
            rand, rate = consistent_rand_rate(
                trace_id, sampled, rand, rate if sender_rate is None else sender_rate
            )
        # Back-filled from the sender's decision, not this service's: where the sender
        # deferred, sentry-sdk draws from [0, 1), as the decision above just did.
        frozen = backfill_incoming(incoming, trace_id, upstream) if incoming else None
        tracker = self._tracker or active_tracker()
        if tracker is not None:
            tracker.record_decision(
                trace_id,
                sample_rand=rand,
                sample_rate=rate,
                sampled=sampled,
                transaction=transaction_from_span(name, attributes),
                frozen=frozen,
            )
        extra: dict[str, Any] = {ATTR_SAMPLE_RAND: rand, ATTR_SAMPLE_RATE: rate}
        if frozen is not None:
            extra[ATTR_DSC] = serialize_dsc(frozen)
        return sampled, extra

    def _rate_for(self, name: str, attributes: Attributes) -> float:
        if self._rules:
            candidates = rule_candidates(name, attributes)
            for rule in self._rules:
                if rule.matches(candidates):
                    return rule.rate
        return self._rate

    def get_description(self) -> str:
        return f"BridgeSampler{{rate={self._rate}, rules={len(self._rules)}}}"


def _upstream_decision(
    parent_context: context_api.Context | None,
    parent: trace.SpanContext,
    incoming: Mapping[str, str] | None,
) -> bool | None:
    if not parent.is_valid:
        return None
    # sentry-trace without a flag: the frozen DSC may still carry the sender's decision.
    return upstream_decision(parent_context, incoming, parent.trace_flags.sampled)


def _merged(attributes: Attributes, extra: dict[str, Any] | None) -> Attributes:
    if not extra:
        return attributes
    return {**(attributes or {}), **extra}


def _has_url(attributes: Attributes) -> bool:
    return bool(attributes) and any(key in attributes for key in _URL_ATTRIBUTES)  # type: ignore[operator]


def build_sampler(
    config: BridgeConfig,
    tracker: LocalRootTracker | None = None,
    environ: Mapping[str, str] | None = None,
) -> BridgeSampler:
    rules, problems = parse_rules(config.sampling_rules)
    for problem in problems:
        _logger.warning("otel-bridge: %s", problem)
    errors_to_sentry = bool(config.dsn)
    return BridgeSampler(
        config.effective_sample_rate(environ),
        rules,
        tracker=tracker,
        record_unsampled_clients=config.trace_propagation_targets is not None,
        record_unsampled_roots=errors_to_sentry,
        record_unsampled_queries=errors_to_sentry and config.query_breadcrumbs,
    )


def sampler_factory(arg: str | None = None) -> Sampler:
    """Entry point for ``OTEL_TRACES_SAMPLER=otel_bridge`` (the SDK passes the sampler arg,
    which ``effective_sample_rate`` already reads from the environment)."""
    from otel_bridge.config import load_config

    return build_sampler(load_config())
