"""A fast envelope sink for the benchmarks, run as its own process.

    python -m bench.sink            # prints "PORT <n>" once listening, serves until SIGTERM

It accepts Sentry envelopes on ``POST /api/<project>/envelope/`` and only counts them: items
by type, transactions by name, client-report discards by reason and category. The runner
reads and steers it over HTTP:

- ``GET /_bench/stats``: the counts as JSON;
- ``POST /_bench/mode?mode=normal|blackhole&status=200&delay=0&reset=1``: how to answer from
  now on. ``blackhole`` reads each envelope and never answers; leaving it closes the held
  connections without an answer (the sender sees a network error, as with a real outage).

Written by hand (asyncio, stdlib) rather than reusing the test rig's ``RecordingIngest``: that
one keeps every envelope for byte-level assertions and answers from a thread per request,
which is too slow and too hungry for 100,000 transactions next to the server under test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import signal
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

try:
    import brotli
except ImportError:  # sentry-sdk then compresses with gzip
    brotli = None


@dataclass
class SinkState:
    mode: str = "normal"
    status: int = 200
    delay: float = 0.0
    envelopes: int = 0
    held: int = 0
    items: Counter[str] = field(default_factory=Counter)
    transactions: Counter[str] = field(default_factory=Counter)
    # Transactions whose trace context names a parent span: the benchmark sends no trace
    # headers, so these are parts of a request's trace sent apart from its transaction
    # (children that ended after their root, subtrees delivered at shutdown).
    follow_ups: Counter[str] = field(default_factory=Counter)
    discarded: Counter[str] = field(default_factory=Counter)
    event_ids: set[str] = field(default_factory=set)
    duplicate_event_ids: int = 0
    bad_requests: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self) -> None:
        self.envelopes = 0
        self.items.clear()
        self.transactions.clear()
        self.follow_ups.clear()
        self.discarded.clear()
        self.event_ids.clear()
        self.duplicate_event_ids = 0
        self.bad_requests = 0

    def stats(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "envelopes": self.envelopes,
            "held": self.held,
            "items": dict(self.items),
            "transactions": dict(self.transactions),
            "follow_ups": dict(self.follow_ups),
            "discarded": dict(self.discarded),
            "duplicate_event_ids": self.duplicate_event_ids,
            "bad_requests": self.bad_requests,
        }


def decode(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br" and brotli is not None:
        return bytes(brotli.decompress(body))
    return body


def count_envelope(state: SinkState, data: bytes) -> None:
    """Count the items of one accepted envelope (format: header line, then item header line
    and payload, ``length`` bytes or up to the next newline)."""
    _, _, rest = data.partition(b"\n")
    pos = 0
    while pos < len(rest):
        end = rest.find(b"\n", pos)
        line = rest[pos:] if end < 0 else rest[pos:end]
        pos = len(rest) if end < 0 else end + 1
        if not line.strip():
            continue
        headers = json.loads(line)
        length = headers.get("length")
        if length is not None:
            payload = rest[pos : pos + int(length)]
            pos += int(length) + 1
        else:
            end = rest.find(b"\n", pos)
            payload = rest[pos:] if end < 0 else rest[pos:end]
            pos = len(rest) if end < 0 else end + 1
        item_type = str(headers.get("type", ""))
        state.items[item_type] += 1
        if item_type == "transaction":
            event = json.loads(payload)
            state.transactions[str(event.get("transaction"))] += 1
            trace = (event.get("contexts") or {}).get("trace") or {}
            if trace.get("parent_span_id"):
                state.follow_ups[str(event.get("transaction"))] += 1
            event_id = str(event.get("event_id"))
            if event_id in state.event_ids:
                state.duplicate_event_ids += 1
            state.event_ids.add(event_id)
        elif item_type == "client_report":
            report = json.loads(payload)
            for entry in report.get("discarded_events", ()):
                key = f"{entry.get('reason')}:{entry.get('category')}"
                state.discarded[key] += int(entry.get("quantity", 0))
    state.envelopes += 1


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    request_line = await reader.readline()
    if not request_line:
        return None
    method, target, _ = request_line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length") or 0))
    return method, target, headers, body


def _response(status: int, body: bytes, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


class Sink:
    def __init__(self) -> None:
        self.state = SinkState()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                method, target, headers, body = request
                if not await self._answer(method, target, headers, body, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        state = self.state
        url = urlsplit(target)
        if url.path == "/_bench/stats":
            writer.write(_response(200, json.dumps(state.stats()).encode()))
            await writer.drain()
            return True
        if url.path == "/_bench/mode":
            self._set_mode(parse_qs(url.query))
            writer.write(_response(200, json.dumps(state.stats()).encode()))
            await writer.drain()
            return True
        if method != "POST" or not url.path.endswith("/envelope/"):
            writer.write(_response(404, b"{}"))
            await writer.drain()
            return True
        if state.mode == "blackhole":
            state.held += 1
            try:
                await state.release.wait()
            finally:
                state.held -= 1
            return False  # close without an answer
        if state.delay:
            await asyncio.sleep(state.delay)
        status = state.status
        if 200 <= status < 300:
            try:
                count_envelope(state, decode(body, headers.get("content-encoding", "")))
            except (ValueError, OSError, EOFError, zlib.error):
                state.bad_requests += 1
                status = 400
        writer.write(_response(status, b'{"id":null}'))
        await writer.drain()
        return True

    def _set_mode(self, query: dict[str, list[str]]) -> None:
        state = self.state
        mode = query.get("mode", [state.mode])[0]
        if state.mode == "blackhole" and mode != "blackhole":
            state.release.set()
            state.release = asyncio.Event()
        state.mode = mode
        state.status = int(query.get("status", ["200"])[0])
        state.delay = float(query.get("delay", ["0"])[0])
        if query.get("reset", ["0"])[0] == "1":
            state.reset()


async def serve(port: int) -> None:
    sink = Sink()
    server = await asyncio.start_server(sink.handle, "127.0.0.1", port, backlog=512)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="envelope sink for the benchmarks")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
