"""Shared fixtures: the rig's servers, each stopped when its test (or session) ends.

- ``ingest``: a fresh ``RecordingIngest`` per test.
- ``otlp_receiver``: a fresh ``OtlpReceiver`` per test.
- ``bugsink``: one real Bugsink per session (tests filter its events, e.g. by trace id).
- ``shop_server``: factory starting the sample Django shop under opentelemetry-instrument.
- ``bench_sink``: the benchmarks' envelope sink process (``bench.sink``) per test.

Every temporary directory the rig makes in the test process (servers' logs, the shop's
databases) lives under one directory per session, removed when the session ends.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bench.procs import Sink
from tests.rig.bugsink import Bugsink
from tests.rig.ingest import RecordingIngest
from tests.rig.otlp import OtlpReceiver
from tests.rig.processes import InstrumentedServer, give_children_default_sigint
from tests.rig.shop import start_shop

ShopFactory = Callable[..., InstrumentedServer]


def pytest_configure(config: pytest.Config) -> None:
    give_children_default_sigint()


@pytest.fixture(scope="session", autouse=True)
def _session_temp_dir() -> Iterator[Path]:
    """Point ``tempfile`` at a directory of the session's own: servers started outside the
    fixtures below (``InstrumentedServer`` without ``log_dir``, ``shop_env`` without
    ``db_dir``) make theirs with ``mkdtemp`` and keep them for their output after stopping,
    so they are removed all together once every test and fixture is done."""
    base = Path(tempfile.mkdtemp(prefix="otel-bridge-tests-"))
    previous = tempfile.tempdir
    tempfile.tempdir = str(base)
    try:
        yield base
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ingest() -> Iterator[RecordingIngest]:
    with RecordingIngest() as server:
        yield server


@pytest.fixture
def bench_sink() -> Iterator[Sink]:
    envelope_sink = Sink()
    try:
        yield envelope_sink
    finally:
        envelope_sink.stop()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def bugsink() -> Iterator[Bugsink]:
    with Bugsink() as server:
        yield server


@pytest.fixture
def shop_server(tmp_path: Path) -> Iterator[ShopFactory]:
    """``shop_server(env={...}, server="runserver"|"gunicorn", workers=2)`` -> a started
    ``InstrumentedServer`` (``.base_url``, ``.url(path)``, ``.stderr_text()``).

    Every server started through the factory is stopped at the end of the test; its
    stdout/stderr are kept in ``tmp_path`` for the failure report.
    """
    started: list[InstrumentedServer] = []

    def start(env: Mapping[str, str] | None = None, **kwargs: Any) -> InstrumentedServer:
        log_dir = tmp_path / f"shop-{len(started)}"
        log_dir.mkdir()
        server = start_shop(env, log_dir=log_dir, **kwargs)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
