"""Reading a finished span's attributes and events without the SDK's Python-level wrappers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan


def attributes_view(span: ReadableSpan) -> Mapping[str, Any]:
    """A span's attributes, to read and never to change.

    The SDK's public view is a MappingProxy over ``BoundedAttributes``, whose Python-level
    iteration (an ``__iter__`` and a ``__getitem__`` per key) costs about 15x that of the
    plain dict it keeps (``_dict``, private): that dict when it is there, the public view
    otherwise. The span pipeline reads every attribute of every span more than once."""
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    if isinstance(inner, dict):
        return inner
    return span.attributes or {}


def events_view(span: ReadableSpan) -> Sequence[Event]:
    """A span's events, to read and never to change.

    ``span.events`` copies them into a new tuple at every read, through the Python-level
    iteration of the SDK's ``BoundedList``; most spans have none, and the scrubber asks
    every span. The deque inside (``_dq``, private) when it is there, else the public copy."""
    inner = getattr(getattr(span, "_events", None), "_dq", None)
    if inner is not None:
        return inner  # type: ignore[no-any-return]
    return span.events
