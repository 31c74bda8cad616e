"""Vendor-neutral context: user, tags, business context, breadcrumbs, fingerprints, messages.

Application code calls these functions instead of ``sentry_sdk.set_user`` and friends. Each
one writes OpenTelemetry data on the current span (attributes and span events, which any OTel
backend receives) and the same value on sentry-sdk's scope (so error events captured by
sentry-sdk carry it too). The span pipeline turns the attributes back into Sentry's native
fields with the pure functions at the bottom of this module:
:func:`sentry_fields_from_attributes`, :func:`breadcrumbs_from_span_events` and
:func:`apply_fingerprint_rules`.

Attribute names (on the span that is current when the function is called):

- user: ``user.id`` and ``enduser.id``, ``user.email``, ``user.name``, ``user.full_name``,
  ``user.<key>`` for extra keys, ``client.address`` for an explicit IP address;
- tag: ``sentry.tag.<key>``; context: ``sentry.context.<name>.<key>``;
- fingerprint: ``sentry.fingerprint`` (list of strings);
- breadcrumb: a span event named ``breadcrumb`` with ``breadcrumb.message``,
  ``breadcrumb.category``, ``breadcrumb.level``, ``breadcrumb.type``, ``breadcrumb.data.<key>``;
- message: a span event named ``message`` with ``message.text``, ``message.level`` and the
  tags/contexts of the message.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sentry_sdk
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.util.types import AttributeValue

from otel_bridge.config import InvalidSetting
from otel_bridge.span_attributes import span_attributes

TAG_PREFIX = "sentry.tag."
CONTEXT_PREFIX = "sentry.context."
USER_PREFIX = "user."
BREADCRUMB_DATA_PREFIX = "breadcrumb.data."
FINGERPRINT_ATTRIBUTE = "sentry.fingerprint"
BREADCRUMB_EVENT = "breadcrumb"
MESSAGE_EVENT = "message"

# Sentry's limits (relay drops tags beyond them).
MAX_TAG_KEY_LENGTH = 32
MAX_TAG_VALUE_LENGTH = 200
MAX_BREADCRUMBS = 100

_USER_FIELDS = {
    "user.id": "id",
    "enduser.id": "id",
    "user.name": "username",
    "user.full_name": "name",
    "user.email": "email",
    "enduser.email": "email",
}
# Sentry's user `name` (a full name) is OTel's `user.full_name`: `user.name` holds the
# username, which set_user's `name=` would otherwise overwrite on the transaction.
_USER_EXTRA_ATTRIBUTES = {"name": "user.full_name"}
_USER_IP_ATTRIBUTES = ("client.address", "http.client_ip", "net.peer.ip")
_PII_USER_FIELDS = frozenset({"email", "ip_address"})
# Sentry owns these contexts; a user context of the same name would break the event.
_RESERVED_CONTEXTS = frozenset({"trace", "otel"})
_warned_reserved: set[str] = set()
_logger = logging.getLogger("otel_bridge")


# -- writing: OTel span + sentry-sdk scope --------------------------------------------------


def _attribute_value(value: Any) -> AttributeValue:
    """OTel attributes take primitives and homogeneous lists; anything else becomes JSON."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    try:
        return json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def _flatten(prefix: str, data: Mapping[str, Any]) -> dict[str, AttributeValue]:
    return {f"{prefix}{key}": _attribute_value(value) for key, value in data.items()}


def set_user(
    id: str | int | None = None,  # shadows a builtin: the name Sentry users know
    email: str | None = None,
    username: str | None = None,
    ip_address: str | None = None,
    **extra: Any,
) -> None:
    """Identify the user of the current operation.

    E-mail and IP address reach Sentry only with ``SENTRY_SEND_DEFAULT_PII=true`` (the
    scrubber removes them otherwise); the id and username always do.
    """
    attributes: dict[str, AttributeValue] = {}
    if id is not None:
        attributes["user.id"] = str(id)
        attributes["enduser.id"] = str(id)
    if email is not None:
        attributes["user.email"] = email
    if username is not None:
        attributes["user.name"] = username
    if ip_address is not None:
        attributes["client.address"] = ip_address
    attributes.update(
        {
            _USER_EXTRA_ATTRIBUTES.get(key, f"{USER_PREFIX}{key}"): _attribute_value(value)
            for key, value in extra.items()
        }
    )
    trace.get_current_span().set_attributes(attributes)
    user = {"id": None if id is None else str(id), "email": email, "username": username}
    user["ip_address"] = ip_address
    sentry_sdk.set_user({k: v for k, v in {**user, **extra}.items() if v is not None})


def set_tag(key: str, value: str | int | float | bool) -> None:
    """A searchable tag (Sentry limits are applied when the event is built)."""
    trace.get_current_span().set_attribute(TAG_PREFIX + key, _attribute_value(value))
    sentry_sdk.set_tag(key, value)


def set_tags(tags: Mapping[str, str | int | float | bool]) -> None:
    for key, value in tags.items():
        set_tag(key, value)


def set_context(name: str, data: Mapping[str, Any]) -> None:
    """Structured business context shown on the event (``contexts[name]`` in Sentry).

    ``trace`` and ``otel`` are Sentry's own: set on sentry-sdk's scope they would replace
    the trace context that links an error to its trace. They are refused with one warning
    per name, and nothing is set."""
    if name in _RESERVED_CONTEXTS:
        if name not in _warned_reserved:
            _warned_reserved.add(name)
            _logger.warning(
                "otel-bridge: set_context(%r, ...) ignored: %s is Sentry's own context "
                "(name yours differently)", name, ", ".join(sorted(_RESERVED_CONTEXTS))
            )
        return
    trace.get_current_span().set_attributes(_flatten(f"{CONTEXT_PREFIX}{name}.", data))
    sentry_sdk.set_context(name, dict(data))


def set_fingerprint(*parts: str) -> None:
    """Group errors of the current operation together (``{{ default }}`` keeps Sentry's)."""
    trace.get_current_span().set_attribute(FINGERPRINT_ATTRIBUTE, list(parts))
    sentry_sdk.get_isolation_scope().fingerprint = list(parts)


def add_breadcrumb(
    message: str,
    category: str | None = None,
    level: str = "info",
    data: Mapping[str, Any] | None = None,
    type: str = "default",  # shadows a builtin: Sentry's field name
) -> None:
    """A step leading to a possible error: a ``breadcrumb`` span event and a Sentry breadcrumb."""
    attributes: dict[str, AttributeValue] = {
        "breadcrumb.message": message,
        "breadcrumb.level": level,
        "breadcrumb.type": type,
    }
    if category is not None:
        attributes["breadcrumb.category"] = category
    attributes.update(_flatten(BREADCRUMB_DATA_PREFIX, data or {}))
    trace.get_current_span().add_event(BREADCRUMB_EVENT, attributes)
    sentry_sdk.add_breadcrumb(
        message=message, category=category, level=level, data=dict(data or {}), type=type
    )


def capture_message(
    message: str,
    level: str = "warning",
    *,
    tags: Mapping[str, str | int | float | bool] | None = None,
    contexts: Mapping[str, Mapping[str, Any]] | None = None,
    fingerprint: Sequence[str] | None = None,
    **details: Any,
) -> str | None:
    """Report something that is not an exception (a data-quality anomaly, say).

    Sentry gets a message event (with ``details`` as the ``details`` context); OTel backends
    get a ``message`` span event on the current span. Returns Sentry's event id, if sent.
    """
    attributes: dict[str, AttributeValue] = {"message.text": message, "message.level": level}
    attributes.update(_flatten(TAG_PREFIX, tags or {}))
    all_contexts = dict(contexts or {})
    if details:
        all_contexts["details"] = details
    for name, data in all_contexts.items():
        attributes.update(_flatten(f"{CONTEXT_PREFIX}{name}.", data))
    if fingerprint:
        attributes[FINGERPRINT_ATTRIBUTE] = list(fingerprint)
    trace.get_current_span().add_event(MESSAGE_EVENT, attributes)
    with sentry_sdk.new_scope() as scope:
        for key, value in (tags or {}).items():
            scope.set_tag(key, value)
        for name, data in all_contexts.items():
            scope.set_context(name, dict(data))
        if fingerprint:
            scope.fingerprint = list(fingerprint)
        return sentry_sdk.capture_message(message, level=level)  # type: ignore[arg-type]


# -- reading: pure mapping used by the span pipeline ---------------------------------------

_TAG_KEY_BAD = re.compile(r"[^a-zA-Z0-9_.:\-]")


def sentry_tag(key: str, value: Any) -> tuple[str, str] | None:
    """A tag within Sentry's limits, or None when nothing of it would survive."""
    clean_key = _TAG_KEY_BAD.sub("_", key.strip())[:MAX_TAG_KEY_LENGTH]
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split())[:MAX_TAG_VALUE_LENGTH]
    if not clean_key or not text:
        return None
    return clean_key, text


# What a field can come from. Not "sentry." alone: every local root carries the sampler's
# sentry.sample_rand and sentry.sample_rate, which make no field but sent the root through
# the whole search (the search cost 66K instructions per request of the shop, counted by
# callgrind on 2026-11-23; these prefixes took 32K of it off).
_FIELD_PREFIXES = (USER_PREFIX, "enduser.", TAG_PREFIX, CONTEXT_PREFIX, FINGERPRINT_ATTRIBUTE)


def sentry_fields_from_attributes(
    attributes: Mapping[str, Any],
    *,
    send_default_pii: bool,
    tag_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """Sentry's user, tags, contexts and fingerprint from one span's (or event's) attributes.

    Returns only the keys that have something: ``{"user": {...}, "tags": {...},
    "contexts": {...}, "fingerprint": [...]}``. ``tag_keys`` (``OTEL_BRIDGE_TAG_KEYS``)
    promotes plain attributes to tags.
    """
    user: dict[str, Any] = {}
    tags: dict[str, str] = {}
    contexts: dict[str, dict[str, Any]] = {}
    fingerprint: list[str] = []
    prefixed = False
    for key, value in attributes.items():
        if not key.startswith(_FIELD_PREFIXES):
            continue  # most attributes (HTTP, SQL, ...): one C-level check each
        prefixed = True
        if key in _USER_FIELDS:
            user.setdefault(_USER_FIELDS[key], value)
        elif key.startswith(USER_PREFIX) and len(key) > len(USER_PREFIX):
            user.setdefault(key[5:], list(value) if isinstance(value, tuple) else value)
        elif key.startswith(TAG_PREFIX):
            tag = sentry_tag(key[len(TAG_PREFIX) :], value)
            if tag is not None:
                tags[tag[0]] = tag[1]
        elif key.startswith(CONTEXT_PREFIX):
            name, _, field = key[len(CONTEXT_PREFIX) :].partition(".")
            if name and field and name not in _RESERVED_CONTEXTS:
                contexts.setdefault(name, {})[field] = context_value(value)
        elif key == FINGERPRINT_ATTRIBUTE:
            # Written by set_fingerprint as a list; by hand it may be any attribute value.
            fingerprint = (
                [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
            )
    if not prefixed and not send_default_pii and not tag_keys:
        return {}  # most spans, every span of a transaction: nothing below could add a field
    if send_default_pii:
        for key in _USER_IP_ATTRIBUTES:
            if isinstance(attributes.get(key), str):
                user.setdefault("ip_address", attributes[key])
                break
    else:
        for key in _PII_USER_FIELDS:
            user.pop(key, None)
    for key in tag_keys:
        if key in attributes and key not in tags:
            tag = sentry_tag(key, attributes[key])
            if tag is not None:
                tags[tag[0]] = tag[1]
    if "id" in user:
        user["id"] = str(user["id"])
    fields: dict[str, Any] = {}
    for name, value in (
        ("user", user),
        ("tags", tags),
        ("contexts", contexts),
        ("fingerprint", fingerprint),
    ):
        if value:
            fields[name] = value
    return fields


def context_value(value: Any) -> Any:
    """An attribute value written by this module as the application gave it: nested data
    back from its JSON text, sequences as lists, anything else as it is."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str) and value[:1] in ("{", "["):
        # _attribute_value stored nested data as JSON; give Sentry the structure back.
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def sentry_fields_from_spans(
    spans: Sequence[ReadableSpan], *, send_default_pii: bool, tag_keys: Iterable[str] = ()
) -> dict[str, Any]:
    """Merged fields of a transaction's spans: pass the local root first; earlier spans win."""
    merged: dict[str, Any] = {}
    tag_keys = tuple(tag_keys)
    only_prefixed = not send_default_pii and not tag_keys
    for span in spans:
        attributes = span_attributes(span)
        if only_prefixed:
            # Most spans (a request's queries) hold no field: told here rather than by a
            # call that would say so (sentry_fields_from_attributes makes the same test).
            for key in attributes:
                if key.startswith(_FIELD_PREFIXES):
                    break
            else:
                continue
        fields = sentry_fields_from_attributes(
            attributes, send_default_pii=send_default_pii, tag_keys=tag_keys
        )
        for name, value in fields.items():
            if name == "fingerprint":
                merged.setdefault(name, value)
            else:
                target = merged.setdefault(name, {})
                for key, item in value.items():
                    target.setdefault(key, item)
    return merged


def apply_sentry_fields(event: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """Merge fields into an event in place; what the event already has wins."""
    for name in ("user", "tags"):
        if fields.get(name):
            target = event.setdefault(name, {})
            for key, value in fields[name].items():
                target.setdefault(key, value)
    if fields.get("contexts"):
        contexts = event.setdefault("contexts", {})
        for name, data in fields["contexts"].items():
            contexts.setdefault(name, {}).update(
                {k: v for k, v in data.items() if k not in contexts.get(name, {})}
            )
    if fields.get("fingerprint") and not event.get("fingerprint"):
        event["fingerprint"] = list(fields["fingerprint"])
    return event


def breadcrumbs_from_span_events(
    spans: Sequence[ReadableSpan], *, until: int | None = None
) -> list[dict[str, Any]]:
    """Span events as Sentry breadcrumbs, oldest first, at most the last 100; with ``until``
    (nanoseconds, e.g. the ``exception`` event's timestamp) only the events before it.

    ``breadcrumb`` events (from :func:`add_breadcrumb`) keep their message, category, level
    and data; ``exception`` events are skipped (they are the error itself); any other event
    becomes a ``default`` breadcrumb with the event name as message and its attributes as
    data.
    """
    crumbs: list[tuple[int, dict[str, Any]]] = []
    for span in spans:
        for event in span.events:
            if event.name == "exception" or (until is not None and event.timestamp > until):
                continue
            crumbs.append((event.timestamp, _breadcrumb(event.name, event.attributes or {})))
            crumbs[-1][1]["timestamp"] = event.timestamp / 1e9
    crumbs.sort(key=lambda item: item[0])
    return [crumb for _, crumb in crumbs[-MAX_BREADCRUMBS:]]


def _breadcrumb(name: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    if name == BREADCRUMB_EVENT:
        data = {
            key[len(BREADCRUMB_DATA_PREFIX) :]: context_value(value)
            for key, value in attributes.items()
            if key.startswith(BREADCRUMB_DATA_PREFIX)
        }
        crumb: dict[str, Any] = {
            "type": attributes.get("breadcrumb.type", "default"),
            "level": attributes.get("breadcrumb.level", "info"),
            "message": attributes.get("breadcrumb.message", ""),
        }
        if "breadcrumb.category" in attributes:
            crumb["category"] = attributes["breadcrumb.category"]
        if data:
            crumb["data"] = data
        return crumb
    if name == MESSAGE_EVENT:
        return {
            "type": "default",
            "category": "message",
            "level": attributes.get("message.level", "info"),
            "message": attributes.get("message.text", ""),
        }
    crumb = {"type": "default", "category": "otel.event", "level": "info", "message": name}
    if attributes:
        crumb["data"] = {k: context_value(v) for k, v in attributes.items()}
    return crumb


# -- fingerprint rules (OTEL_BRIDGE_FINGERPRINT_RULES) ---------------------------------------

_MATCHERS = ("type", "op", "transaction", "message")


@dataclass(frozen=True)
class FingerprintRule:
    """``<matcher>=<group>``; matcher ``type:<glob>`` (the default), ``op:<op>``,
    ``transaction:<glob>`` or ``message:<glob>``."""

    field: str
    pattern: str
    group: str

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.field == "op":
            op = str(_trace_context(event).get("op") or "")
            return op == self.pattern or op.startswith(self.pattern + ".")
        if self.field == "type":
            return any(fnmatch.fnmatchcase(t, self.pattern) for t in _exception_types(event))
        if self.field == "transaction":
            return fnmatch.fnmatchcase(str(event.get("transaction") or ""), self.pattern)
        return any(fnmatch.fnmatchcase(m, self.pattern) for m in _messages(event))


def parse_fingerprint_rules(raw: str) -> tuple[FingerprintRule, ...]:
    """``ValueError=value-errors,op:db=database-errors`` -> rules, first match wins."""
    rules = []
    for item in raw.split(","):
        if not item.strip():
            continue
        matcher, sep, group = item.rpartition("=")
        matcher, group = matcher.strip(), group.strip()
        if not sep or not matcher or not group:
            raise InvalidSetting(f"expected <matcher>=<group>, got {item.strip()!r}")
        field, colon, pattern = matcher.partition(":")
        if not colon:
            field, pattern = "type", matcher
        field, pattern = field.strip().lower(), pattern.strip()
        if field not in _MATCHERS or not pattern:
            raise InvalidSetting(
                f"{matcher!r}: expected an exception type or one of "
                f"{', '.join(m + ':' for m in _MATCHERS)} followed by a pattern"
            )
        rules.append(FingerprintRule(field, pattern, group))
    return tuple(rules)


def apply_fingerprint_rules(
    event: dict[str, Any], rules: Sequence[FingerprintRule]
) -> dict[str, Any]:
    """Set the fingerprint of an error event from the first matching rule, in place.

    A fingerprint set in code (:func:`set_fingerprint`) wins over the rules.
    """
    if event.get("type") == "transaction" or event.get("fingerprint") not in (
        None,
        [],
        ["{{ default }}"],
    ):
        return event
    for rule in rules:
        if rule.matches(event):
            event["fingerprint"] = [rule.group]
            break
    return event


def _trace_context(event: Mapping[str, Any]) -> Mapping[str, Any]:
    contexts = event.get("contexts")
    trace_context = contexts.get("trace") if isinstance(contexts, Mapping) else None
    return trace_context if isinstance(trace_context, Mapping) else {}


def _exception_types(event: Mapping[str, Any]) -> list[str]:
    container = event.get("exception")
    values = container.get("values") if isinstance(container, Mapping) else container
    types: list[str] = []
    for item in values if isinstance(values, list) else ():
        if isinstance(item, Mapping) and item.get("type"):
            types.append(str(item["type"]))
            if item.get("module"):
                types.append(f"{item['module']}.{item['type']}")
    return types


def _messages(event: Mapping[str, Any]) -> list[str]:
    found = [str(event["message"])] if isinstance(event.get("message"), str) else []
    logentry = event.get("logentry")
    if isinstance(logentry, Mapping):
        found += [str(logentry[k]) for k in ("formatted", "message") if logentry.get(k)]
    container = event.get("exception")
    values = container.get("values") if isinstance(container, Mapping) else None
    for item in values if isinstance(values, list) else ():
        if isinstance(item, Mapping) and item.get("value"):
            found.append(str(item["value"]))
    return found
