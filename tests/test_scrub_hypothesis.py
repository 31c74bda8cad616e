"""Property tests of the scrubber: hostile text never raises, scrubbing twice changes nothing
(spans are scrubbed as they end and their events again before sending), and a labelled
secret never survives, whatever surrounds it."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_bridge.scrub import Scrubber

SCRUBBER = Scrubber()
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text built from the pieces the scrubber's patterns look for, so the interesting paths are hit.
pieces = st.sampled_from([
    "://", "http", "amqp", "@", ":", "[", "]", "[Filtered]", "?", "&", "#", "=", "/", " ",
    "token", "password", "Bearer ", "basic ", "digest ", "api_key", "'", '"', "%", "\n", "::1",
    "user", "host", "abcdefgh1234", "eyJhbGciOiJIUzI1NiJ9.e30.sig",
])
hostile = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(pieces, st.text(max_size=5)), max_size=40).map("".join),
)
secrets = st.text(alphabet="ABCDEFGHJKMNPQRSTVWXYZ23456789", min_size=10, max_size=24).map(
    lambda s: f"Zq{s}"  # never a plain word, never part of the surrounding text
)
labels = st.sampled_from(["password=", "token: ", "api_key=", '"secret": "', "Bearer "])
filler = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,.;", max_size=30)


@FAST
@given(hostile)
def test_text_and_urls_never_raise_and_scrub_to_themselves(text: str) -> None:
    for scrub in (SCRUBBER.scrub_text, SCRUBBER.scrub_url, SCRUBBER.scrub_query,
                  SCRUBBER.scrub_sql):
        once = scrub(text)
        assert isinstance(once, str)
        assert scrub(once) == once, (scrub.__name__, text, once)


@FAST
@given(hostile, hostile)
def test_events_never_raise_and_scrub_to_themselves(message: str, url: str) -> None:
    event: dict[str, Any] = {
        "message": message,
        "request": {"url": url, "query_string": message, "headers": {"X-Any": message}},
        "breadcrumbs": {"values": [
            {"category": "query", "message": message},
            {"category": "http", "message": message, "data": {"url": url}},
        ]},
        "exception": {"values": [{"type": "E", "value": message}]},
        "extra": {"note": message, "password": message},
    }
    scrubbed = SCRUBBER.scrub_event(copy.deepcopy(event))
    assert scrubbed["extra"]["password"] == "[Filtered]"
    # breadcrumbs are scrubbed when recorded, then again with their event
    assert SCRUBBER.scrub_event(copy.deepcopy(scrubbed)) == scrubbed


@FAST
@given(filler, labels, secrets, filler)
def test_a_labelled_secret_never_survives(before: str, label: str, secret: str, after: str) -> None:
    text = f"{before} {label}{secret} {after}"
    assert secret not in SCRUBBER.scrub_text(text)
    key = label.strip(' :="')
    if key != "Bearer":  # a query parameter is known by its name
        url = f"https://app.example.com/cb?{key}={secret}&page=2"
        assert secret not in SCRUBBER.scrub_url(url)
    assert secret not in SCRUBBER.scrub_text(f"{before} amqp://svc:{secret}@broker// {after}")
