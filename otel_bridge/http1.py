"""One HTTP/1.1 request and its response on a kept-alive connection, as the transport needs.

Written by hand because the libraries made for this cost more than everything else the
transport does for an envelope: ``http.client`` parses response headers through the
``email`` package and checks each request header with a regular expression, and ``h11`` costs
as much (48 µs per exchange, measured 2026-11-23). On one thread against a local ingest an
envelope took 215-235 µs of CPU through ``http.client`` and 145-154 µs with this module.

Only what a client of the Sentry ingest meets is handled: responses with a
``Content-Length``, chunked or read to the connection's end, ``1xx`` interim responses,
repeated headers, ``Connection: close`` and HTTP/1.0. Anything else is an
``http.client.HTTPException``, as ``http.client`` would raise for it.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator, Mapping
from typing import Protocol

_MAX_LINE = 65536  # http.client's limits
_MAX_HEADERS = 100
_MAX_INTERIM_RESPONSES = 10  # a server answering "100 Continue" forever must not hang us
_NO_BODY_STATUSES = frozenset({204, 304})
_FORBIDDEN_IN_HEAD = ("\r", "\n", "\0")


class LineReader(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...
    def read(self, size: int = -1, /) -> bytes: ...


class ResponseHeaders(Mapping[str, str]):
    """Response headers looked up by any case, as sentry-sdk does (``Retry-After``,
    ``x-sentry-rate-limits``); a repeated header's values joined by ", " (RFC 9110, 5.3).
    ``get`` and ``in`` come from ``Mapping``, through ``__getitem__``."""

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields  # keys lower-cased

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class Response:
    """What sentry-sdk's response handling reads of a urllib3 response."""

    def __init__(self, status: int, headers: ResponseHeaders, data: bytes, will_close: bool):
        self.status = status
        self.headers = headers
        self.data = data
        self.will_close = will_close

    def close(self) -> None:
        pass


def request_head(method: str, target: str, host: str, headers: Mapping[str, str],
                 body_length: int) -> bytes:
    """The request line and headers, ending in the blank line. ``Host`` and
    ``Content-Length`` are this function's; the same names in ``headers`` are ignored.

    A CR, LF or NUL in any part raises ValueError: such a value would split the request."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {body_length}"]
    for name, value in headers.items():
        if name.lower() not in ("host", "content-length"):
            lines.append(f"{name}: {value}")
    if any(character in line for line in lines for character in _FORBIDDEN_IN_HEAD):
        raise ValueError("otel-bridge: a CR, LF or NUL in an HTTP request line or header")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def host_header(host: str, port: int | None, default_port: int) -> str:
    """The ``Host`` value: IPv6 literals bracketed, IDNA for non-ASCII names, the port only
    when it is not the scheme's default."""
    if ":" in host and not host.startswith("["):
        name = f"[{host}]"
    elif host.isascii():
        name = host
    else:
        name = host.encode("idna").decode("ascii")
    if port is None or port == default_port:
        return name
    return f"{name}:{port}"


def read_response(reader: LineReader) -> Response:
    """Read the response to a POST (after any ``1xx`` interim ones) and its whole body."""
    for _ in range(_MAX_INTERIM_RESPONSES + 1):
        version, status = _read_status(reader)
        fields = _read_fields(reader)
        if not 100 <= status < 200:
            break
    else:
        raise http.client.HTTPException("got only interim (1xx) responses")
    headers = ResponseHeaders(fields)
    connection = {token.strip().lower() for token in (headers.get("connection") or "").split(",")}
    # HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 only when told to.
    will_close = "keep-alive" not in connection if version == "HTTP/1.0" else "close" in connection

    if status in _NO_BODY_STATUSES:
        return Response(status, headers, b"", will_close)
    if (headers.get("transfer-encoding") or "").strip().lower().endswith("chunked"):
        return Response(status, headers, _read_chunked(reader), will_close)
    length = _content_length(headers.get("content-length"))
    if length is None:  # the body runs to the end of the connection
        return Response(status, headers, reader.read(), True)
    data = reader.read(length)
    if len(data) < length:
        raise http.client.IncompleteRead(data, length - len(data))
    return Response(status, headers, data, will_close)


def _readline(reader: LineReader) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise http.client.LineTooLong("header line")
    return line


def _read_status(reader: LineReader) -> tuple[str, int]:
    line = _readline(reader)
    if not line:
        # The server closed a kept-alive connection before answering: the caller may retry.
        raise http.client.RemoteDisconnected("Remote end closed connection without response")
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not _is_ascii_number(parts[1]):
        raise http.client.BadStatusLine(line.decode("latin-1", "replace").strip())
    status = int(parts[1])
    if not 100 <= status <= 999:
        raise http.client.BadStatusLine(line.decode("latin-1", "replace").strip())
    return parts[0], status


def _is_ascii_number(text: str) -> bool:
    # str.isdigit() also takes "²" and other digits int() refuses.
    return text.isascii() and text.isdigit()


def _read_fields(reader: LineReader) -> dict[str, str]:
    fields: dict[str, str] = {}
    last_key: str | None = None
    for _ in range(_MAX_HEADERS + 1):
        line = _readline(reader)
        if line in (b"\r\n", b"\n", b""):
            return fields
        text = line.decode("latin-1")
        if text[:1] in (" ", "\t"):
            # A folded line (obs-fold) continues the field before it: RFC 9112 (5.2) has a
            # client join it with a space, not read it as a field of its own.
            if last_key is not None:
                fields[last_key] = f"{fields[last_key]} {text.strip()}".rstrip()
            continue
        name, colon, value = text.partition(":")
        if not colon:
            last_key = None
            continue  # not a header (http.client keeps such lines as defects): skip it
        key = last_key = name.strip().lower()
        value = value.strip()
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    # "10, 10" (a repeated header) is one length; different ones are a broken response.
    lengths = {part.strip() for part in value.split(",")}
    if len(lengths) != 1:
        raise http.client.HTTPException(f"conflicting Content-Length: {value}")
    text = lengths.pop()
    if not _is_ascii_number(text):
        raise http.client.HTTPException(f"invalid Content-Length: {value}")
    return int(text)


def _read_chunked(reader: LineReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        line = _readline(reader)
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
            raise http.client.HTTPException(f"invalid chunk size {size_text!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        chunk = reader.read(size)
        if len(chunk) < size:
            raise http.client.IncompleteRead(b"".join(chunks) + chunk, size - len(chunk))
        chunks.append(chunk)
        reader.read(2)  # the chunk's CRLF
    _read_fields(reader)  # trailers, up to the blank line
    return b"".join(chunks)
