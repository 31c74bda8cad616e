"""sentry-sdk's HTTP transport, sending through one kept-alive connection of its own.

Everything that makes the transport sentry-sdk's is kept: envelopes, compression, DSN auth,
rate limits (``X-Sentry-Rate-Limits``, ``Retry-After``), client reports, the worker queue.
Only the last step changes. The span pipeline sends one envelope per transaction, and on
that path urllib3's pool machinery, OpenTelemetry's urllib3 instrumentation (suppressed, but
still wrapped around every call) and sentry-sdk's own ``http.client`` hook (whose "is this
the DSN?" check misses DSNs with a port, so it records a breadcrumb of every envelope it
sends) cost more than the request: 497 µs of CPU per envelope against 181 µs through a plain
``http.client`` connection, and 145-154 µs with the exchange of :mod:`otel_bridge.http1`
(measured on one thread, 2026-11-22 and 2026-11-23). With a proxy, custom socket options or
TCP keep-alive configured, the request goes through sentry-sdk's urllib3 pool as before.

A span batch's envelopes are pipelined (HTTP/1.1, RFC 9112 section 9.3.2): up to
``OTEL_BRIDGE_PIPELINE_DEPTH`` requests in one write, their responses read as they come.
Every blocking system call of the sending thread hands the GIL to the application's request
threads and waits to win it back; one write and a few reads per window instead of a write
and a read per envelope took a median 620 µs of CPU off each request in a 5-round A/B of
the Django benchmark (docs/benchmarks.md). Many servers do not answer pipelined requests
(gunicorn's threaded worker answers the first and waits for more bytes that it has already
read), so the first window is a probe: the envelope, then an ``OPTIONS`` request that
changes nothing on the ingest. Any answer to the probe proves pipelining; none within a
second, and the transport sends one request at a time from then on, having lost nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import io
import json
import logging
import os
import socket
import ssl
import struct
import sys
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from sentry_sdk.consts import EndpointType
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import HttpTransport
from sentry_sdk.utils import capture_internal_exception, capture_internal_exceptions
from urllib3.util.wait import wait_for_read

from otel_bridge.forks import reset_in_forked_children
from otel_bridge.http1 import Response, host_header, read_response, request_head
from otel_bridge.serialization import encode_payloads, envelope_bytes

_logger = logging.getLogger(__name__)
_DEFAULT_TIMEOUT = 30.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The `_experiments` key (sentry-sdk passes its options to the transport) of the smallest
# envelope to compress; smaller ones go uncompressed.
COMPRESSION_THRESHOLD_OPTION = "otel_bridge_compression_threshold"
DEFAULT_COMPRESSION_THRESHOLD = 32 * 1024
_GZIP_HEADER = 16  # added to wbits: a gzip header and trailer, as GzipFile writes
_ONE_CALL_GZIP = sys.version_info >= (3, 11)
# A kept-alive connection the server had already closed shows as one of these on the next
# request: worth one fresh attempt.
_STALE_CONNECTION_ERRORS = (
    http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError
)
# A write cut short by these may still have answers waiting to be read (see _exchange).
_CUT_WRITE_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
# The `_experiments` key of the most envelopes in flight on the connection; 1 never pipelines.
PIPELINE_DEPTH_OPTION = "otel_bridge_pipeline_depth"
DEFAULT_PIPELINE_DEPTH = 32
# How long the answer to the pipelining probe may take once the envelope before it is
# answered: a server that handles pipelined requests answers an OPTIONS at once.
_PROBE_TIMEOUT = 1.0


class _Pipelining:
    UNPROVEN = "unproven"  # the next exchange carries the probe
    PROVEN = "proven"
    OFF = "off"  # not asked for, or the server does not answer pipelined requests


@dataclasses.dataclass
class Exchange:
    """The responses to the first requests of a :meth:`KeptAliveConnection.post_many`, in
    order, and what stopped the rest from being answered (None when all were)."""

    responses: list[Response]
    error: Exception | None = None


def _kernel_timeouts(sock: socket.socket, timeout: float) -> None:
    """Blocking mode with the timeout enforced by the kernel (SO_RCVTIMEO/SO_SNDTIMEO).

    A Python-level socket timeout makes every send and receive two GIL releases (a poll,
    then the call); each release is a GIL hand-over with the application's request threads,
    which is what sending costs most. A timeout still ends in an OSError."""
    seconds = int(timeout)
    interval = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)
    except OSError:
        return  # keep Python's own timeout
    sock.settimeout(None)


class _SocketReader(io.RawIOBase):
    """The socket's bytes for a buffered reader, a timeout raised as one.

    ``socket.makefile`` reads through ``SocketIO``, which returns nothing when the kernel's
    receive timeout (SO_RCVTIMEO) expires, as if the server had closed the connection: a
    request the ingest may still be processing would then be sent again on a new one."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._sock.recv_into(buffer)
        except (BlockingIOError, ssl.SSLWantReadError) as exc:
            raise TimeoutError("otel-bridge: the ingest did not answer in time") from exc


class KeptAliveConnection:
    """One HTTP(S) connection to the ingest, reopened when the server closed it.

    A request goes out in one write (head and body together: each system call is a GIL
    hand-over with the application's threads) and its response is read through one buffer
    kept for the connection's life."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int | None,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        pipeline_depth: int = 1,
    ) -> None:
        self._scheme = scheme
        self._host = host
        self._port = port or _DEFAULT_PORTS[scheme]
        self._host_header = host_header(host, port, _DEFAULT_PORTS[scheme])
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._socket: socket.socket | None = None
        self._reader: io.BufferedReader | None = None
        self._lock = threading.Lock()
        self._pipeline_depth = max(1, pipeline_depth)
        self._pipelining = _Pipelining.UNPROVEN if self._pipeline_depth > 1 else _Pipelining.OFF
        reset_in_forked_children(self.after_fork_in_child)

    @property
    def pipelining(self) -> str:
        """``unproven`` (the next exchange probes), ``proven`` or ``off``."""
        return self._pipelining

    def window(self) -> int:
        """How many requests :meth:`post_many` may have in flight at once: one until the
        server has answered a pipelined request (the first exchange carries one, and the
        probe), so an answer that sets rate limits comes before the next are prepared."""
        return self._pipeline_depth if self._pipelining == _Pipelining.PROVEN else 1

    def _connect(self) -> tuple[socket.socket, io.BufferedReader]:
        sock = socket.create_connection((self._host, self._port), self._timeout)
        try:
            with contextlib.suppress(OSError):  # not every socket family has it
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._scheme == "https":
                # The TLS handshake runs with Python's timeout, the rest with the kernel's.
                context = self._ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=self._host)
            _kernel_timeouts(sock, self._timeout)
            return sock, io.BufferedReader(_SocketReader(sock))
        except BaseException:
            sock.close()
            raise

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        exchange = self.post_many(path, [(body, headers)])
        if exchange.error is not None:
            raise exchange.error
        return exchange.responses[0]

    def post_many(
        self, path: str, requests: Sequence[tuple[bytes, Mapping[str, str]]]
    ) -> Exchange:
        """POST each body to ``path``, pipelined once the server has shown it can.

        Requests the server did not get to (it closed the connection after answering the
        ones before) go again on a new connection. A kept-alive connection found closed
        before anything was answered gets one fresh attempt. Any other failure (refused,
        timed out, not HTTP) ends the exchange: the unanswered requests are the caller's to
        count as lost."""
        wire = [
            request_head("POST", path, self._host_header, headers, len(body)) + body
            for body, headers in requests
        ]
        responses: list[Response] = []
        fresh_attempt_left = True
        with self._lock:
            while len(responses) < len(wire):
                answered = len(responses)
                reused = self._socket is not None
                try:
                    self._exchange(wire[answered:], path, responses)
                except _STALE_CONNECTION_ERRORS as error:
                    if len(responses) > answered:
                        continue  # the rest were not answered: send them again
                    if not (reused and fresh_attempt_left):
                        return Exchange(responses, error)
                    fresh_attempt_left = False
                except Exception as error:
                    return Exchange(responses, error)
        return Exchange(responses)

    def _exchange(self, requests: Sequence[bytes], path: str, responses: list[Response]) -> None:
        """Send the next window of ``requests`` in one write and read its responses into
        ``responses``; stop early where the server closes the connection."""
        if self._socket is not None and _closed_or_spoken(self._socket):
            self.close()
        if self._socket is None or self._reader is None:
            self._socket, self._reader = self._connect()
        window = requests[: self.window()]
        probing = self._pipelining == _Pipelining.UNPROVEN
        try:
            cut_write: OSError | None = None
            try:
                if probing:
                    window = window[:1]
                    self._socket.sendall(window[0] + self._probe(path))
                else:
                    self._socket.sendall(window[0] if len(window) == 1 else b"".join(window))
            except _CUT_WRITE_ERRORS as error:
                # The server may have answered the first requests of the window and closed
                # the connection while the rest was still being written (a limit of
                # requests per connection, as nginx's keepalive_requests): its answers wait
                # in the receive buffer. They are read, so that only what they do not cover
                # goes again (post_many), rather than the whole window twice.
                cut_write = error
            for _ in window:
                try:
                    response = read_response(self._reader)
                except (OSError, http.client.HTTPException):
                    if cut_write is None:
                        raise
                    raise cut_write from None
                responses.append(response)
                if response.will_close:
                    # The server processes nothing after a response that closes (RFC 9112,
                    # 9.6): what followed is sent again. Such a server never pipelines.
                    if probing:
                        self._pipelining_unsupported("closes the connection after a request")
                    self.close()
                    return
            if cut_write is not None:  # all answered, but the connection is broken
                raise cut_write
            if probing:
                self._settle_probe()
        except BaseException:
            self.close()
            raise

    def _probe(self, path: str) -> bytes:
        return request_head("OPTIONS", path, self._host_header, {}, 0)

    def _settle_probe(self) -> None:
        assert self._socket is not None and self._reader is not None
        try:
            with _receive_timeout(self._socket, min(_PROBE_TIMEOUT, self._timeout)):
                answer = read_response(self._reader)  # any status: the server answered
        except (OSError, http.client.HTTPException):  # TimeoutError is an OSError
            self._pipelining_unsupported("did not answer a pipelined request")
            self.close()
            return
        self._pipelining = _Pipelining.PROVEN
        if answer.will_close:  # e.g. "405, Connection: close": pipelined, then closed
            self.close()

    def _pipelining_unsupported(self, why: str) -> None:
        self._pipelining = _Pipelining.OFF
        _logger.info(
            "otel-bridge: the ingest at %s %s; sending one envelope at a time "
            "(OTEL_BRIDGE_PIPELINE_DEPTH=1 skips this check)",
            self._host_header, why,
        )

    def close(self) -> None:
        sock, reader = self._socket, self._reader
        self._socket = self._reader = None
        with contextlib.suppress(OSError):
            if reader is not None:
                reader.close()
            if sock is not None:
                sock.close()

    def after_fork_in_child(self) -> None:
        """Forget the parent's connection and lock: a forked child (a pre-fork server's
        worker, Celery's prefork pool, multiprocessing) inherits the parent's socket, and
        writing to it would mix both processes' requests on one TCP connection and hand each
        the other's responses; a lock the parent's worker held at the fork would never be
        released. Closing the child's copy of the socket leaves the parent's connection
        open."""
        self._lock = threading.Lock()
        self.close()


def _closed_or_spoken(sock: socket.socket) -> bool:
    """Whether a kept-alive connection became readable between exchanges: the server closed
    it, or wrote to it unasked (some send a 408 before closing an idle connection). Either
    would be read as the answer to the next request, which would then be lost or counted as
    refused. This is urllib3's own check before it reuses a connection (poll where there is
    one: select() refuses descriptors past 1023, which a busy server's sockets reach)."""
    try:
        return wait_for_read(sock, timeout=0.0)
    except (OSError, ValueError):  # closed under us
        return True


@contextlib.contextmanager
def _receive_timeout(sock: socket.socket, seconds: float) -> Iterator[None]:
    """A shorter receive timeout for the probe's answer, kernel- or Python-enforced as the
    connection's own is (see _kernel_timeouts)."""
    if sock.gettimeout() is not None:
        previous = sock.gettimeout()
        sock.settimeout(seconds)
        try:
            yield
        finally:
            sock.settimeout(previous)
        return
    packed_previous = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
    whole = int(seconds)
    sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVTIMEO,
        struct.pack("ll", whole, int((seconds - whole) * 1_000_000)),
    )
    try:
        yield
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, packed_previous)


class BridgeTransport(HttpTransport):
    """sentry-sdk's HTTP transport, with these changes:

    - envelopes go through a :class:`KeptAliveConnection` (see the module's docstring),
      compressed with one zlib call; a span batch's envelopes are pipelined;
    - the span pipeline hands over a whole batch as one job (:meth:`capture_envelopes`), and
      the envelopes waiting in such jobs are bounded (:meth:`has_room`);
    - OTel instrumentation is suppressed while sentry-sdk's request path sends (urllib3 is
      instrumented; the kept-alive connection's socket is not), so the bridge never records
      (or propagates headers into) its own requests to the ingest;
    - the loss counts of a client report that could not be delivered are counted again, so an
      outage does not also erase the record of what it cost (sentry-sdk attaches them to the
      next envelope and forgets them, whatever becomes of that envelope).
    """

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        experiments = options.get("_experiments") or {}
        self._pipeline_depth = int(
            experiments.get(PIPELINE_DEPTH_OPTION, DEFAULT_PIPELINE_DEPTH)
        )
        self._connection = self._kept_alive_connection()
        self._compression_threshold = int(
            experiments.get(COMPRESSION_THRESHOLD_OPTION, DEFAULT_COMPRESSION_THRESHOLD)
        )
        # sentry-sdk bounds its queue in jobs; a job of capture_envelopes holds a whole span
        # batch, so the envelopes waiting are bounded here too (memory during an outage).
        self._envelope_room = max(1, int(options.get("transport_queue_size") or 100))
        self._pending_envelopes = 0
        self._finished_envelopes = 0
        self._pending_lock = threading.Lock()

    def has_room(self, count: int) -> bool:
        """Whether `count` more envelopes fit (a batch always fits into an empty queue)."""
        with self._pending_lock:
            pending = self._pending_envelopes
        return pending == 0 or pending + count <= self._envelope_room

    def finished_envelopes(self) -> int:
        """Envelopes sent or given up on so far: the pipeline's measure of progress."""
        return self._finished_envelopes

    def _envelopes_done(self, count: int) -> None:
        with self._pending_lock:
            self._pending_envelopes -= count
            self._finished_envelopes += count

    def _kept_alive_connection(self) -> KeptAliveConnection | None:
        options = self.options
        dsn = self.parsed_dsn
        if dsn is None or self._resolve_proxy() or options.get("socket_options"):
            return None
        if options.get("keep_alive"):  # TCP keep-alive probes: urllib3 sets them up
            return None
        context = None
        if dsn.scheme == "https":
            try:
                context = _ssl_context(options)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                # sentry-sdk's pool reports the same problem when it sends, as it always did.
                _logger.warning("otel-bridge: TLS settings for the ingest failed (%s)", exc)
                return None
        port = int(dsn.port) if dsn.port else None
        return KeptAliveConnection(
            dsn.scheme, dsn.host, port, self.TIMEOUT, context, self._pipeline_depth
        )

    def _request(
        self, method: str, endpoint_type: Any, body: Any, headers: Mapping[str, str]
    ) -> Any:
        if self._connection is None or method != "POST":
            return super()._request(method, endpoint_type, body, headers)
        return self._connection.post(self._path(endpoint_type), body, headers)

    def _path(self, endpoint_type: Any) -> str:
        url = self._auth.get_api_url(endpoint_type)
        return url[url.index("/", url.index("//") + 2):]

    def _send_envelopes(self, envelopes: Sequence[Envelope]) -> None:
        """Send envelopes as one pipelined exchange: what sentry-sdk's ``_send_envelope``
        and ``_send_request`` do for one envelope (rate limits, client reports, headers,
        response handling), with the requests written together."""
        connection = self._connection
        if connection is None or len(envelopes) == 1:
            for envelope in envelopes:
                self._send_envelope(envelope)
            return
        prepared: list[tuple[Envelope, bytes, dict[str, str]]] = []
        for envelope in envelopes:
            try:
                ready = self._prepare_envelope(envelope)  # None: all rate-limited, counted
            except Exception:
                # One envelope that cannot be serialised must not take the window's others
                # with it: it alone is lost, and counted.
                capture_internal_exception(sys.exc_info())  # sentry-sdk's debug log
                for item in envelope.items:
                    self.record_lost_event("internal_sdk_error", item=item)
                continue
            if ready is not None:
                sent, body, headers = ready
                self._update_headers(headers)
                prepared.append((sent, body.getvalue(), headers))
        if not prepared:
            return
        exchange = connection.post_many(
            self._path(EndpointType.ENVELOPE), [(body, headers) for _, body, headers in prepared]
        )
        for (sent, _, _), response in zip(prepared, exchange.responses, strict=False):
            self._handle_response(response, sent)
        if exchange.error is not None:
            for sent, _, _ in prepared[len(exchange.responses):]:
                self._handle_request_error(envelope=sent, loss_reason="network")
                self._recount_client_reports(sent)
            raise exchange.error

    def _send_request(self, *args: Any, **kwargs: Any) -> None:
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            super()._send_request(*args, **kwargs)
        except Exception:
            self._recount_client_reports(kwargs.get("envelope"))
            raise
        finally:
            detach(token)

    def _handle_response(self, response: Any, envelope: Envelope | None) -> None:
        super()._handle_response(response, envelope)
        if not 200 <= response.status < 300:
            self._recount_client_reports(envelope)

    def _recount_client_reports(self, envelope: Envelope | None) -> None:
        if envelope is None:
            return
        for item in envelope.items:
            if item.type != "client_report":
                continue
            with contextlib.suppress(ValueError, TypeError):
                report = json.loads(item.get_bytes())
                for entry in report.get("discarded_events", ()):
                    self.record_lost_event(
                        entry["reason"],
                        data_category=entry["category"],
                        quantity=int(entry["quantity"]),
                    )

    def capture_envelopes(self, envelopes: Sequence[Envelope]) -> bool:
        """Queue several envelopes as one job of sentry-sdk's worker; False (and every item
        counted as a `queue_overflow` loss) when its queue is full.

        Each wake-up of the worker, like each blocking call it makes, has to win the GIL
        back from the application's busy request threads, which costs far more CPU than the
        sending itself: one job per span batch avoids a wake-up per transaction. When the
        ingest cannot be reached, the rest of the job is counted as lost at once rather than
        each envelope waiting out the same timeout.
        """

        def send_all() -> None:
            done = 0
            try:
                with capture_internal_exceptions():
                    while done < len(envelopes):
                        window = envelopes[done : done + self._window()]
                        try:
                            self._send_envelopes(window)  # counts its own losses
                        finally:
                            done += len(window)
                            self._envelopes_done(len(window))
            finally:
                rest = envelopes[done:]
                self._envelopes_done(len(rest))
                for lost in rest:  # the ingest could not be reached
                    for item in lost.items:
                        self.record_lost_event("network_error", item=item)
            with capture_internal_exceptions():
                self._flush_client_reports()

        if self.has_room(len(envelopes)):
            with self._pending_lock:
                self._pending_envelopes += len(envelopes)
            if self._worker.submit(send_all):
                return True
            self._envelopes_done(len(envelopes))
        self.on_dropped_event("full_queue")
        for envelope in envelopes:
            for item in envelope.items:
                self.record_lost_event("queue_overflow", item=item)
        return False

    def _window(self) -> int:
        # Rate limits are checked as each window is prepared: a 429 stops the next window
        # (the first window is one envelope, see KeptAliveConnection.window).
        return 1 if self._connection is None else self._connection.window()

    def _serialize_envelope(self, envelope: Envelope) -> tuple[str | None, io.BytesIO]:
        # sentry-sdk streams the envelope through GzipFile in many small writes; one
        # serialisation and one compressor call (one GIL release, not several) give the same
        # gzip format at the same level. Below the threshold, no compressor call at all:
        # under load that GIL release costs more than the bytes it saves (see the
        # OTEL_BRIDGE_COMPRESSION_THRESHOLD setting).
        if not self._compression_level:
            return None, io.BytesIO(envelope_bytes(envelope))
        if self._compression_algo != "gzip":
            encode_payloads(envelope)
            return super()._serialize_envelope(envelope)
        body = envelope_bytes(envelope)
        if len(body) < self._compression_threshold:
            return None, io.BytesIO(body)
        return "gzip", io.BytesIO(gzip_body(body, self._compression_level))

    def kill(self) -> None:
        super().kill()
        if self._connection is not None:
            self._connection.close()


def gzip_body(payload: bytes, level: int) -> bytes:
    """``payload`` gzip-compressed in one zlib call, with a window no larger than it.

    CPython releases the GIL around each call into zlib. On the transport's worker, under a
    busy application, every release is a hand-over to a request thread and a wait to win
    the GIL back, which costs more CPU than compressing a transaction: one call
    (``zlib.compress``, which takes ``wbits`` from Python 3.11 on) rather than two
    (``compress`` and ``flush`` of a compressor object). A window no larger than the payload
    finds the same matches with a smaller state to allocate and clear.
    """
    window_bits = min(zlib.MAX_WBITS, max(9, (len(payload) - 1).bit_length()))
    if _ONE_CALL_GZIP:
        return zlib.compress(payload, level, _GZIP_HEADER + window_bits)
    compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_HEADER + window_bits)
    return compressor.compress(payload) + compressor.flush()


def _ssl_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    """The certificates sentry-sdk's urllib3 pool would use (HttpTransport._get_pool_options):
    the `ca_certs` option, SSL_CERT_FILE, REQUESTS_CA_BUNDLE, else certifi's bundle; and a
    client certificate from `cert_file`/`key_file` or CLIENT_CERT_FILE/CLIENT_KEY_FILE."""
    import certifi

    cafile = (
        options.get("ca_certs")
        or os.environ.get("SSL_CERT_FILE")
        or os.environ.get("REQUESTS_CA_BUNDLE")
        or certifi.where()
    )
    context = ssl.create_default_context(cafile=cafile)
    cert_file = options.get("cert_file") or os.environ.get("CLIENT_CERT_FILE")
    key_file = options.get("key_file") or os.environ.get("CLIENT_KEY_FILE")
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context
