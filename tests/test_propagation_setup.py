"""Building the global propagator from OTEL_PROPAGATORS, and surviving unknown names."""

from __future__ import annotations

import logging
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_bridge.config import BridgeConfig
from otel_bridge.propagation.envfix import (
    DROPPED_ENV,
    known_propagator_names,
    sanitize_otel_propagators,
)
from otel_bridge.propagation.propagator import SentryBridgePropagator
from otel_bridge.propagation.setup import build_global_propagator
from otel_bridge.propagation.targets import TargetGatedPropagator
from tests.rig import clean_env

PTH = Path(__file__).resolve().parents[1] / "otel_bridge" / "propagation" / "otel_bridge.pth"


def _inner(environ: dict[str, str]) -> list[object]:
    built = build_global_propagator(BridgeConfig(), environ)
    assert isinstance(built, TargetGatedPropagator)
    assert isinstance(built.inner, CompositePropagator)
    return list(built.inner._propagators)  # type: ignore[attr-defined]


def test_default_is_tracecontext_then_ours_owning_baggage() -> None:
    parts = _inner({})
    assert [type(p) for p in parts] == [TraceContextTextMapPropagator, SentryBridgePropagator]
    assert parts[1].fields == {"sentry-trace", "baggage"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("propagators", ["", "otel_bridge"])
def test_an_oversized_tracestate_is_dropped_with_the_default_propagators_too(
    propagators: str,
) -> None:
    # docs/propagation.md: over 512 characters it is dropped. With tracecontext first (the
    # default), the state that propagator had parsed was reused unchecked and forwarded.
    from opentelemetry.sdk.trace import TracerProvider

    built = build_global_propagator(
        BridgeConfig(), {"OTEL_PROPAGATORS": propagators} if propagators else {}
    )
    trace_id, span_id = "771a43a4192642f0b136d5159a501700", "b0e6f15b45c36b12"
    small = "vendor=" + "x" * 40
    big = ",".join(f"vendor{i:02d}=" + "x" * 40 for i in range(20))  # 999 characters
    forwarded = []
    for state in (small, big):
        ctx = built.extract({"traceparent": f"00-{trace_id}-{span_id}-01", "tracestate": state})
        with TracerProvider().get_tracer("t").start_as_current_span("child", context=ctx):
            out: dict[str, str] = {}
            built.inject(out)
        forwarded.append(out.get("tracestate"))
    assert forwarded == [small, None]


def test_ours_alone_writes_traceparent_too() -> None:
    (ours,) = _inner({"OTEL_PROPAGATORS": "otel_bridge"})
    assert {"traceparent", "sentry-trace", "baggage"} <= ours.fields  # type: ignore[attr-defined]


def test_user_order_keeps_ours_last_and_sentry_is_an_alias() -> None:
    parts = _inner({"OTEL_PROPAGATORS": "sentry,baggage,tracecontext,otel_bridge"})
    assert [type(p) for p in parts] == [TraceContextTextMapPropagator, SentryBridgePropagator]


def test_without_ours_the_user_list_is_respected() -> None:
    parts = _inner({"OTEL_PROPAGATORS": "tracecontext,baggage"})
    assert [type(p).__name__ for p in parts] == [
        "TraceContextTextMapPropagator", "W3CBaggagePropagator"
    ]


def test_none_means_no_propagation() -> None:
    built = build_global_propagator(BridgeConfig(), {"OTEL_PROPAGATORS": "none"})
    assert built.fields == set()


def test_unknown_names_are_skipped_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_bridge")
    parts = _inner({"OTEL_PROPAGATORS": "tracecontext,bogus,otel_bridge", DROPPED_ENV: "nope"})
    assert [type(p) for p in parts] == [TraceContextTextMapPropagator, SentryBridgePropagator]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "bogus" in warnings[0] and "nope" in warnings[0]


def test_our_entry_points_are_registered() -> None:
    assert {"otel_bridge", "tracecontext", "baggage"} <= known_propagator_names()


def test_sanitize_removes_only_unknown_names() -> None:
    env = {"OTEL_PROPAGATORS": "tracecontext, bogus ,otel_bridge"}
    known = {"tracecontext", "baggage", "otel_bridge"}
    assert sanitize_otel_propagators(env, known) == ["bogus"]
    assert env == {"OTEL_PROPAGATORS": "tracecontext,otel_bridge", DROPPED_ENV: "bogus"}
    only_bad = {"OTEL_PROPAGATORS": "bogus"}
    assert sanitize_otel_propagators(only_bad, known) == ["bogus"]
    assert "OTEL_PROPAGATORS" not in only_bad
    untouched = {"OTEL_PROPAGATORS": "tracecontext,baggage"}
    assert sanitize_otel_propagators(untouched, known) == [] and len(untouched) == 1


@pytest.mark.parametrize(
    ("raw", "left"),
    [
        ("tracecontext,baggage,", "tracecontext,baggage"),  # a trailing comma
        ("tracecontext,,otel_bridge", "tracecontext,otel_bridge"),
        (" , ", None),  # nothing left: the default propagators
        ("bogus,none", "none"),  # the API would look `bogus` up before reaching `none`
        ("tracecontext, NONE", "none"),
        ("none", "none"),
    ],
)
def test_sanitize_leaves_nothing_the_api_would_fail_on(raw: str, left: str | None) -> None:
    env = {"OTEL_PROPAGATORS": raw}
    sanitize_otel_propagators(env, {"tracecontext", "baggage", "otel_bridge"})
    assert env.get("OTEL_PROPAGATORS") == left


_LAUNCH_WITHOUT_SITE = """
import sys
# -S: no site module, so no .pth file runs; the packages are still importable.
sys.path.append({purelib!r})
sys.argv = ["opentelemetry-instrument", sys.executable, "-c", "print('app ran')"]
from opentelemetry.instrumentation.auto_instrumentation import run
run()
"""


def test_without_the_hook_an_unknown_propagator_kills_the_launcher() -> None:
    """Why the hook exists: the launcher imports opentelemetry.propagate before any distro."""
    result = subprocess.run(
        [sys.executable, "-S", "-c",
         _LAUNCH_WITHOUT_SITE.format(purelib=sysconfig.get_paths()["purelib"])],
        env=clean_env({"OTEL_PROPAGATORS": "tracecontext,bogus", "OTEL_SDK_DISABLED": "true"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "Propagator bogus not found" in result.stderr


@pytest.mark.parametrize(
    ("value", "seen"),
    [
        ("tracecontext,bogus", "tracecontext"),
        ("tracecontext,baggage,", "tracecontext,baggage"),  # a trailing comma
        ("bogus,none", "none"),  # the API looks `bogus` up before it reaches `none`
    ],
)
def test_installed_hook_keeps_opentelemetry_instrument_alive(value: str, seen: str) -> None:
    """With otel_bridge.pth installed at the top of site-packages (the wheel puts it there,
    scripts/bootstrap does for the editable install) the app runs, with what would have
    stopped the launcher removed."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    assert (purelib / "otel_bridge.pth").read_text() == PTH.read_text()
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    result = subprocess.run(
        [str(launcher), sys.executable, "-c",
         "import os; print('app ran with', os.environ.get('OTEL_PROPAGATORS'))"],
        env=clean_env({"OTEL_PROPAGATORS": value, "OTEL_SDK_DISABLED": "true"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"app ran with {seen}\n" in result.stdout
