"""Unhandled Django errors, captured without (``lean``, the default) and with (``sentry``)
sentry-sdk's DjangoIntegration: the shop sample under ``opentelemetry-instrument``, sending
to a recording ingest on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import requests

from tests.rig.ingest import RecordingIngest
from tests.rig.processes import REPO_ROOT


def _error_with(message: str) -> Any:
    def find(ingest: RecordingIngest) -> list[Any]:
        return [
            event for event in ingest.events("event")
            if any(value.get("value") == message
                   for value in event.get("exception", {}).get("values", []))
        ]

    return find


def _breadcrumb_messages(event: dict[str, Any]) -> list[str]:
    return [str(crumb.get("message")) for crumb in event.get("breadcrumbs", {}).get("values", [])]


def _query_crumbs(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        crumb for crumb in event.get("breadcrumbs", {}).get("values", [])
        if crumb.get("category") == "query"
    ]


@pytest.mark.parametrize(
    ("engine", "rate"), [("lean", "1.0"), ("sentry", "1.0"), ("lean", "0"), ("sentry", "0")]
)
def test_an_error_carries_its_own_request_and_nothing_of_other_requests(
    engine: str, rate: str, ingest: RecordingIngest, shop_server: Any
) -> None:
    # One gunicorn sync worker serves every request on the same thread, so nothing but a
    # scope per request keeps them apart (runserver's thread per request would hide a leak).
    # Unsampled requests (rate 0) need their scope as much: theirs had none, and alice's
    # user, tag and breadcrumbs reached the next request's error.
    shop = shop_server(
        {"SENTRY_DSN": ingest.dsn, "OTEL_BRIDGE_DJANGO_ERRORS": engine,
         "SENTRY_TRACES_SAMPLE_RATE": rate},
        server="gunicorn", workers=1, ready_path="/health/",
    )
    # Earlier requests set a user, a tag and breadcrumbs, and log: all of it is theirs.
    assert requests.get(shop.url("/account/alice/"), timeout=10).status_code == 200
    assert requests.get(shop.url("/log/"), timeout=10).status_code == 200
    response = requests.get(
        shop.url("/boom/?page=2"),
        headers={"Authorization": "Bearer sekrit-token-4711", "X-Shop-Client": "tests"},
        timeout=10,
    )
    assert response.status_code == 500
    assert requests.get(shop.url("/account/bob/?fail=1"), timeout=10).status_code == 500

    [boom] = ingest.wait_for(_error_with("boom from shop"), timeout=20)
    [bob] = ingest.wait_for(_error_with("account bob failed"), timeout=20)

    [exception] = boom["exception"]["values"]
    assert exception["mechanism"] == {"type": "django", "handled": False}
    assert "vars" in exception["stacktrace"]["frames"][-1]
    request = boom["request"]
    assert request["method"] == "GET"
    assert request["url"] == shop.url("/boom/")
    assert request["query_string"] == "page=2"
    assert request["headers"]["X-Shop-Client"] == "tests"
    assert "sekrit-token-4711" not in json.dumps(boom)
    # nothing of alice's request, nor of /log/'s
    assert boom.get("user", {}).get("id") != "alice"
    assert "account.plan" not in boom.get("tags", {})
    crumbs = " ".join(_breadcrumb_messages(boom))
    assert "alice" not in crumbs and "shop log info" not in crumbs
    assert not _query_crumbs(boom)  # alice's query was hers

    # the failing request itself keeps what it set
    assert bob["user"]["id"] == "bob"
    assert bob["tags"]["account.plan"] == "gold"
    bob_crumbs = _breadcrumb_messages(bob)
    assert "opened the account of bob" in bob_crumbs
    assert not any("alice" in crumb for crumb in bob_crumbs)
    # its SQL query, once (lean: from the OTel span; sentry: DjangoIntegration's own, which
    # also records the connection as a "connect" query), in order
    [query] = [c for c in _query_crumbs(bob) if "FROM customer WHERE name" in c["message"]]
    assert query["message"].endswith("AND id > %s")  # its literal scrubbed
    assert bob_crumbs.index(query["message"]) < bob_crumbs.index("opened the account of bob")

    # exactly one event per failure: Django's own "Internal Server Error" log is not another
    errors = [
        event for event in ingest.events("event")
        if event.get("exception") or "Internal Server Error" in json.dumps(event)
    ]
    assert len(errors) == 2, errors


def test_lean_errors_are_named_like_their_transaction(
    ingest: RecordingIngest, shop_server: Any
) -> None:
    shop = shop_server({"SENTRY_DSN": ingest.dsn})
    assert requests.get(shop.url("/boom/"), timeout=10).status_code == 500
    [error] = ingest.wait_for(_error_with("boom from shop"), timeout=20)
    [transaction] = ingest.wait_for(
        lambda i: [t for t in i.events("transaction") if t["transaction"] == "GET boom/"],
        timeout=20,
    )
    assert error["transaction"] == transaction["transaction"] == "GET boom/"
    assert error["transaction_info"] == {"source": "route"}
    assert error["contexts"]["trace"]["span_id"] == transaction["contexts"]["trace"]["span_id"]
    # No SENTRY_RELEASE, no service.version: both carry the release sentry-sdk guesses (in a
    # git checkout, its commit); the transaction had none while the error had the commit.
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert error.get("release") == transaction.get("release")
    if head.returncode == 0:
        assert transaction["release"] == head.stdout.strip()


@pytest.mark.parametrize(
    ("engine", "rate"), [("lean", "1.0"), ("sentry", "1.0"), ("lean", "0")]
)
def test_requests_are_counted_as_release_health_sessions_once(
    engine: str, rate: str, ingest: RecordingIngest, shop_server: Any
) -> None:
    # With `sentry`, DjangoIntegration's middleware counts them; otel-bridge must not too.
    # Unsampled requests are sessions all the same (none was counted).
    shop = shop_server(
        {
            "SENTRY_DSN": ingest.dsn,
            "SENTRY_RELEASE": "shop@1.0",
            "OTEL_BRIDGE_DJANGO_ERRORS": engine,
            "SENTRY_TRACES_SAMPLE_RATE": rate,
        }
    )
    for _ in range(2):
        assert requests.get(shop.url("/health/"), timeout=10).status_code == 200
    assert requests.get(shop.url("/boom/"), timeout=10).status_code == 500
    ingest.wait_for(_error_with("boom from shop"), timeout=20)
    shop.stop()  # sessions are aggregated and sent at exit (or every minute)

    sessions = ingest.events("sessions")
    assert sessions, ingest.dump()
    assert {s["attrs"]["release"] for s in sessions} == {"shop@1.0"}
    counts: dict[str, int] = {}
    for aggregate in (a for s in sessions for a in s["aggregates"]):
        for status in ("exited", "errored", "crashed"):
            counts[status] = counts.get(status, 0) + aggregate.get(status, 0)
    assert counts == {"exited": 2, "errored": 0, "crashed": 1}


def test_an_async_view_error_is_reported_once(ingest: RecordingIngest) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "SENTRY_DSN": ingest.dsn,
        "OTEL_TRACES_EXPORTER": "sentry",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "async-errors",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "tests.services.django_async_errors"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert "STATUS 500" in completed.stdout, completed.stdout + completed.stderr
    [error] = ingest.wait_for(_error_with("async boom"), timeout=20)
    [exception] = error["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert exception["mechanism"] == {"type": "django", "handled": False}
    assert error["request"]["url"].endswith("/async-boom/")
    [transaction] = ingest.wait_for(lambda i: i.events("transaction"), timeout=20)
    assert error["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]
    assert len([e for e in ingest.events("event") if e.get("exception")]) == 1


def test_with_personal_data_allowed_a_lean_error_names_the_client_behind_the_proxy(
    ingest: RecordingIngest, shop_server: Any
) -> None:
    # As sentry-sdk's WSGI middleware: X-Forwarded-For's first address is the user's IP.
    # Lean errors had no user at all, and only the proxy's REMOTE_ADDR in request.env.
    shop = shop_server({"SENTRY_DSN": ingest.dsn, "SENTRY_SEND_DEFAULT_PII": "true"})
    response = requests.get(
        shop.url("/boom/"), headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}, timeout=10
    )
    assert response.status_code == 500
    [error] = ingest.wait_for(_error_with("boom from shop"), timeout=20)
    assert error["user"]["ip_address"] == "203.0.113.7"
