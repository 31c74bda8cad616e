"""The foundation, end to end: the shop sample run under `opentelemetry-instrument`, configured
only by environment variables, sending to real ingests on 127.0.0.1."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.rig.bugsink import Bugsink
from tests.rig.ingest import RecordingIngest
from tests.rig.otlp import OtlpReceiver

ORDER_ROUTE = "GET orders/<int:order_id>/"


def _transactions_named(name: str) -> Any:
    def find(ingest: RecordingIngest) -> list[Any]:
        return [t for t in ingest.events("transaction") if t["transaction"] == name]

    return find


def _envelope_of(ingest: RecordingIngest, event_id: str) -> Any:
    [envelope] = [e for e in ingest.envelopes if e.headers.get("event_id") == event_id]
    return envelope


def _wait(ingest: RecordingIngest, finder: Any, shop: Any, timeout: float = 20) -> list[Any]:
    try:
        result: list[Any] = ingest.wait_for(finder, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{shop.output_text()}") from None
    return result


def test_unhandled_view_error_gives_one_linked_error_and_a_failed_transaction(
    ingest: RecordingIngest, shop_server: Any
) -> None:
    shop = shop_server({"SENTRY_DSN": ingest.dsn})
    assert requests.get(shop.url("/boom/"), timeout=10).status_code == 500

    [transaction] = _wait(ingest, _transactions_named("GET boom/"), shop)
    # Span errors are queued before their transaction, so everything is in by now.
    errors = ingest.events("event")
    assert len(errors) == 1, errors
    [error] = errors
    trace = transaction["contexts"]["trace"]
    assert trace["status"] == "internal_error"
    assert transaction["transaction_info"] == {"source": "route"}
    assert error["contexts"]["trace"]["trace_id"] == trace["trace_id"]
    assert error["contexts"]["trace"]["span_id"] == trace["span_id"]
    [exception] = error["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("RuntimeError", "boom from shop")
    frames = exception["stacktrace"]["frames"]
    assert any(frame["function"] == "boom" for frame in frames)
    assert "vars" in frames[-1]  # sentry-sdk's own capture, with locals

    # Both envelopes carry the same dynamic sampling context, so Sentry links them.
    error_dsc = _envelope_of(ingest, error["event_id"]).headers["trace"]
    transaction_dsc = _envelope_of(ingest, transaction["event_id"]).headers["trace"]
    assert error_dsc["trace_id"] == transaction_dsc["trace_id"] == trace["trace_id"]
    assert transaction_dsc["public_key"] == "publickey"
    assert transaction_dsc["sampled"] == "true"
    assert float(transaction_dsc["sample_rand"]) < float(transaction_dsc["sample_rate"])
    assert transaction_dsc["transaction"] == "GET boom/"
    # sentry-sdk's tracing is off: it started no trace of its own.
    assert all(t["contexts"]["trace"]["trace_id"] == trace["trace_id"]
               for t in ingest.events("transaction") if t["transaction"] == "GET boom/")


def test_transaction_has_its_db_spans_release_environment_and_no_ingest_spans(
    ingest: RecordingIngest, shop_server: Any
) -> None:
    shop = shop_server(
        {
            "SENTRY_DSN": ingest.dsn,
            "OTEL_RESOURCE_ATTRIBUTES": "service.version=1.2.3,deployment.environment.name=staging",
            "SENTRY_ENVIRONMENT": "eu-prod",
        }
    )
    assert requests.get(shop.url("/orders/7/"), timeout=10).status_code == 200
    [transaction] = _wait(ingest, _transactions_named(ORDER_ROUTE), shop)

    assert transaction["release"] == "1.2.3"  # from the resource
    assert transaction["environment"] == "eu-prod"  # SENTRY_ENVIRONMENT wins
    assert transaction["tags"]["service.name"] == "shop"
    assert transaction["server_name"]
    trace = transaction["contexts"]["trace"]
    assert (trace["op"], trace["status"]) == ("http.server", "ok")
    db_spans = [span for span in transaction["spans"] if span["op"] == "db"]
    assert len(db_spans) == 5
    assert all(span["parent_span_id"] == trace["span_id"] for span in db_spans)
    assert all(span["trace_id"] == trace["trace_id"] for span in db_spans)
    descriptions = [span["description"] for span in db_spans]
    assert "FROM shop_order WHERE id =" in descriptions[0], descriptions
    assert descriptions[-1].startswith("INSERT INTO order_view"), descriptions
    assert all(span["data"]["otel.kind"] == "CLIENT" for span in db_spans)
    # The envelopes the bridge sent were not themselves traced.
    port = str(ingest.port)
    for event in ingest.events("transaction"):
        for span in event["spans"]:
            assert port not in str(span.get("description")), span
            assert port not in str(span["data"].get("url.full", "")), span


def test_stable_semantic_conventions_map_like_the_old_ones(
    ingest: RecordingIngest, shop_server: Any
) -> None:
    shop = shop_server({"SENTRY_DSN": ingest.dsn, "OTEL_SEMCONV_STABILITY_OPT_IN": "http,database"})
    assert requests.get(shop.url("/orders/2/?debug=1"), timeout=10).status_code == 200
    [transaction] = _wait(ingest, _transactions_named(ORDER_ROUTE), shop)
    trace = transaction["contexts"]["trace"]
    assert (trace["op"], trace["status"]) == ("http.server", "ok")
    assert trace["data"]["http.request.method"] == "GET"
    assert "http.method" not in trace["data"]
    db_spans = [span for span in transaction["spans"] if span["op"] == "db"]
    assert len(db_spans) == 5
    assert all("db.query.text" in span["data"] or "db.statement" in span["data"]
               for span in db_spans)
    descriptions = [span["description"] for span in db_spans]
    assert "FROM shop_order WHERE id =" in descriptions[0], descriptions
    assert descriptions[-1].startswith("INSERT INTO order_view"), descriptions


def _shop_exporting(
    shop_server: Any, ingest: RecordingIngest, otlp_receiver: OtlpReceiver, exporters: str
) -> Any:
    return shop_server(
        {
            "SENTRY_DSN": ingest.dsn,
            "OTEL_TRACES_EXPORTER": exporters,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        }
    )


def test_otlp_only_sends_spans_to_otlp_and_errors_still_to_sentry(
    ingest: RecordingIngest, otlp_receiver: OtlpReceiver, shop_server: Any
) -> None:
    shop = _shop_exporting(shop_server, ingest, otlp_receiver, "otlp")
    assert requests.get(shop.url("/boom/"), timeout=10).status_code == 500
    spans = otlp_receiver.wait_for_spans(
        lambda spans: any(s["attributes"].get("http.route") == "boom/" for s in spans),
        timeout=20,
    )
    [server] = [s for s in spans if s["attributes"].get("http.route") == "boom/"]
    [error] = ingest.wait_for_items("event", 1, timeout=20)
    assert error["contexts"]["trace"]["trace_id"] == server["trace_id"]
    shop.stop()  # flushes everything that was pending
    assert ingest.events("transaction") == []


def test_sentry_and_otlp_both_receive_the_same_trace(
    ingest: RecordingIngest, otlp_receiver: OtlpReceiver, shop_server: Any
) -> None:
    shop = _shop_exporting(shop_server, ingest, otlp_receiver, "sentry,otlp")
    assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200
    [transaction] = _wait(ingest, _transactions_named(ORDER_ROUTE), shop)
    trace_id = transaction["contexts"]["trace"]["trace_id"]
    spans = otlp_receiver.wait_for_spans(
        lambda spans: sum(s["trace_id"] == trace_id for s in spans) >= 6, timeout=20
    )
    assert {s["span_id"] for s in spans if s["trace_id"] == trace_id} == {
        transaction["contexts"]["trace"]["span_id"],
        *(span["span_id"] for span in transaction["spans"]),
    }
    # A transaction of six spans is under OTEL_BRIDGE_COMPRESSION_THRESHOLD (32 KiB): plain.
    assert _envelope_of(ingest, transaction["event_id"]).content_encoding is None


def test_compression_threshold_zero_gzips_every_envelope(
    ingest: RecordingIngest, shop_server: Any
) -> None:
    shop = shop_server(
        {"SENTRY_DSN": ingest.dsn, "OTEL_BRIDGE_COMPRESSION_THRESHOLD": "0"}
    )
    assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200
    [transaction] = _wait(ingest, _transactions_named(ORDER_ROUTE), shop)
    # sentry-sdk's transport compresses, with the cheap gzip level the bridge asks for.
    assert _envelope_of(ingest, transaction["event_id"]).content_encoding == "gzip"


def test_console_exporter_prints_spans(shop_server: Any) -> None:
    shop = shop_server({"OTEL_TRACES_EXPORTER": "console"})
    assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200
    shop.stop()
    assert '"http.route": "orders/<int:order_id>/"' in shop.stdout_text()


def test_sdk_disabled_turns_everything_off(ingest: RecordingIngest, shop_server: Any) -> None:
    shop = shop_server({"SENTRY_DSN": ingest.dsn, "OTEL_SDK_DISABLED": "true"})
    assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200
    assert requests.get(shop.url("/boom/"), timeout=10).status_code == 500
    shop.stop()
    assert ingest.received == []


def test_unknown_exporter_is_reported_once_and_the_rest_keeps_working(
    ingest: RecordingIngest, shop_server: Any
) -> None:
    shop = shop_server({"SENTRY_DSN": ingest.dsn, "OTEL_TRACES_EXPORTER": "sentry,zipkinn"})
    assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200
    _wait(ingest, _transactions_named(ORDER_ROUTE), shop)
    lines = [line for line in shop.stderr_text().splitlines() if "zipkinn" in line]
    assert len(lines) == 1, shop.stderr_text()
    assert "unknown trace exporter" in lines[0]


@pytest.mark.parametrize(
    ("variable", "label"), [("OTEL_LOGS_EXPORTER", "logs"), ("OTEL_METRICS_EXPORTER", "metrics")]
)
def test_unknown_logs_or_metrics_exporter_leaves_traces_and_errors_working(
    variable: str, label: str, ingest: RecordingIngest, shop_server: Any
) -> None:
    shop = shop_server({"SENTRY_DSN": ingest.dsn, variable: "otlpp"})
    assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200
    assert requests.get(shop.url("/boom/"), timeout=10).status_code == 500
    _wait(ingest, _transactions_named(ORDER_ROUTE), shop)
    ingest.wait_for(lambda i: i.events("event"), timeout=20)
    lines = [line for line in shop.stderr_text().splitlines() if "otlpp" in line]
    assert len(lines) == 1, shop.stderr_text()
    assert f"unknown {label} exporter" in lines[0] and variable in lines[0]


_PREFIXED_IDS_MODULE = """
import random

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator


class PrefixedIds(RandomIdGenerator):
    def generate_trace_id(self) -> int:
        return (0x0BADC0DE << 96) | random.getrandbits(96)
"""


def _id_generator_plugin(directory: Path) -> Path:
    """An installed distribution with an `opentelemetry_id_generator` entry point, as
    opentelemetry-sdk-extension-aws brings `xray`: found on PYTHONPATH by its metadata."""
    (directory / "prefixed_ids.py").write_text(_PREFIXED_IDS_MODULE)
    metadata = directory / "prefixed_ids-1.0.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: prefixed-ids\nVersion: 1.0\n")
    (metadata / "entry_points.txt").write_text(
        "[opentelemetry_id_generator]\nprefixed = prefixed_ids:PrefixedIds\n"
    )
    return directory


def test_the_id_generator_named_in_the_environment_makes_the_ids(
    ingest: RecordingIngest, shop_server: Any, tmp_path: Path
) -> None:
    plugin = _id_generator_plugin(tmp_path)
    shop = shop_server(
        {"SENTRY_DSN": ingest.dsn, "OTEL_PYTHON_ID_GENERATOR": "prefixed",
         "PYTHONPATH": str(plugin)}
    )
    assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200
    [transaction] = _wait(ingest, _transactions_named(ORDER_ROUTE), shop)
    trace_id = transaction["contexts"]["trace"]["trace_id"]
    assert trace_id.startswith("0badc0de"), trace_id
    assert all(span["trace_id"] == trace_id for span in transaction["spans"])


def test_an_unknown_id_generator_is_reported_once_and_ids_stay_random(
    ingest: RecordingIngest, shop_server: Any
) -> None:
    shop = shop_server({"SENTRY_DSN": ingest.dsn, "OTEL_PYTHON_ID_GENERATOR": "xrayy"})
    assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200
    assert requests.get(shop.url("/boom/"), timeout=10).status_code == 500
    [transaction] = _wait(ingest, _transactions_named(ORDER_ROUTE), shop)
    assert int(transaction["contexts"]["trace"]["trace_id"], 16) != 0
    ingest.wait_for(lambda i: i.events("event"), timeout=20)
    lines = [line for line in shop.stderr_text().splitlines() if "xrayy" in line]
    assert len(lines) == 1, shop.stderr_text()
    assert "OTEL_PYTHON_ID_GENERATOR" in lines[0] and "installed: random" in lines[0]


def test_otel_always_off_sends_no_transactions_of_its_own_but_honours_upstream(
    ingest: RecordingIngest, shop_server: Any
) -> None:
    shop = shop_server({"SENTRY_DSN": ingest.dsn, "OTEL_TRACES_SAMPLER": "always_off"})
    for index in range(3):
        assert requests.get(shop.url(f"/orders/{index + 1}/"), timeout=10).status_code == 200
    upstream = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    assert requests.get(
        shop.url("/orders/4/"), headers={"traceparent": upstream}, timeout=10
    ).status_code == 200
    assert requests.get(shop.url("/boom/"), timeout=10).status_code == 500
    shop.stop()  # everything pending is flushed at exit
    # The trace started upstream and sampled there is sent whole; none of this service's own.
    [transaction] = _transactions_named(ORDER_ROUTE)(ingest)
    assert transaction["contexts"]["trace"]["trace_id"] == upstream.split("-")[1]
    assert len(ingest.events("event")) == 1  # errors are not sampled away
    lines = [line for line in shop.stderr_text().splitlines() if "OTEL_TRACES_SAMPLER" in line]
    assert len(lines) == 1, shop.stderr_text()
    assert "read as 'parentbased_always_off'" in lines[0]


def test_bad_dsn_is_reported_once_and_the_app_keeps_serving(shop_server: Any) -> None:
    shop = shop_server({"SENTRY_DSN": "https://nokey-and-no-project"})
    for _ in range(3):
        assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200
    assert requests.get(shop.url("/boom/"), timeout=10).status_code == 500
    shop.stop()
    stderr = shop.stderr_text()
    assert len([line for line in stderr.splitlines() if "SENTRY_DSN" in line]) == 1, stderr
    assert "nokey-and-no-project" not in stderr  # a DSN is a secret, even a broken one
    assert "otel_bridge/" not in stderr  # no traceback through our code


def test_a_burst_is_delivered_whole_through_a_small_transport_queue(
    ingest: RecordingIngest, shop_server: Any
) -> None:
    # A queue of 5 and a slowish ingest: without pacing, most of the burst would be dropped.
    ingest.respond_with(200, delay=0.005)
    shop = shop_server({"SENTRY_DSN": ingest.dsn, "OTEL_BRIDGE_TRANSPORT_QUEUE_SIZE": "5"})
    total = 200

    def hit(index: int) -> int:
        return requests.get(shop.url(f"/orders/{index % 10 + 1}/"), timeout=30).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(hit, range(total))) == {200}
    shop.stop()  # SIGTERM: what is still pending is flushed at exit
    delivered = _transactions_named(ORDER_ROUTE)(ingest)
    assert len(delivered) == total
    assert len({t["contexts"]["trace"]["trace_id"] for t in delivered}) == total
    reports = ingest.events("client_report")
    assert not any(
        entry.get("reason") == "queue_overflow"
        for report in reports
        for entry in report.get("discarded_events", [])
    ), reports


def test_bugsink_rate_limits_transactions_but_never_loses_errors(
    bugsink: Bugsink, shop_server: Any
) -> None:
    shop = shop_server({"SENTRY_DSN": bugsink.dsn})
    # The first transaction makes Bugsink answer with a day-long transaction rate limit.
    for _ in range(3):
        assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200
    trace_ids = [secrets.token_hex(16) for _ in range(3)]
    for trace_id in trace_ids:
        traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        response = requests.get(shop.url("/boom/"), headers={"traceparent": traceparent},
                                timeout=10)
        assert response.status_code == 500
    for trace_id in trace_ids:

        def of_this_trace(event: Any, wanted: str = trace_id) -> bool:
            return bool(event.trace_id == wanted)

        try:
            [event] = bugsink.wait_for_events(of_this_trace)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{shop.output_text()}") from None
        assert (event.exception_type, event.exception_value) == ("RuntimeError", "boom from shop")
    shop.stop()
    assert "otel_bridge/" not in shop.stderr_text()  # no traceback through our code


def test_an_unusable_logs_exporter_name_leaves_the_app_serving(shop_server: Any) -> None:
    shop = shop_server({"OTEL_LOGS_EXPORTER": "nosuchlogs", "SENTRY_DSN": ""})
    assert requests.get(shop.url("/orders/1/"), timeout=10).status_code == 200
    shop.stop()
    lines = [line for line in shop.stderr_text().splitlines() if "nosuchlogs" in line]
    assert len(lines) == 1, shop.stderr_text()
    assert "otel-bridge: unknown logs exporter(s) nosuchlogs" in lines[0]
