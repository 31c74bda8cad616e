"""The scrubber: every key, URL, SQL and text rule, on plain data, real SDK spans and real
sentry-sdk events (delivered to a RecordingIngest)."""

from __future__ import annotations

import json

import pytest
import sentry_sdk
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otel_bridge.config import load_config
from otel_bridge.scrub import (
    DEFAULT_KEYS,
    FILTERED,
    Scrubber,
    ScrubbingSpanExporter,
    SentryScrubHooks,
)

CANARY = "CANARYx7q"


@pytest.fixture
def scrubber() -> Scrubber:
    return Scrubber()


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", DEFAULT_KEYS)
def test_every_default_key_is_filtered_as_substring_any_case(scrubber: Scrubber, key: str) -> None:
    data = {key: CANARY, f"X-{key.upper()}-Value": CANARY, f"user_{key}": CANARY, "ok": "kept"}
    result = scrubber.scrub_mapping(data)
    assert CANARY not in json.dumps(result)
    assert result["ok"] == "kept"
    assert result[key] == FILTERED


@pytest.mark.parametrize(
    "spelling", ["api-key", "Api_Key", "X-API-KEY", "private-key", "PRIVATEKEY"]
)
def test_dash_and_underscore_spellings(scrubber: Scrubber, spelling: str) -> None:
    assert scrubber.scrub_mapping({spelling: CANARY})[spelling] == FILTERED


def test_every_key_of_sentry_sdks_denylist_is_filtered(scrubber: Scrubber) -> None:
    # Users coming from sentry-sdk keep what its EventScrubber filters; x_forwarded_for is
    # personal data here, kept with OTEL_BRIDGE_SEND_DEFAULT_PII (see PII_ATTRIBUTES).
    from sentry_sdk.scrubber import DEFAULT_DENYLIST

    keys = [key for key in DEFAULT_DENYLIST if key != "x_forwarded_for"]
    result = scrubber.scrub_mapping({key: CANARY for key in keys})
    assert result == {key: FILTERED for key in keys}
    text = " ".join(f"{key}={CANARY}" for key in keys)
    assert CANARY not in scrubber.scrub_text(text)


def test_auth_is_a_key_only_as_a_whole_word(scrubber: Scrubber) -> None:
    data = {"auth": CANARY, "http.request.header.auth": CANARY, "author": "bob",
            "oauth_provider": "github"}
    assert scrubber.scrub_mapping(data) == {
        "auth": FILTERED, "http.request.header.auth": FILTERED, "author": "bob",
        "oauth_provider": "github",
    }
    assert scrubber.scrub_text(f"auth={CANARY} author=bob oauth=github") == (
        f"auth={FILTERED} author=bob oauth=github"
    )


def test_scrub_mapping_is_recursive_and_copies(scrubber: Scrubber) -> None:
    data: dict = {"outer": {"list": [{"password": CANARY}, "plain"], "inner": {"token": [1, 2]}}}
    result = scrubber.scrub_mapping(data)
    assert result == {
        "outer": {"list": [{"password": FILTERED}, "plain"], "inner": {"token": [FILTERED]}}
    }
    assert data["outer"]["list"][0]["password"] == CANARY  # the input is untouched


def test_extra_keys_from_config() -> None:
    config = load_config({"OTEL_BRIDGE_SCRUB_KEYS": "card_number, IBAN"})
    scrubber = Scrubber.from_config(config)
    result = scrubber.scrub_mapping({"card_number": CANARY, "customer_iban": CANARY, "amount": 3})
    assert result == {"card_number": FILTERED, "customer_iban": FILTERED, "amount": 3}


def test_disabled_scrubber_changes_nothing() -> None:
    scrubber = Scrubber.from_config(load_config({"OTEL_BRIDGE_SCRUB": "false"}))
    assert scrubber.scrub_mapping({"password": CANARY}) == {"password": CANARY}
    assert scrubber.scrub_text(f"password={CANARY}") == f"password={CANARY}"


# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"https://bob:{CANARY}@example.com/p?q=1&api_key={CANARY}",
            "https://[Filtered]:[Filtered]@example.com/p?q=1&api_key=[Filtered]",
        ),
        (f"https://{CANARY}@example.com/", "https://[Filtered]@example.com/"),
        (f"/login?next=/a&Token={CANARY}", "/login?next=/a&Token=[Filtered]"),
        (
            f"https://example.com/cb#access_token={CANARY}&state=x",
            "https://example.com/cb#access_token=[Filtered]&state=x",
        ),
        (f"postgres://u:{CANARY}@db:5432/x", "postgres://[Filtered]:[Filtered]@db:5432/x"),
        ("https://example.com/plain?page=2", "https://example.com/plain?page=2"),
        (f"/x?session%5Fid={CANARY}", "/x?session%5Fid=[Filtered]"),
    ],
)
def test_scrub_url(scrubber: Scrubber, url: str, expected: str) -> None:
    assert scrubber.scrub_url(url) == expected


def test_scrub_query_keeps_other_parameters(scrubber: Scrubber) -> None:
    assert scrubber.scrub_query(f"a=1&password={CANARY}&b=&c") == "a=1&password=[Filtered]&b=&c"


# -- SQL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            f"SELECT * FROM users WHERE password = '{CANARY}' AND id = 42",
            "SELECT * FROM users WHERE password = %s AND id = %s",
        ),
        (
            f"INSERT INTO t2 (a, b) VALUES ('it''s {CANARY}', -3.5e2)",
            "INSERT INTO t2 (a, b) VALUES (%s, %s)",
        ),
        (f"SELECT $tag${CANARY}$tag$, $1, %s, :name", "SELECT %s, $1, %s, :name"),
        (f"SELECT E'\\'{CANARY}' FROM t LIMIT 21", "SELECT %s FROM t LIMIT %s"),
        # a backslash ends a literal in PostgreSQL and SQLite, escapes a quote in MySQL
        (
            f"SELECT 1 FROM f WHERE dir = 'C:\\' AND password = '{CANARY}'",
            "SELECT %s FROM f WHERE dir = %s AND password = %s",
        ),
        (
            f"SELECT 1 FROM f WHERE a = 'it\\'s' AND password = '{CANARY}'",
            "SELECT %s FROM f WHERE a = %s AND password = %s",
        ),
        # cut off inside a literal (a truncated statement): from the open quote on, gone
        (f"SELECT 1 FROM f WHERE password = '{CANARY}", "SELECT %s FROM f WHERE password = %s"),
        (
            "SELECT col1 FROM table_2 WHERE x IN (1, 2, 0x1F)",
            "SELECT col1 FROM table_2 WHERE x IN (%s, %s, %s)",
        ),
    ],
)
def test_scrub_sql_replaces_literals(scrubber: Scrubber, sql: str, expected: str) -> None:
    assert scrubber.scrub_sql(sql) == expected


# -- text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"login failed password={CANARY}",
        f"login failed: Password: {CANARY}",
        f'body {{"api_key": "{CANARY}", "n": 1}}',
        f"{{'client_secret': '{CANARY}'}}",
        f"Authorization: Bearer {CANARY}abcdef",
        f"sent with bearer {CANARY}abcdef to upstream",
        f"GET https://u:{CANARY}@host/p?token={CANARY} failed",
        f"csrftoken={CANARY}; sessionid={CANARY}",
        f"X-Api-Key: {CANARY}",
        "Authorization: Basic dXNlcjpwYXNz",
        "retrying with basic dXNlcjpwYXNz after 401",
        "digest 8f14e45fceea167a5a36dedd4bea2543 rejected",
        # values as Python and JSON render them: bytes, lists, nested mappings, escapes
        f"bad payload {{'password': b'{CANARY}'}}",
        f"config {{'api_keys': ['{CANARY}', 'k-456']}}",
        f"config {{'secret': {{'value': '{CANARY}'}}}}",
        f"config {{'secret': {{'a': {{'b': '{CANARY}'}}}}}}",
        f"config {{'api_keys': [['k-1'], ['{CANARY}']]}}",
        f'{{"credentials": {{"list": [{{"x": "{CANARY}"}}]}}}}',
        f"password=({{'a': ')'}}, '{CANARY}')",
        f"cut off: token={{'a': {{'b': '{CANARY}",
        f"Credentials(user='bob', password=('{CANARY}', 1))",
        f'{{"password": "hun\\"ter2-{CANARY}"}}',
        f"GET / HTTP/1.1\r\nCookie: lang=en; tracking_uid={CANARY}\r\nHost: x",
        f"request headers: Cookie: lang=en; tracking_uid={CANARY}",
    ],
)
def test_scrub_text_masks_secrets(scrubber: Scrubber, text: str) -> None:
    result = scrubber.scrub_text(text)
    assert CANARY not in result
    assert "dXNlcjpwYXNz" not in result and "8f14e45f" not in result
    assert FILTERED in result


def test_scrub_text_filters_a_nested_value_whole_and_keeps_what_follows(
    scrubber: Scrubber,
) -> None:
    text = "retry {'secret': {'a': {'b': 'x'}, 'c': ['y', ('z',)]}, 'order': 42} in 5s"
    assert scrubber.scrub_text(text) == "retry {'secret': [Filtered], 'order': 42} in 5s"


def test_a_url_with_the_scrubbers_own_brackets_is_scrubbed_without_end(
    scrubber: Scrubber,
) -> None:
    # A broker URL already scrubbed once ("filesystem://[Filtered]...", a Celery worker's
    # start-up breadcrumb) reads as an IPv6 host to urlsplit: it once sent the scrubber
    # into endless recursion, and the event carrying it was lost.
    text = "Connected to filesystem://[Filtered]:[Filtered]@localhost//?token=abc123"
    once = scrubber.scrub_text(text)
    assert once.startswith("Connected to filesystem://[Filtered]:[Filtered]@localhost//")
    assert "abc123" not in once
    assert scrubber.scrub_text(once) == once
    crumb = scrubber.scrub_breadcrumb({"message": text, "category": "celery"})
    assert "abc123" not in crumb["message"]


def test_scrub_text_leaves_ordinary_text(scrubber: Scrubber) -> None:
    text = "Order 42 shipped to warehouse=north; see https://example.com/o/42?page=2"
    assert scrubber.scrub_text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "the digest template is missing",
        "Weekly digest newsletter bounced",
        "a basic understanding of Bearer semantics",
    ],
)
def test_scrub_text_leaves_words_after_auth_scheme_names(scrubber: Scrubber, text: str) -> None:
    # "digest", "basic" and "bearer" are also English words: only a token is a credential.
    assert scrubber.scrub_text(text) == text


def test_scrub_text_is_idempotent(scrubber: Scrubber) -> None:
    once = scrubber.scrub_text(f"https://example.com/?token={CANARY} password={CANARY}")
    assert scrubber.scrub_text(once) == once
    assert "[Filtered]]" not in once


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # the scrubber's own output: urlsplit reads "[Filtered]" as an IPv6 host and refuses it
        (f"amqp://{FILTERED}:{FILTERED}@broker//", f"amqp://{FILTERED}:{FILTERED}@broker//"),
        (f"amqp://{FILTERED}@broker//", f"amqp://{FILTERED}@broker//"),
        (
            f"redis://user:{CANARY}@[not-an-ip]:6379/0",
            f"redis://{FILTERED}:{FILTERED}@[not-an-ip]:6379/0",
        ),
        (f"http://[bad/x?token={CANARY}&page=2", f"http://[bad/x?token={FILTERED}&page=2"),
    ],
)
def test_urls_urlsplit_refuses_are_scrubbed_by_pattern(
    scrubber: Scrubber, url: str, expected: str
) -> None:
    # These used to recurse without end (scrub_url -> scrub_text finds the URL again -> ...):
    # the RecursionError dropped the error event it was in.
    assert scrubber.scrub_url(url) == expected
    in_text = scrubber.scrub_text(f"Connected to {url} (worker 1)")
    assert in_text == f"Connected to {expected} (worker 1)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a message cut off inside a quoted value (truncated JSON)
        (f'payload {{"secret": "{CANARY}', f'payload {{"secret": "{FILTERED}'),
        (f"payload {{'token': '{CANARY} and more", f"payload {{'token': '{FILTERED} and more"),
        # a URL whose scheme is a sensitive word is a URL, not "token: //..."
        (f"token://user:{CANARY}@h/x", f"token://{FILTERED}:{FILTERED}@h/x"),
        (f"token: //{CANARY}", f"token: {FILTERED}"),
    ],
)
def test_edge_cases_found_by_the_property_tests(
    scrubber: Scrubber, text: str, expected: str
) -> None:
    assert scrubber.scrub_text(text) == expected
    assert scrubber.scrub_text(expected) == expected


def test_a_url_with_nothing_to_scrub_is_returned_as_written(scrubber: Scrubber) -> None:
    for url in ("////", "http://h/a?b", "HTTP://Host:80/x#top", "/relative?page=2"):
        assert scrubber.scrub_url(url) == url


def test_a_scrubbed_url_with_credentials_scrubs_to_itself(scrubber: Scrubber) -> None:
    once = scrubber.scrub_text(f"broker at amqp://digest:{CANARY}@127.0.0.1:5672//")
    assert once == f"broker at amqp://{FILTERED}:{FILTERED}@127.0.0.1:5672//"
    assert scrubber.scrub_text(once) == once


# -- OTel attributes ------------------------------------------------------------------------


def test_scrub_attributes_conventions(scrubber: Scrubber) -> None:
    attributes = {
        "url.full": f"https://u:{CANARY}@api.example.com/v1?api_key={CANARY}&x=1",
        "http.url": f"http://h/?token={CANARY}",
        "http.target": f"/login?password={CANARY}",
        "url.query": f"secret={CANARY}&page=2",
        "db.query.text": f"SELECT 1 FROM u WHERE email = '{CANARY}'",
        "db.statement": f"UPDATE u SET pw = '{CANARY}'",
        "http.request.header.authorization": (f"Bearer {CANARY}",),
        "http.request.header.cookie": (f"sessionid={CANARY}",),
        "http.response.header.set_cookie": (f"csrftoken={CANARY}",),
        "http.request.header.x_api_key": (CANARY,),
        "http.request.header.accept": ("text/html",),
        "exception.message": f"bad password={CANARY}",
        "exception.stacktrace": f"Traceback...\nValueError: token: {CANARY}",
        "client.address": "203.0.113.9",
        "user.email": f"{CANARY}@example.com",
        "user.id": "42",
        "gen_ai.usage.input_tokens": 12,
        "http.route": "/login",
    }
    result = scrubber.scrub_attributes(attributes)
    assert CANARY not in json.dumps(result)
    assert "203.0.113.9" not in json.dumps(result)
    assert (
        result["url.full"]
        == "https://[Filtered]:[Filtered]@api.example.com/v1?api_key=[Filtered]&x=1"
    )
    assert result["url.query"] == "secret=[Filtered]&page=2"
    assert result["db.statement"] == "UPDATE u SET pw = %s"
    assert result["http.request.header.authorization"] == (FILTERED,)
    assert result["http.request.header.accept"] == ("text/html",)
    assert result["user.id"] == "42"
    assert result["gen_ai.usage.input_tokens"] == 12
    assert result["http.route"] == "/login"


def test_send_default_pii_keeps_ip_and_email() -> None:
    scrubber = Scrubber(send_default_pii=True)
    result = scrubber.scrub_attributes({"client.address": "203.0.113.9", "user.email": "a@b.c"})
    assert result == {"client.address": "203.0.113.9", "user.email": "a@b.c"}
    # secrets stay secret whatever the PII setting
    assert scrubber.scrub_attributes({"http.request.header.cookie": ("a=b",)}) == {
        "http.request.header.cookie": (FILTERED,)
    }


# -- real SDK spans ---------------------------------------------------------------------------


def _provider(*processors: object) -> TracerProvider:
    provider = TracerProvider()
    for processor in processors:
        provider.add_span_processor(processor)  # type: ignore[arg-type]
    return provider


def _record_span(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(f"GET /login?token={CANARY}") as span:
        span.set_attribute("url.full", f"http://h/login?password={CANARY}")
        span.set_attribute("http.request.header.authorization", [f"Bearer {CANARY}"])
        span.set_attribute("db.statement", f"SELECT '{CANARY}'")
        span.add_event("breadcrumb", {"breadcrumb.data.api_key": CANARY, "breadcrumb.message": "m"})
        try:
            raise ValueError(f"login failed password={CANARY}")
        except ValueError as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"ValueError: password={CANARY}"))


def _assert_clean(spans: list) -> None:
    assert spans
    for span in spans:
        dumped = span.to_json()
        assert CANARY not in dumped
        assert FILTERED in dumped


def test_exporter_wrapper_scrubs_copies() -> None:
    inner = InMemorySpanExporter()
    _record_span(_provider(SimpleSpanProcessor(ScrubbingSpanExporter(inner, Scrubber()))))
    _assert_clean(list(inner.get_finished_spans()))
    span = inner.get_finished_spans()[0]
    assert dict(span.attributes or {})["db.statement"] == "SELECT %s"
    exception = next(e for e in span.events if e.name == "exception")
    message = dict(exception.attributes or {})["exception.message"]
    assert message == "login failed password=[Filtered]"
    assert span.status.description == "ValueError: password=[Filtered]"


def test_exporter_wrapper_respects_scrub_off() -> None:
    inner = InMemorySpanExporter()
    scrubber = Scrubber.from_config(load_config({"OTEL_BRIDGE_SCRUB": "0"}))
    _record_span(_provider(SimpleSpanProcessor(ScrubbingSpanExporter(inner, scrubber))))
    assert CANARY in inner.get_finished_spans()[0].to_json()


# -- Sentry events, through a real sentry-sdk client -----------------------------------------


def _sentry_event() -> dict:
    return {
        "message": f"failed with token={CANARY}",
        "request": {
            "url": f"https://u:{CANARY}@shop.example/login?api_key={CANARY}",
            "query_string": f"api_key={CANARY}&page=1",
            "headers": {
                "Authorization": f"Bearer {CANARY}",
                "X-Forwarded-For": "203.0.113.9",
                "Accept": "text/html",
            },
            "cookies": {"sessionid": CANARY, "theme": CANARY},
            "data": {"username": "bob", "password": CANARY, "note": f"my secret={CANARY}"},
            "env": {"REMOTE_ADDR": "203.0.113.9", "SERVER_NAME": "shop"},
        },
        "user": {"id": "42", "email": f"{CANARY}@example.com", "ip_address": "203.0.113.9"},
        "breadcrumbs": {
            "values": [
                {
                    "message": f"POST /login password={CANARY}",
                    "data": {"url": f"/a?token={CANARY}"},
                },
                {"category": "query", "data": {"session_key": CANARY}},
            ]
        },
        "extra": {"payload": {"card": {"private_key": CANARY}}},
        "contexts": {"order": {"api_token": CANARY, "amount": 3}},
        "tags": {"csrf_state": CANARY, "shop": "north"},
        "exception": {
            "values": [
                {
                    "type": "ValueError",
                    "value": f"invalid password: {CANARY}",
                    "stacktrace": {
                        "frames": [
                            {"function": "login", "vars": {"password": f"'{CANARY}'", "n": "1"}}
                        ]
                    },
                }
            ]
        },
        "logentry": {"message": f"token={CANARY}", "params": [{"secret": CANARY}]},
        "spans": [
            {
                "op": "db",
                "description": f"SELECT '{CANARY}'",
                "data": {"db.statement": f"SELECT '{CANARY}'"},
            },
            {"op": "http.client", "description": f"GET https://h/?token={CANARY}", "data": {}},
        ],
    }


def test_scrub_event_covers_every_part(scrubber: Scrubber) -> None:
    event = scrubber.scrub_event(_sentry_event())
    dumped = json.dumps(event)
    assert CANARY not in dumped
    assert "203.0.113.9" not in dumped
    assert event["user"] == {"id": "42"}
    assert event["request"]["headers"]["Accept"] == "text/html"
    assert event["request"]["data"]["username"] == "bob"
    assert event["tags"]["shop"] == "north"
    assert event["contexts"]["order"]["amount"] == 3
    assert event["spans"][0]["description"] == "SELECT %s"


def test_scrub_event_with_send_default_pii_keeps_user_ip_and_email() -> None:
    event = Scrubber(send_default_pii=True).scrub_event(_sentry_event())
    assert event["user"]["ip_address"] == "203.0.113.9"
    assert event["user"]["email"] == f"{CANARY}@example.com"
    assert event["request"]["cookies"]["sessionid"] == FILTERED
    assert event["request"]["cookies"]["theme"] == CANARY


def test_scrub_log_both_shapes(scrubber: Scrubber) -> None:
    sdk_log = {"body": f"password={CANARY}", "attributes": {"api_key": CANARY, "n": 1}}
    envelope_log = {
        "body": "x",
        "attributes": {
            "user_token": {"value": CANARY, "type": "string"},
            "n": {"value": 1, "type": "integer"},
        },
    }
    assert CANARY not in json.dumps(scrubber.scrub_log(sdk_log))
    scrubbed = scrubber.scrub_log(envelope_log)
    assert scrubbed["attributes"]["user_token"] == {"value": FILTERED, "type": "string"}
    assert scrubbed["attributes"]["n"] == {"value": 1, "type": "integer"}


def test_hooks_in_a_real_sentry_sdk_client(ingest) -> None:
    hooks = SentryScrubHooks(Scrubber())
    client = sentry_sdk.Client(dsn=ingest.dsn, default_integrations=False, **hooks.init_kwargs())
    try:
        with sentry_sdk.isolation_scope() as scope:
            scope.set_client(client)
            scope.set_user({"id": "7", "email": f"{CANARY}@example.com"})
            scope.set_tag("session_hint", CANARY)
            sentry_sdk.add_breadcrumb(message=f"api_key={CANARY}", data={"password": CANARY})
            try:
                password = CANARY  # noqa: F841 - a local variable sentry-sdk records
                raise RuntimeError(f"bad secret: {CANARY}")
            except RuntimeError as exc:
                sentry_sdk.capture_exception(exc)
        client.flush(timeout=10)
    finally:
        client.close()
    events = ingest.wait_for_items("event")
    assert events[0]["exception"]["values"][0]["value"] == "bad secret: [Filtered]"
    for envelope in ingest.received:
        for item in envelope.items:
            assert CANARY.encode() not in item.payload


def test_sql_breadcrumbs_and_objects_in_logs(scrubber: Scrubber) -> None:
    crumb = scrubber.scrub_breadcrumb({"category": "query", "message": f"SELECT '{CANARY}'"})
    assert crumb["message"] == "SELECT %s"

    class Request:
        def __repr__(self) -> str:
            return f"<Request GET /x?token={CANARY}>"

    log = scrubber.scrub_log({"body": "b", "attributes": {"request": Request()}})
    assert log["attributes"]["request"] == "<Request GET /x?token=[Filtered]>"


# -- OTel logs: a real LoggerProvider, stdlib logging through OTel's LoggingHandler -----------


def test_log_scrubbing_runs_before_the_exporters() -> None:
    import logging

    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from otel_bridge.scrub import install_log_scrubbing

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    # the exporter's processor is added first, as _init_logging does; scrubbing still precedes it
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    assert install_log_scrubbing(provider, Scrubber())
    assert install_log_scrubbing(provider, Scrubber())  # idempotent
    logger = logging.getLogger("test_scrub.otel_logs")
    logger.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.warning("GET /a?token=%s", CANARY, extra={"session_key": CANARY, "n": 1})
        try:
            raise ValueError(f"password={CANARY}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    records = exporter.get_finished_logs()
    assert len(records) == 2
    for record in records:
        assert CANARY not in record.to_json()
    assert records[0].log_record.body == "GET /a?token=[Filtered]"
    first, second = (dict(r.log_record.attributes or {}) for r in records)
    assert first["session_key"] == FILTERED
    assert first["n"] == 1
    assert second["exception.message"] == "password=[Filtered]"


def test_hooks_chain_to_the_next_callback() -> None:
    seen: list[dict] = []

    def drop_if_marked(event: dict, hint: dict) -> dict | None:
        seen.append(event)
        return None if event.get("tags", {}).get("drop") else event

    hooks = SentryScrubHooks(Scrubber(), then={"before_send": drop_if_marked})
    kept = hooks.before_send({"extra": {"password": CANARY}}, {})
    assert kept == {"extra": {"password": FILTERED}}
    assert seen[0] is kept  # the next callback sees the scrubbed event
    assert hooks.before_send({"tags": {"drop": "1"}}, {}) is None


def test_a_hook_whose_scrubbing_fails_drops_the_item_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Scrubber):
        def scrub_event(self, event: dict) -> dict:
            raise RecursionError("maximum recursion depth exceeded")

        def scrub_breadcrumb(self, crumb: dict) -> dict:
            raise RecursionError("maximum recursion depth exceeded")

    hooks = SentryScrubHooks(Broken())
    with caplog.at_level("ERROR", logger="otel_bridge.scrub"):
        # sentry-sdk drops an event whose before_send raises (client report callback_error)
        for _ in range(2):
            with pytest.raises(RecursionError):
                hooks.before_send({"message": CANARY}, {})
        # but keeps a breadcrumb as it was when before_breadcrumb raises: it is dropped here
        assert hooks.before_breadcrumb({"message": f"token={CANARY}"}, {}) is None
    failures = [r for r in caplog.records if "scrubbing failed" in r.getMessage()]
    assert len(failures) == 1
    assert "before_send" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    # the hooks whose scrubbing works go on as before
    assert hooks.before_send_log({"body": f"token={CANARY}", "attributes": {}}, {}) == {
        "body": f"token={FILTERED}", "attributes": {}
    }


def test_a_span_with_nothing_to_scrub_is_passed_on_as_is_and_others_are_copied() -> None:
    from otel_bridge.scrub import scrub_readable_span

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("clean", attributes={"http.route": "orders/<id>/"}):
        pass
    with tracer.start_as_current_span(
        "secret", attributes={"http.route": "login/", "app.password": "hunter2"}
    ):
        pass
    clean, secret = exporter.get_finished_spans()
    scrubber = Scrubber()
    assert scrub_readable_span(scrubber, clean) is clean
    copy = scrub_readable_span(scrubber, secret)
    assert copy is not secret
    assert copy.attributes is not None and copy.attributes["app.password"] == FILTERED
    assert secret.attributes is not None and secret.attributes["app.password"] == "hunter2"


def test_spans_with_the_same_clean_values_are_all_passed_on_as_they_are() -> None:
    """Every request's SQL is a new string equal to the last one's; the scrubber remembers
    its result for the first, and handing that object back made every later span look
    changed, and copied."""
    from otel_bridge.scrub import scrub_readable_span

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for order in range(3):
        statement = "".join(['SELECT "id" FROM "shop_order" WHERE "id" = ', "%s"])
        url = "".join(["http://shop.test/orders/", "?page=2"])
        attributes = {"db.system": "sqlite", "db.statement": statement, "url.full": url,
                      "http.route": f"orders/{order}/"}
        with tracer.start_as_current_span("SELECT", attributes=attributes):
            pass
    spans = exporter.get_finished_spans()
    assert spans[1].attributes["db.statement"] is not spans[2].attributes["db.statement"]  # type: ignore[index]
    scrubber = Scrubber()
    assert [scrub_readable_span(scrubber, span) is span for span in spans] == [True] * 3


def test_a_scrubbed_copy_keeps_every_other_field() -> None:
    from opentelemetry.trace import Link, SpanKind

    from otel_bridge.scrub import scrub_readable_span

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "copied"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("copier", "1.2")
    with tracer.start_as_current_span("parent") as parent:
        link = Link(parent.get_span_context(), {"why": "retry"})
        with tracer.start_as_current_span(
            "GET", kind=SpanKind.SERVER, links=[link],
            attributes={"net.peer.ip": "10.1.2.3", "http.route": "orders/"},
        ) as child:
            child.add_event("step", {"n": 1})
    original = next(s for s in exporter.get_finished_spans() if s.name == "GET")
    copy = scrub_readable_span(Scrubber(), original)
    assert copy is not original
    assert dict(copy.attributes or {}) == {"http.route": "orders/"}  # the client IP left out
    assert copy.context == original.context and copy.parent == original.parent
    assert copy.kind is SpanKind.SERVER and copy.resource is original.resource
    assert copy.links == original.links and copy.links[0].attributes == {"why": "retry"}
    assert [e.name for e in copy.events] == ["step"]
    assert (copy.start_time, copy.end_time) == (original.start_time, original.end_time)
    assert copy.instrumentation_scope == original.instrumentation_scope
    assert copy.instrumentation_scope is not None
    assert copy.instrumentation_scope.version == "1.2"
    assert copy.status.status_code == original.status.status_code


def test_changed_attributes_is_none_when_nothing_changes_and_keeps_order_otherwise(
    scrubber: Scrubber,
) -> None:
    clean = {"http.route": "orders/<id>/", "server.port": 1, "headers": ("a", "b"),
             "ratio": 0.5}
    assert scrubber.changed_attributes(clean) is None
    # The first change comes after unchanged ones (the small int 1 among them), then a
    # dropped attribute: everything before, between and after is kept, in order.
    mixed = {"server.port": 1, "http.route": "login/", "client.address": "203.0.113.9",
             "app.password": "hunter2", "db.statement": "SELECT 1", "flag": True}
    assert scrubber.changed_attributes(mixed) == {
        "server.port": 1, "http.route": "login/", "app.password": FILTERED,
        "db.statement": "SELECT %s", "flag": True,
    }
    assert list(scrubber.changed_attributes(mixed) or ()) == [
        "server.port", "http.route", "app.password", "db.statement", "flag"
    ]
    # The key's verdict is remembered; asking again gives the same answers.
    assert scrubber.changed_attributes(clean) is None
    assert scrubber.scrub_attributes(mixed) == scrubber.changed_attributes(mixed)


def test_a_span_with_clean_sequences_and_events_is_passed_on_as_is() -> None:
    """Header attributes are tuples and spans carry events: unchanged, they cost no copy;
    a secret in one event copies the span with only that event changed."""
    from otel_bridge.scrub import scrub_readable_span

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "clean", attributes={"http.request.header.accept": ("text/html",)}
    ) as span:
        span.add_event("cache.miss", {"cache.key": "orders:1"})
    with tracer.start_as_current_span("secret") as span:
        span.add_event("cache.miss", {"cache.key": "orders:1"})
        span.add_event("login", {"app.password": "hunter2"})
    clean, secret = exporter.get_finished_spans()
    scrubber = Scrubber()
    assert scrub_readable_span(scrubber, clean) is clean
    copy = scrub_readable_span(scrubber, secret)
    assert copy is not secret
    assert copy.events[0] is secret.events[0]
    assert copy.events[1].attributes == {"app.password": FILTERED}
    assert secret.events[1].attributes == {"app.password": "hunter2"}


def test_a_cookie_line_is_filtered_to_its_end_and_the_next_line_kept(scrubber: Scrubber) -> None:
    text = f"GET / HTTP/1.1\r\nCookie: lang=en; uid={CANARY}\r\nHost: shop"
    assert scrubber.scrub_text(text) == "GET / HTTP/1.1\r\nCookie: [Filtered]\r\nHost: shop"


def test_nested_context_and_breadcrumb_data_are_scrubbed_before_every_exporter() -> None:
    # otel_bridge.context stores nested data as JSON text under keys that are not sensitive
    # themselves ("sentry.context.payment.gateway"): the keys inside must still count.
    from otel_bridge import context
    from otel_bridge.context import sentry_fields_from_spans

    inner = InMemorySpanExporter()
    provider = _provider(SimpleSpanProcessor(ScrubbingSpanExporter(inner, Scrubber())))
    with provider.get_tracer("t").start_as_current_span("checkout") as span:
        context.set_context("payment", {"gateway": {"api_key": CANARY, "name": "psp"}})
        context.add_breadcrumb(
            "called psp",
            data={
                "url": f"https://bob:{CANARY}@psp.example/v1?token={CANARY}&page=2",
                "request": {"authorization": f"Bearer {CANARY}"},
                "note": f"retry with password={CANARY}",
            },
        )
        span.set_attribute("http.request.header.referer", (f"https://shop/reset?token={CANARY}",))
    [exported] = inner.get_finished_spans()
    _assert_clean([exported])
    fields = sentry_fields_from_spans([exported], send_default_pii=False)
    assert fields["contexts"]["payment"] == {"gateway": {"api_key": FILTERED, "name": "psp"}}
    crumb = dict(exported.events[0].attributes or {})
    assert crumb["breadcrumb.data.url"] == (
        "https://[Filtered]:[Filtered]@psp.example/v1?token=[Filtered]&page=2"
    )
    assert json.loads(str(crumb["breadcrumb.data.request"])) == {"authorization": FILTERED}
    assert dict(exported.attributes or {})["http.request.header.referer"] == (
        "https://shop/reset?token=[Filtered]",
    )


def test_a_sentry_log_body_loses_the_value_of_a_filtered_parameter(ingest) -> None:
    from sentry_sdk import logger as sentry_logger

    hooks = SentryScrubHooks(Scrubber())
    sentry_sdk.init(
        dsn=ingest.dsn, default_integrations=False, enable_logs=True, **hooks.init_kwargs()
    )
    try:
        sentry_logger.warning("login failed for {user} with {password}", user="u", password=CANARY)
        sentry_sdk.flush(timeout=10)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
    [payload] = ingest.wait_for_items("log")
    [entry] = payload["items"]
    assert entry["body"] == "login failed for u with [Filtered]"
    assert entry["attributes"]["sentry.message.parameter.password"]["value"] == FILTERED
    assert all(CANARY.encode() not in i.payload for e in ingest.received for i in e.items)


def test_bytes_in_log_attributes_are_scrubbed_as_text(scrubber: Scrubber) -> None:
    log = {"body": "x", "attributes": {"raw_body": f"password={CANARY}&u=1".encode()}}
    assert scrubber.scrub_log(log)["attributes"]["raw_body"] == b"password=[Filtered]&u=1"
    clean = b"plain bytes"
    assert scrubber.scrub_log({"attributes": {"b": clean}})["attributes"]["b"] is clean


def test_sentry_sdk_annotated_values_keep_their_note(scrubber: Scrubber) -> None:
    # Django's request extractor marks a raw or oversized body as removed; sentry-sdk turns
    # the mark into `_meta` when it serialises the event.
    from sentry_sdk._types import AnnotatedValue
    from sentry_sdk.serializer import serialize

    removed = AnnotatedValue.removed_because_raw_data()
    event = {"request": {"url": "https://shop/upload", "data": removed}}
    serialized = serialize(scrubber.scrub_event(event))
    assert serialized["request"]["data"] == ""
    assert serialized["_meta"]["request"]["data"] == {"": {"rem": [["!raw", "x"]]}}
