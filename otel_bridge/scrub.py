"""The one place where secrets and personal data are removed.

A single :class:`Scrubber` is used for span attributes and span events (through
:class:`ScrubbingSpanExporter`, around every trace exporter), for Sentry error events,
transactions, breadcrumbs and logs (through :class:`SentryScrubHooks`) and for OTel log
records (:meth:`Scrubber.scrub_log_record`).

Written by hand because neither library does what we need: sentry-sdk's ``EventScrubber``
matches whole keys only (``user_password`` passes) and never looks at URLs, SQL or message
text, and opentelemetry-sdk has no scrubbing at all.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status
from sentry_sdk._types import AnnotatedValue

from otel_bridge.context import (
    BREADCRUMB_DATA_PREFIX,
    CONTEXT_PREFIX,
    TAG_PREFIX,
    USER_PREFIX,
    context_value,
)
from otel_bridge.span_attributes import attributes_view, events_view

if TYPE_CHECKING:
    from otel_bridge.config import BridgeConfig

_logger = logging.getLogger(__name__)

FILTERED = "[Filtered]"

DEFAULT_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set-cookie",
    "session",
    "csrf",
    "private_key",
    # the rest of sentry-sdk's DEFAULT_DENYLIST that the ones above do not already contain
    "credential",
    "privatekey",
    "mysql_pwd",
    "xsrf",
    "phpsessid",
    "connect.sid",
    "symfony",
)
# Keys sensitive only as a whole (or as the last part of a dotted name): as a substring,
# sentry-sdk's "auth" would also filter "author" and "oauth_provider".
WHOLE_WORD_KEYS: tuple[str, ...] = ("auth",)

# Attribute conventions, old and stable names both.
URL_ATTRIBUTES = frozenset({"url.full", "http.url", "http.target", "url.original", "url"})
QUERY_ATTRIBUTES = frozenset({"url.query", "http.query", "query_string"})
SQL_ATTRIBUTES = frozenset({"db.query.text", "db.statement"})
TEXT_ATTRIBUTES = frozenset(
    {
        "exception.message",
        "exception.stacktrace",
        "message.text",
        "breadcrumb.message",
        "log.message",
        "code.stacktrace",
    }
)
# Personal data that only leaves with send_default_pii: the client's IP and e-mail.
PII_ATTRIBUTES = frozenset(
    {
        "client.address",
        "http.client_ip",
        "net.peer.ip",
        "net.sock.peer.addr",
        "network.peer.address",
        "user.email",
        "enduser.email",
        # contrib instrumentations write header names with "_" for "-"
        "http.request.header.x_forwarded_for",
        "http.request.header.x-forwarded-for",
        "http.request.header.x_real_ip",
        "http.request.header.x-real-ip",
        "http.request.header.forwarded",
    }
)
_PII_HEADERS = frozenset({"x_forwarded_for", "x_real_ip", "forwarded", "remote_addr"})
# Header values are free text to the scrubber: a Referer or Location holds whole URLs.
HEADER_PREFIXES = ("http.request.header.", "http.response.header.")
# Where otel_bridge.context writes what the application hands to set_context, set_tags,
# set_user and add_breadcrumb: nested data arrives there as JSON text, to be scrubbed as
# the data it is (context_value turns it back into structure for Sentry).
STRUCTURED_PREFIXES = (CONTEXT_PREFIX, TAG_PREFIX, BREADCRUMB_DATA_PREFIX, USER_PREFIX)

_MAX_DEPTH = 20


def _normalise(word: str) -> str:
    return word.strip().lower().replace("-", "_")


def _key_regex(keys: Sequence[str]) -> str:
    # "api_key" must also match "api-key" and "apikey"-style spellings in free text.
    parts = []
    for key in sorted({_normalise(k) for k in keys if k.strip()}, key=len, reverse=True):
        parts.append("[-_]?".join(re.escape(piece) for piece in key.split("_")))
    return "|".join(parts)


_REMEMBERED_VALUES = 2048
_REMEMBERED_LENGTH = 1024
_REMEMBERED_KEYS = 4096

# How an OTel attribute is scrubbed, by its key alone (see Scrubber.changed_attributes).
_PLAIN, _DROPPED, _TEXT, _TEXT_SENSITIVE, _SENSITIVE, _URL, _QUERY, _SQL, _STRUCTURED = range(9)
_PLAIN_SCALARS = frozenset({str, int, float, bool})
_LEFT_OUT = object()  # what _scrub_attribute returns for an attribute that is dropped


def _remembering(scrub: Callable[[str], str]) -> Callable[[str], str]:
    cached = lru_cache(maxsize=_REMEMBERED_VALUES)(scrub)

    def remembering(value: str) -> str:
        if isinstance(value, str) and len(value) <= _REMEMBERED_LENGTH:
            scrubbed = cached(value)
            # The remembered result is the first equal string's object: an unchanged value
            # is handed back as itself, so callers can tell "unchanged" by identity (a span
            # nothing was scrubbed from is not copied; see scrub_readable_span).
            return value if scrubbed == value else scrubbed
        return scrub(value)

    return remembering


_CLOSING = {"[": "]", "{": "}", "(": ")"}
_BRACKET_OR_QUOTE = re.compile(r"[\[\]{}()'\"]")
_QUOTED_REST = {"'": re.compile(r"(?:[^'\\]|\\.)*'"), '"': re.compile(r'(?:[^"\\]|\\.)*"')}


def _bracketed_end(text: str, start: int) -> int:
    """Where the bracket opened at ``start`` is closed (the index after it), skipping quoted
    strings with their escapes; the end of ``text`` if it never is. A closing bracket of
    the wrong kind is passed over, so a malformed value is filtered further, not less."""
    expected = [_CLOSING[text[start]]]
    position = start + 1
    while (found := _BRACKET_OR_QUOTE.search(text, position)) is not None:
        char = found.group()
        position = found.end()
        if char in _QUOTED_REST:
            rest = _QUOTED_REST[char].match(text, position)
            if rest is None:  # a quote left open: the rest of the text is inside it
                return len(text)
            position = rest.end()
        elif char in _CLOSING:
            expected.append(_CLOSING[char])
        elif char == expected[-1]:
            expected.pop()
            if not expected:
                return position
    return len(text)


def _replace_credentials(match: re.Match[str]) -> str:
    token = match.group(2)
    # An ordinary word after "basic", "bearer" or "digest" ("the digest template is
    # missing", "basic understanding") is prose, not a credential: tokens and base64 have
    # digits, symbols or capitals inside.
    if token.isalpha() and token[1:].islower():
        return match.group(0)
    return f"{match.group(1)} {FILTERED}"


class Scrubber:
    """Removes secrets (always) and personal data (unless ``send_default_pii``).

    Keys are matched case-insensitively as substrings, with ``-`` and ``_`` treated alike,
    against :data:`DEFAULT_KEYS` plus ``extra_keys``; a matching value becomes ``[Filtered]``.
    """

    def __init__(
        self,
        extra_keys: Sequence[str] = (),
        send_default_pii: bool = False,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.send_default_pii = send_default_pii
        self.keys: tuple[str, ...] = tuple(
            dict.fromkeys(_normalise(k) for k in (*DEFAULT_KEYS, *extra_keys) if k.strip())
        )
        whole_words = "|".join(
            rf"(?<![\w.\-\[\]]){re.escape(word)}(?![\w.\-\[\]])" for word in WHOLE_WORD_KEYS
        )
        words = f"{_key_regex(self.keys)}|{whole_words}"
        key_chars = r"[\w.\-\[\]]"
        self._kv_re = re.compile(
            rf"(?P<key>{key_chars}{{0,64}}(?:{words}){key_chars}{{0,64}})(?P<close>[\"']?)(?P<sep>\s*[:=]\s*)"
            r"(?!(?<=:)//)"  # "token://host" is a URL's scheme, not a key and its value
            r"(?P<value>\[Filtered\]|(?:bearer|basic|digest|token)\s+[^\s,;&\"']+"
            # quoted (Python's b'' and r'' too, escaped quotes inside); a list, mapping or
            # tuple as Python or JSON write one, by its opening bracket alone (its end, at any
            # depth, is found by _bracketed_end); quoted but cut off (a truncated message);
            # bare
            r"|[bBrRuU]?\"(?:[^\"\\]|\\.)*\"|[bBrRuU]?'(?:[^'\\]|\\.)*'"
            r"|(?P<open>[\[{(])"
            r"|\"[^\"\s,;]*|'[^'\s,;]*|[^\s&,;\"'}\])<>]+)",
            re.IGNORECASE,
        )
        self.is_sensitive_key = lru_cache(maxsize=4096)(self._is_sensitive_key)
        self._attribute_kinds: dict[str, int] = {}
        # Spans repeat the same values (one SQL template per query site, one URL per route):
        # each distinct short value is scrubbed once. Long ones (log messages) are not kept.
        self.scrub_query = _remembering(self._scrub_query)
        self.scrub_url = _remembering(self._scrub_url)
        self.scrub_sql = _remembering(self._scrub_sql)
        self.scrub_text = _remembering(self._scrub_text)

    @classmethod
    def from_config(cls, config: BridgeConfig) -> Scrubber:
        return cls(
            extra_keys=config.scrub_keys,
            send_default_pii=config.send_default_pii,
            enabled=config.scrub_enabled,
        )

    def _is_sensitive_key(self, key: str) -> bool:
        normalised = _normalise(key)
        if normalised.rpartition(".")[2] in WHOLE_WORD_KEYS:
            return True
        return any(word in normalised for word in self.keys)

    # -- mappings ---------------------------------------------------------------------------

    def scrub_mapping(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``data`` (recursively) with every sensitive key's value filtered."""
        if not self.enabled:
            return dict(data)
        return self._mapping(data, text=False, depth=0)

    def _mapping(self, data: Mapping[Any, Any], *, text: bool, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key)
            if self.is_sensitive_key(name):
                result[key] = self._filtered_like(value)
            elif not self.send_default_pii and (
                _normalise(name) in _PII_HEADERS or name in PII_ATTRIBUTES
            ):
                continue
            else:
                result[key] = self._value(name, value, text=text, depth=depth + 1)
        return result

    def _value(self, key: str, value: Any, *, text: bool, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            return FILTERED
        if isinstance(value, str):
            lowered = key.lower()
            if lowered in URL_ATTRIBUTES:
                return self.scrub_url(value)
            if lowered in QUERY_ATTRIBUTES:
                return self.scrub_query(value)
            if lowered in SQL_ATTRIBUTES:
                return self.scrub_sql(value)
            return self.scrub_text(value) if text else value
        if isinstance(value, bytes):
            if not text:
                return value
            decoded = value.decode("utf-8", "replace")
            scrubbed = self.scrub_text(decoded)
            return value if scrubbed == decoded else scrubbed.encode()
        if isinstance(value, int | float | type(None)):
            return value
        if isinstance(value, AnnotatedValue):
            # sentry-sdk's note that a value was removed or cut (with its _meta): kept as
            # such, its value scrubbed; rendered with repr below, the note would be lost.
            return AnnotatedValue(
                self._value(key, value.value, text=text, depth=depth + 1), value.metadata
            )
        if isinstance(value, list | tuple):
            items = [self._value(key, item, text=text, depth=depth + 1) for item in value]
            if isinstance(value, tuple):
                if all(new is old for new, old in zip(items, value, strict=True)):
                    return value  # immutable and unchanged: a clean span is not copied
                return tuple(items)
            return items  # a list is copied, as scrub_mapping promises
        if isinstance(value, Mapping):
            return self._mapping(value, text=text, depth=depth)
        if text:
            # An object (a request, say) would be rendered with its repr later, secrets and all;
            # render it now, scrubbed.
            try:
                return self.scrub_text(repr(value))
            except Exception:
                return FILTERED
        return value

    @staticmethod
    def _filtered_like(value: Any) -> Any:
        # OTel attribute values must stay valid: a sequence stays a sequence of strings.
        if isinstance(value, tuple):
            return (FILTERED,) if value else ()
        if isinstance(value, list):
            return [FILTERED] if value else []
        return FILTERED

    # -- URLs -------------------------------------------------------------------------------

    def _scrub_query(self, query: str) -> str:
        """``a=1&token=x`` -> ``a=1&token=[Filtered]`` (order and encoding kept)."""
        if not self.enabled or not query:
            return query
        parts = []
        for part in re.split(r"([&;])", query):
            key, sep, _value = part.partition("=")
            if sep and self.is_sensitive_key(unquote_plus(key)):
                parts.append(f"{key}={FILTERED}")
            else:
                parts.append(part)
        return "".join(parts)

    def _scrub_url(self, url: str) -> str:
        """Credentials in the authority removed; sensitive query (and fragment) values filtered."""
        if not self.enabled or not url:
            return url
        try:
            parts = urlsplit(url)
        except ValueError:
            return self._scrub_unparsable_url(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            netloc = f"{FILTERED}:{FILTERED}@{host}" if ":" in userinfo else f"{FILTERED}@{host}"
        fragment = self.scrub_query(parts.fragment) if "=" in parts.fragment else parts.fragment
        query = self.scrub_query(parts.query)
        if netloc == parts.netloc and query == parts.query and fragment == parts.fragment:
            return url  # unchanged, and not normalised by urlunsplit ("////" stays as it was)
        return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))

    # A scheme, then the authority up to its last "@" (a password may hold an unencoded "@").
    _URL_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/?#]*)@")

    def _scrub_unparsable_url(self, url: str) -> str:
        """A URL urlsplit refuses (say ``amqp://[Filtered]:[Filtered]@host``, this scrubber's
        own output, whose brackets read as an IPv6 host): credentials before the "@" and
        sensitive ``key=value`` pairs are filtered by pattern. Not through scrub_text, which
        finds this same URL in the text and would come back here without end."""

        def userinfo(match: re.Match[str]) -> str:
            credentials = f"{FILTERED}:{FILTERED}" if ":" in match["userinfo"] else FILTERED
            return f"{match['scheme']}{credentials}@"

        url = self._URL_USERINFO.sub(userinfo, url, count=1)
        url = self._filter_labelled_values(url)
        return self._BEARER.sub(_replace_credentials, url)

    # -- SQL --------------------------------------------------------------------------------

    _SQL_LITERAL = re.compile(
        r"""(?:[EeNnXxBb]?'(?:[^'\\]|''|\\.)*')"""  # string literals, '' and \' escapes
        r"""|(?:\$(?P<tag>\w*)\$.*?\$(?P=tag)\$)"""  # PostgreSQL dollar quoting
        r"""|(?<![\w$.:])-?(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.])""",
        re.DOTALL,
    )

    # The same without backslash escapes outside E'...': standard SQL, PostgreSQL's default
    # and SQLite, where 'C:\' is a whole literal.
    _SQL_LITERAL_STANDARD = re.compile(
        r"""(?:[Ee]'(?:[^'\\]|''|\\.)*')|(?:[NnXxBb]?'(?:[^']|'')*')"""
        r"""|(?:\$(?P<tag>\w*)\$.*?\$(?P=tag)\$)"""
        r"""|(?<![\w$.:])-?(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.])""",
        re.DOTALL,
    )

    def _scrub_sql(self, sql: str) -> str:
        """String and numeric literals become ``%s``: ``WHERE password = 'x'`` leaks nothing.

        Whether ``\\'`` ends a literal depends on the database (MySQL: no; PostgreSQL and
        SQLite: yes), which the text does not say: read one way and then the other, the
        reading that leaves no quote open wins; where both do, everything from the open
        quote on goes."""
        if not self.enabled or not sql:
            return sql
        scrubbed = self._SQL_LITERAL.sub("%s", sql)
        if "'" not in scrubbed:
            return scrubbed
        standard = self._SQL_LITERAL_STANDARD.sub("%s", sql)
        if "'" not in standard:
            return standard
        return standard[: standard.index("'")] + "%s"

    # -- free text --------------------------------------------------------------------------

    _URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>]+")
    _COOKIE_LINE = re.compile(
        r"(?P<head>(?<![\w-])(?:set-)?cookie[ \t]*:[ \t]*)(?!\[Filtered\])[^\r\n]+",
        re.IGNORECASE,
    )
    _BEARER_HINT = re.compile(r"bearer|basic|digest", re.IGNORECASE)
    _BEARER = re.compile(r"\b(bearer|basic|digest)\s+([A-Za-z0-9\-._~+/]{8,}=*)", re.IGNORECASE)

    def _scrub_text(self, text: str) -> str:
        """For messages: URLs, ``key=value``/``key: value`` with a sensitive key, bearer tokens."""
        if not self.enabled or not text:
            return text
        if ":" not in text and "=" not in text and not self._BEARER_HINT.search(text):
            return text  # the common case (a span name, a plain message) costs one scan
        text = self._URL_IN_TEXT.sub(lambda m: self.scrub_url(m.group(0)), text)
        # A Cookie header's value is all its cookies, not just the first: to the line's end
        # (a sentence that says "cookie:" loses its end too, which is the safe mistake).
        text = self._COOKIE_LINE.sub(rf"\g<head>{FILTERED}", text)
        text = self._filter_labelled_values(text)
        return self._BEARER.sub(_replace_credentials, text)

    def _filter_labelled_values(self, text: str) -> str:
        """``re.sub`` with :meth:`_replace_kv`, except that a value opening a bracket is
        filtered up to the bracket that closes it, however deep it nests (a pattern cannot
        count brackets), or to the end of the text where none does (a cut-off message)."""
        pieces: list[str] = []
        position = 0
        while (match := self._kv_re.search(text, position)) is not None:
            pieces.append(text[position : match.start()])
            if match.group("open") is None:
                pieces.append(self._replace_kv(match))
                position = match.end()
            else:
                pieces.append(match.group("key") + match.group("close") + match.group("sep"))
                pieces.append(FILTERED)
                position = _bracketed_end(text, match.start("open"))
        if not pieces:
            return text
        pieces.append(text[position:])
        return "".join(pieces)

    @staticmethod
    def _replace_kv(match: re.Match[str]) -> str:
        value = match.group("value")
        if value == FILTERED:
            return match.group(0)
        quote = value[0] if value[:1] in ("'", '"') else ""
        # A value cut off before its closing quote stays open: closing it would make a string
        # literal that SQL scrubbing, on a second pass, turns into %s.
        closing = quote if len(value) > 1 and value.endswith(quote) else ""
        head = match.group("key") + match.group("close") + match.group("sep")
        return f"{head}{quote}{FILTERED}{closing}"

    # -- OTel attributes --------------------------------------------------------------------

    def scrub_attributes(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """OTel conventions: URLs, queries, SQL, headers, exception text, client IP/e-mail."""
        if not self.enabled:
            return dict(attributes)
        changed = self.changed_attributes(attributes)
        return dict(attributes) if changed is None else changed

    def changed_attributes(self, attributes: Mapping[str, Any]) -> dict[str, Any] | None:
        """:meth:`scrub_attributes`, or None when scrubbing changes nothing.

        Runs on the batch thread for every attribute of every span, most of which change
        nothing: a clean span costs no copy, and a key is classified once, not once per span.
        An unchanged value is the very object it was (the remembering scrubbers hand back
        the value itself), so "unchanged" is told by identity."""
        if not self.enabled:
            return None
        kinds = self._attribute_kinds
        result: dict[str, Any] | None = None
        for key, value in attributes.items():
            kind = kinds.get(key)
            if kind == _PLAIN and value.__class__ in _PLAIN_SCALARS:
                new = value
            else:
                new = self._scrub_attribute(key, value, kind)
            if result is None:
                if new is value:
                    continue
                result = {}
                for earlier, kept in attributes.items():  # the unchanged ones before this
                    if earlier is key:
                        break
                    result[earlier] = kept
            if new is not _LEFT_OUT:
                result[key] = new
        return result

    def _scrub_attribute(self, key: str, value: Any, kind: int | None = None) -> Any:
        if kind is None:  # not classified yet (the caller's lookup found nothing)
            kind = self._attribute_kind(key)
        if kind == _DROPPED:
            return _LEFT_OUT
        if isinstance(value, str):
            if kind in (_TEXT, _TEXT_SENSITIVE):
                return self.scrub_text(value)
            if kind == _SENSITIVE:
                return FILTERED
            if kind == _URL:
                return self.scrub_url(value)
            if kind == _QUERY:
                return self.scrub_query(value)
            if kind == _SQL:
                return self.scrub_sql(value)
            if kind == _STRUCTURED:
                return self._scrub_structured(value)
            return value
        sensitive = kind in (_SENSITIVE, _TEXT_SENSITIVE)
        if isinstance(value, bool | int | float):
            return FILTERED if sensitive and not _is_token_count(key, value) else value
        if sensitive:
            return self._filtered_like(value)
        return self._value(key, value, text=kind in (_TEXT, _STRUCTURED), depth=1)

    def _attribute_kind(self, key: str) -> int:
        kind = self._attribute_kinds.get(key)
        if kind is None:
            kind = self._classify_attribute(key)
            if len(self._attribute_kinds) < _REMEMBERED_KEYS:  # keys made of data: bounded
                self._attribute_kinds[key] = kind
        return kind

    def _classify_attribute(self, key: str) -> int:
        if not self.send_default_pii and key in PII_ATTRIBUTES:
            return _DROPPED
        sensitive = self.is_sensitive_key(key)
        if key in TEXT_ATTRIBUTES:
            return _TEXT_SENSITIVE if sensitive else _TEXT
        if sensitive:
            return _SENSITIVE
        if key in URL_ATTRIBUTES:
            return _URL
        if key.startswith(STRUCTURED_PREFIXES):
            return _URL if key.rsplit(".", 1)[-1].lower() in URL_ATTRIBUTES else _STRUCTURED
        if key.startswith(HEADER_PREFIXES):
            return _TEXT
        if key in QUERY_ATTRIBUTES:
            return _QUERY
        if key in SQL_ATTRIBUTES:
            return _SQL
        return _PLAIN

    def _scrub_structured(self, value: str) -> str:
        """A value the application handed to otel_bridge.context: text, or nested data as
        JSON, scrubbed key by key as scrub_event scrubs a context (and as JSON again)."""
        data = context_value(value)
        if isinstance(data, str):
            return self.scrub_text(value)
        scrubbed = self._value("", data, text=True, depth=1)
        if scrubbed == data:
            return value
        return json.dumps(scrubbed, default=str, sort_keys=True)

    # -- Sentry events ----------------------------------------------------------------------

    def scrub_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Scrub a whole Sentry event (error or transaction) in place and return it."""
        if not self.enabled:
            return event
        request = event.get("request")
        if isinstance(request, dict):
            self._scrub_request(request)
        user = event.get("user")
        if isinstance(user, dict):
            if not self.send_default_pii:
                user.pop("ip_address", None)
                user.pop("email", None)
            event["user"] = self._deep(user)
        crumbs = event.get("breadcrumbs")
        values = crumbs.get("values") if isinstance(crumbs, dict) else crumbs
        if isinstance(values, list):
            for crumb in values:
                if isinstance(crumb, dict):
                    self.scrub_breadcrumb(crumb)
        for key in ("extra", "contexts", "tags", "modules_extra"):
            if isinstance(event.get(key), dict | list):
                event[key] = self._deep(event[key])
        for key in ("message", "transaction"):
            if isinstance(event.get(key), str):
                event[key] = self.scrub_text(event[key])
        self._scrub_logentry(event.get("logentry"))
        for container in ("exception", "threads"):
            self._scrub_exceptions(event.get(container))
        spans = event.get("spans")
        if isinstance(spans, list):
            for span in spans:
                if isinstance(span, dict):
                    self.scrub_sentry_span(span)
        return event

    def _deep(self, value: Any) -> Any:
        return self._value("", value, text=True, depth=0)

    def _scrub_request(self, request: dict[str, Any]) -> None:
        if isinstance(request.get("url"), str):
            request["url"] = self.scrub_url(request["url"])
        query = request.get("query_string")
        if isinstance(query, str):
            request["query_string"] = self.scrub_query(query)
        elif query is not None:
            request["query_string"] = self._deep(query)
        if isinstance(request.get("headers"), dict):
            request["headers"] = self._mapping(request["headers"], text=True, depth=0)
        cookies = request.get("cookies")
        if cookies:
            # Any cookie may identify a person; without PII consent none leaves.
            if self.send_default_pii and isinstance(cookies, dict):
                request["cookies"] = self._deep(cookies)
            elif isinstance(cookies, dict):
                request["cookies"] = dict.fromkeys(cookies, FILTERED)
            else:
                request["cookies"] = FILTERED
        if "data" in request:
            request["data"] = self._deep(request["data"])
        if isinstance(request.get("env"), dict):
            request["env"] = self._mapping(request["env"], text=True, depth=0)

    def scrub_breadcrumb(self, crumb: dict[str, Any]) -> dict[str, Any]:
        """In place: the message as text, ``data`` recursively (``url`` as a URL)."""
        if not self.enabled:
            return crumb
        if isinstance(crumb.get("message"), str):
            category = str(crumb.get("category") or "")
            # sentry-sdk's SQL breadcrumbs (category "query") carry the statement as message
            if category in ("query", "db") or category.startswith("db."):
                crumb["message"] = self.scrub_text(self.scrub_sql(crumb["message"]))
            else:
                crumb["message"] = self.scrub_text(crumb["message"])
        if isinstance(crumb.get("data"), dict):
            crumb["data"] = self._deep(crumb["data"])
        return crumb

    def _scrub_logentry(self, logentry: Any) -> None:
        if not isinstance(logentry, dict):
            return
        for key in ("message", "formatted"):
            if isinstance(logentry.get(key), str):
                logentry[key] = self.scrub_text(logentry[key])
        if "params" in logentry:
            logentry["params"] = self._deep(logentry["params"])

    def _scrub_exceptions(self, container: Any) -> None:
        values = container.get("values") if isinstance(container, dict) else container
        if not isinstance(values, list):
            return
        for item in values:
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("value"), str):
                item["value"] = self.scrub_text(item["value"])
            stacktrace = item.get("stacktrace")
            frames = stacktrace.get("frames") if isinstance(stacktrace, dict) else None
            for frame in frames or ():
                if isinstance(frame, dict) and isinstance(frame.get("vars"), dict):
                    frame["vars"] = self._mapping(frame["vars"], text=True, depth=0)

    def scrub_sentry_span(self, span: dict[str, Any]) -> dict[str, Any]:
        """In place: a transaction's child span (``data`` and ``description``)."""
        if isinstance(span.get("data"), dict):
            span["data"] = self._deep(self.scrub_attributes(span["data"]))
        description = span.get("description")
        if isinstance(description, str):
            op = str(span.get("op") or "")
            if op == "db" or op.startswith("db."):
                span["description"] = self.scrub_sql(description)
            else:
                span["description"] = self.scrub_text(description)
        return span

    def scrub_log(self, log: dict[str, Any]) -> dict[str, Any]:
        """In place: a Sentry log (sentry-sdk's ``Log`` dict or an envelope ``log`` item)."""
        if not self.enabled:
            return log
        if isinstance(log.get("body"), str):
            log["body"] = self.scrub_text(log["body"])
        attributes = log.get("attributes")
        if isinstance(attributes, dict):
            wrapped = {k for k, v in attributes.items() if isinstance(v, dict) and "value" in v}
            plain = {k: (v["value"] if k in wrapped else v) for k, v in attributes.items()}
            scrubbed = self._deep(self.scrub_attributes(plain))
            log["attributes"] = {
                k: ({**attributes[k], "value": v} if k in wrapped else v)
                for k, v in scrubbed.items()
            }
            body = log.get("body")
            if isinstance(body, str):
                log["body"] = _without_filtered_parameters(body, plain, scrubbed)
        return log

    def scrub_log_record(self, record: Any) -> None:
        """In place: an OTel ``ReadWriteLogRecord`` (in a ``LogRecordProcessor.on_emit``)."""
        if not self.enabled:
            return
        log_record = getattr(record, "log_record", record)
        if isinstance(log_record.body, str):
            log_record.body = self.scrub_text(log_record.body)
        elif isinstance(log_record.body, Mapping):
            log_record.body = self._deep(log_record.body)
        if log_record.attributes:
            log_record.attributes = self._deep(self.scrub_attributes(log_record.attributes))


class ScrubbingLogRecordProcessor:
    """An OTel ``LogRecordProcessor`` scrubbing each record in place before later processors
    (the batch processors feeding the exporters) see it.

    Duck-typed rather than a subclass so that the experimental logs SDK is imported only in
    ``otel_bridge.logs.otel``; ``LoggerProvider`` calls nothing but these four methods.
    """

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrubber = scrubber

    def on_emit(self, log_record: Any) -> None:
        self._scrubber.scrub_log_record(log_record)

    def enabled(self, **_: Any) -> bool:
        # Scrubbing alone is no reason to build a record: leave the decision to the others.
        return False

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def install_log_scrubbing(logger_provider: Any, scrubber: Scrubber) -> bool:
    """Put a :class:`ScrubbingLogRecordProcessor` *first* in an SDK ``LoggerProvider``.

    ``opentelemetry.sdk._configuration._init_logging`` builds the provider with its batch
    processors already added, and processors run in the order added; the SDK offers no way to
    insert one in front, so the (private) tuple is replaced. Returns False, scrubbing nothing,
    if the provider does not look like opentelemetry-sdk 1.45's.
    """
    if not scrubber.enabled:
        return True
    multi = getattr(logger_provider, "_multi_log_record_processor", None)
    lock = getattr(multi, "_lock", None)
    if lock is None or not isinstance(getattr(multi, "_log_record_processors", None), tuple):
        return False
    with lock:
        existing = multi._log_record_processors  # type: ignore[union-attr]
        if not any(isinstance(p, ScrubbingLogRecordProcessor) for p in existing):
            processor = ScrubbingLogRecordProcessor(scrubber)
            multi._log_record_processors = (processor, *existing)  # type: ignore[union-attr]
    return True


_PARAMETER_PREFIX = "sentry.message.parameter."


def _without_filtered_parameters(
    body: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> str:
    """A Sentry log's body is its template formatted with its parameters: the value of a
    parameter filtered by its name (``{password}``) is taken out of the body too."""
    for key, value in before.items():
        if not key.startswith(_PARAMETER_PREFIX) or after.get(key) != FILTERED:
            continue
        text = str(value)
        if text and text != FILTERED:
            body = body.replace(text, FILTERED)
    return body


def _is_token_count(key: str, value: Any) -> bool:
    # gen_ai.usage.input_tokens and friends are counts, not secrets.
    return key.endswith("_tokens") and isinstance(value, int) and not isinstance(value, bool)


# -- sentry-sdk hooks ---------------------------------------------------------------------


Hook = Callable[[dict[str, Any], dict[str, Any]], "dict[str, Any] | None"]


class SentryScrubHooks:
    """``before_send``/``before_send_transaction``/``before_breadcrumb``/``before_send_log``.

    ``sentry_sdk.init(..., **SentryScrubHooks(scrubber).init_kwargs())``; each hook runs
    ``then`` (if given) on the scrubbed value so other callbacks can be chained.
    """

    def __init__(self, scrubber: Scrubber, then: Mapping[str, Hook] | None = None) -> None:
        self._scrubber = scrubber
        self._then = dict(then or {})
        self._warned_failure = False

    def _chain(
        self,
        name: str,
        scrub: Callable[[dict[str, Any]], dict[str, Any]],
        value: dict[str, Any],
        hint: dict[str, Any],
        *,
        drop_on_failure: bool = False,
    ) -> Any:
        try:
            scrubbed = scrub(value)
        except Exception:
            # sentry-sdk logs a failing hook only with debug on, so every error event would
            # vanish without a word: say it once.
            if not self._warned_failure:
                self._warned_failure = True
                _logger.exception(
                    "otel-bridge: scrubbing failed in %s; the item is dropped (further "
                    "failures are not logged)", name,
                )
            if drop_on_failure:
                return None
            raise  # sentry-sdk drops the event or log, counted as `callback_error`
        follow = self._then.get(name)
        return follow(scrubbed, hint) if follow is not None else scrubbed

    def before_send(self, event: dict[str, Any], hint: dict[str, Any]) -> Any:
        return self._chain("before_send", self._scrubber.scrub_event, event, hint)

    def before_send_transaction(self, event: dict[str, Any], hint: dict[str, Any]) -> Any:
        return self._chain("before_send_transaction", self._scrubber.scrub_event, event, hint)

    def before_breadcrumb(self, crumb: dict[str, Any], hint: dict[str, Any]) -> Any:
        # sentry-sdk keeps a breadcrumb as it was when before_breadcrumb raises: drop it here
        return self._chain(
            "before_breadcrumb", self._scrubber.scrub_breadcrumb, crumb, hint, drop_on_failure=True
        )

    def before_send_log(self, log: dict[str, Any], hint: dict[str, Any]) -> Any:
        return self._chain("before_send_log", self._scrubber.scrub_log, log, hint)

    def init_kwargs(self) -> dict[str, Any]:
        return {
            "before_send": self.before_send,
            "before_send_transaction": self.before_send_transaction,
            "before_breadcrumb": self.before_breadcrumb,
            "before_send_log": self.before_send_log,
        }


# -- spans, before any exporter -----------------------------------------------------------


def _scrub_event(scrubber: Scrubber, event: Event) -> Event:
    """The event itself when nothing in it changes, else a scrubbed copy."""
    if not event.attributes:
        return event
    attributes = scrubber.changed_attributes(event.attributes)
    if attributes is None:
        return event
    return Event(event.name, attributes, event.timestamp)


def scrub_readable_span(scrubber: Scrubber, span: ReadableSpan) -> ReadableSpan:
    """The span itself when scrubbing changes nothing in it (the common case: making a copy
    costs twice the scrubbing), else a scrubbed copy."""
    if not scrubber.enabled:
        return span
    # Every span sent passes here on the batch thread: each field is read once, behind the
    # SDK's properties (see otel_bridge/span_attributes.py).
    original_status = status = span._status
    original_description = status.description
    original_name = span._name
    original_attributes = attributes_view(span)
    original_events = events_view(span)
    if original_description:
        description = scrubber.scrub_text(original_description)
        if description != original_description:
            status = Status(status.status_code, description)
    name = scrubber.scrub_text(original_name)
    attributes = scrubber.changed_attributes(original_attributes)
    events: list[Event] | None = None
    if original_events:
        scrubbed_events = [_scrub_event(scrubber, event) for event in original_events]
        if any(new is not old for new, old in zip(scrubbed_events, original_events, strict=True)):
            events = scrubbed_events
    if attributes is None and events is None and name == original_name and (
        status is original_status
    ):
        return span
    # The copy is made from the fields behind the properties, as the SDK's own
    # _readable_span() does: the properties would each be a Python-level call.
    return ReadableSpan(
        name=name,
        context=span._context,
        parent=span._parent,
        resource=span._resource,
        attributes=dict(original_attributes) if attributes is None else attributes,
        events=list(original_events) if events is None else events,
        links=tuple(span._links),
        kind=span._kind,
        status=status,
        start_time=span._start_time,
        end_time=span._end_time,
        instrumentation_info=span._instrumentation_info,
        instrumentation_scope=span._instrumentation_scope,
    )


class ScrubbingSpanExporter(SpanExporter):
    """Wraps an exporter so it only ever sees scrubbed copies. The configurator wraps every
    trace exporter (OTLP, console and the Sentry pipeline alike), so the work happens on each
    batch processor's thread, never on the request thread."""

    def __init__(self, inner: SpanExporter, scrubber: Scrubber) -> None:
        self._inner = inner
        self._scrubber = scrubber

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([scrub_readable_span(self._scrubber, s) for s in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
