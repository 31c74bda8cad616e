"""The ``otel-bridge`` command.

    otel-bridge doctor               # effective configuration, what would load, problems
    otel-bridge doctor --send-test   # also send a test transaction + error to SENTRY_DSN

Exit status: ``doctor`` 0 when no problem was found, 1 otherwise; ``doctor --send-test``
0 when the ingest accepted both test envelopes, 1 when not (or no usable DSN).
Nothing printed contains a secret: settings go through ``config.masked``, OTel header
variables show only their keys, and the DSN's keys are cut from every message.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from otel_bridge import __version__
from otel_bridge.config import load_config
from otel_bridge.doctor import Section, inspect_environment, problems_of

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-bridge", description="otel-bridge: OpenTelemetry to Sentry and GlitchTip."
    )
    parser.add_argument("--version", action="version", version=f"otel-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser(
        "doctor",
        help="show the effective configuration and what would be loaded; flag problems",
        description="Show the effective configuration (secrets masked), which exporters, "
        "propagators and instrumentations opentelemetry-instrument would load and why, "
        "and every configuration problem.",
    )
    doctor.add_argument(
        "--send-test",
        action="store_true",
        help="send a test transaction and a test error to SENTRY_DSN and report whether "
        "the ingest accepted them",
    )
    return parser


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _print_sections(sections: list[Section], out: TextIO) -> None:
    for section in sections:
        print(f"\n{section.title}", file=out)
        width = max((len(f.label) for f in section.findings), default=0)
        for finding in section.findings:
            mark = "!!" if finding.problem else "  "
            note = f"  ({finding.note})" if finding.note else ""
            print(f" {mark} {finding.label.ljust(width)}  {finding.value}{note}", file=out)


def _doctor(environ: Mapping[str, str], out: TextIO) -> int:
    print(f"otel-bridge {__version__} doctor", file=out)
    sections = inspect_environment(environ)
    _print_sections(sections, out)
    problems = problems_of(sections)
    if problems:
        print(f"\n{len(problems)} problem(s):", file=out)
        for title, finding in problems:
            print(f" !! [{title}] {finding.label}: {finding.note or finding.value}", file=out)
        return 1
    print("\nNo problems found.", file=out)
    return 0


def _send_test(environ: Mapping[str, str], out: TextIO) -> int:
    from sentry_sdk.utils import Dsn

    from otel_bridge.send_test import send_test

    print("\nSending a test transaction and a test error", file=out)
    config = load_config(environ)
    if not config.dsn:
        invalid = [p for p in config.problems if p.env == "SENTRY_DSN"]
        reason = str(invalid[0]) if invalid else "SENTRY_DSN is not set"
        print(f" !! cannot send: {reason}", file=out)
        return 1
    dsn = Dsn(config.dsn)
    secrets = [dsn.public_key or "", dsn.secret_key or "", config.dsn]
    result = send_test(config.dsn, environment=config.environment, release=config.release)
    labels = {"transaction": "test transaction", "event": "test error"}
    for kind, label in labels.items():
        delivery = result.delivery_of(kind)
        if delivery is None:
            print(f" !! {label}: not sent (sentry-sdk dropped it before sending)", file=out)
            continue
        mark = "ok" if delivery.accepted else "!!"
        event = f", event id {delivery.event_id}" if delivery.event_id else ""
        print(f" {mark} {label}: {_redact(delivery.explain(), secrets)}{event}", file=out)
        if delivery.rate_limits:
            print(f"    the ingest asks to pause sending: X-Sentry-Rate-Limits: "
                  f"{_redact(delivery.rate_limits, secrets)}", file=out)
    if result.trace_id:
        print(f"    trace id {result.trace_id}", file=out)
    if result.accepted:
        print("The ingest accepted both.", file=out)
        return 0
    print("The ingest did NOT accept everything: see the lines marked !! above.", file=out)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    out = sys.stdout
    environ = dict(os.environ)
    if args.command == "doctor":
        status = _doctor(environ, out)
        if args.send_test:
            return _send_test(environ, out)
        return status
    return 2


if __name__ == "__main__":
    sys.exit(main())
