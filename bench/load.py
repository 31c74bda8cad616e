"""The load generator, a process of its own: N GETs to the server under test.

    python -m bench.load --port 8000 --path '/orders/{n}/' --count 400 --concurrency 8

``{n}`` cycles through 1..10 (the shop's orders). ``concurrency`` client threads share the
requests, so they arrive as a burst; one new connection per request, as the server under
test (wsgiref) closes each one. Prints one JSON line: how many answered 2xx, the statuses
seen, and transport errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
from collections import Counter
from collections.abc import Sequence


def run(
    port: int, path: str, count: int, concurrency: int = 1, timeout: float = 60.0
) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    threads = [
        threading.Thread(
            target=_worker,
            args=(port, path, range(start, count, concurrency), timeout, statuses, errors),
        )
        for start in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    return {"ok": ok, "statuses": dict(statuses), "errors": dict(errors)}


def _worker(
    port: int, path: str, indexes: range, timeout: float,
    statuses: Counter[int], errors: Counter[str],
) -> None:
    # a tally per thread, merged once under a lock
    local_statuses: Counter[int] = Counter()
    local_errors: Counter[str] = Counter()
    for index in indexes:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            connection.request("GET", path.format(n=index % 10 + 1))
            response = connection.getresponse()
            response.read()
            local_statuses[response.status] += 1
        except OSError as exc:
            local_errors[type(exc).__name__] += 1
        finally:
            connection.close()
    with _merge_lock:
        statuses.update(local_statuses)
        errors.update(local_errors)


_merge_lock = threading.Lock()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sequential HTTP load")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/orders/{n}/")
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.port, args.path, args.count, args.concurrency)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
