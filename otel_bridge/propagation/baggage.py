"""W3C ``baggage``: parse, split the Sentry DSC from third-party entries, merge, serialize.

Written by hand because opentelemetry-api's W3CBaggagePropagator only reads into and writes
from a Context: it cannot merge the frozen DSC with application baggage into one header.
Everything here is total: malformed members are skipped, nothing raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote

MAX_BYTES = 8192
MAX_MEMBERS = 180
MAX_MEMBER_BYTES = 4096
SENTRY_PREFIX = "sentry-"
# Work on hostile input stays bounded: nothing past this is even split.
_MAX_INPUT_CHARS = 8 * MAX_BYTES

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_RE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
# Every baggage-octet except "%", which must stay an escape.
_SAFE = "!#$&'()*+-./:<=>?@[]^_`{|}~"

Entries = list[tuple[str, str]]


def parse_baggage(headers: str | Iterable[str] | None) -> Entries:
    """Members in order, each key once (the last value wins, as in opentelemetry-api)."""
    if headers is None:
        return []
    if isinstance(headers, str):
        raw = headers
    else:
        raw = ",".join(h for h in headers if isinstance(h, str))
    found: dict[str, str] = {}
    size = 0
    if len(raw) > _MAX_INPUT_CHARS:
        # Cut where a member ends: a member cut through would pass for a shorter value.
        raw = raw[: max(raw.rfind(",", 0, _MAX_INPUT_CHARS + 1), 0)]
    for member in raw.split(","):
        entry = _parse_member(member)
        if entry is None:
            continue
        key, value = entry
        if key not in found and len(found) >= MAX_MEMBERS:
            break
        size += len(member.strip()) + 1
        if size > MAX_BYTES + 1:
            break
        found.pop(key, None)
        found[key] = value
    return list(found.items())


def _parse_member(member: str) -> tuple[str, str] | None:
    if len(member) > MAX_MEMBER_BYTES:
        return None
    # Properties (";k=v") are metadata the W3C spec lets us drop; only key and value travel on.
    key_value = member.split(";", 1)[0]
    key, sep, value = key_value.partition("=")
    key = key.strip(" \t")
    value = value.strip(" \t")
    if not sep or not _TOKEN_RE.fullmatch(key) or not _VALUE_RE.fullmatch(value):
        return None
    return key, unquote(value, errors="replace")


def split_dsc(entries: Iterable[tuple[str, str]]) -> tuple[dict[str, str], Entries]:
    """(DSC with the ``sentry-`` prefix removed, third-party entries)."""
    dsc: dict[str, str] = {}
    others: Entries = []
    for key, value in entries:
        if key.startswith(SENTRY_PREFIX):
            name = key[len(SENTRY_PREFIX) :]
            if name:
                dsc[name] = value
        else:
            others.append((key, value))
    return dsc, others


def dsc_entries(dsc: Mapping[str, str] | None) -> Entries:
    return [(SENTRY_PREFIX + key, value) for key, value in (dsc or {}).items()]


def merge_baggage(
    dsc: Mapping[str, str] | None, others: Iterable[tuple[str, str]]
) -> str | None:
    """One header: the DSC first (so limits never cut it), then third-party entries.

    A third-party ``sentry-*`` entry is dropped: the frozen DSC is the only source of those.
    """
    merged: Entries = dsc_entries(dsc)
    merged.extend((k, v) for k, v in others if not k.startswith(SENTRY_PREFIX))
    return serialize_baggage(merged)


def serialize_baggage(entries: Iterable[tuple[str, str]]) -> str | None:
    """Each key once (first wins), invalid keys skipped, W3C limits kept; None when empty."""
    members: list[str] = []
    seen: set[str] = set()
    size = 0
    for key, value in entries:
        if key in seen or not isinstance(key, str) or not _TOKEN_RE.fullmatch(key):
            continue
        if not isinstance(value, str):
            continue
        member = f"{key}={quote(value, safe=_SAFE)}"
        added = len(member) + (1 if members else 0)
        if len(member) > MAX_MEMBER_BYTES or size + added > MAX_BYTES:
            continue
        seen.add(key)
        members.append(member)
        size += added
        if len(members) >= MAX_MEMBERS:
            break
    return ",".join(members) if members else None
