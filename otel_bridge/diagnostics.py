"""Start-up checks that turn bad configuration into one clear log line instead of a dead app.

The OTel SDK is unforgiving where a typo is easy: an unknown name in ``OTEL_TRACES_EXPORTER``
(or the metrics or logs one) raises inside the configurator and ``opentelemetry-instrument``
then instruments nothing; an unknown name in ``OTEL_PROPAGATORS`` makes it exit. The
functions here say which names would resolve, mirroring the SDK's own lookup (entry points,
and the ``otlp`` alias resolved by ``OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL``), so the distro
can keep the good ones. The same functions back ``otel-bridge doctor``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points

from otel_bridge.config import SETTINGS_BY_ENV, ConfigProblem

__all__ = [
    "ID_GENERATOR_GROUP",
    "PROPAGATOR_GROUP",
    "TRACES_EXPORTER_GROUP",
    "describe_unknown_exporter",
    "entry_points_by_name",
    "keep_own_warnings_visible",
    "report_config_problems",
    "resolve_exporter_name",
    "split_names",
    "validate_exporter_names",
    "validate_propagator_names",
]

TRACES_EXPORTER_GROUP = "opentelemetry_traces_exporter"
PROPAGATOR_GROUP = "opentelemetry_propagator"
ID_GENERATOR_GROUP = "opentelemetry_id_generator"

_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_OTLP_NAMES = ("otlp", "otlp_proto_grpc", "otlp_proto_http")
_OTLP_PACKAGES = {
    "otlp_proto_grpc": "opentelemetry-exporter-otlp-proto-grpc",
    "otlp_proto_http": "opentelemetry-exporter-otlp-proto-http",
}

# Which problems this process already reported: configuration is read by the distro, the
# configurator and the CLI, and a problem must still be said once.
_reported: set[ConfigProblem] = set()
_reported_lock = threading.Lock()


def report_config_problems(problems: Sequence[ConfigProblem], logger: logging.Logger) -> None:
    """Log each problem once per process, as one line saying what is used instead.

    Secrets never reach the log: ``ConfigProblem.__str__`` masks them."""
    for problem in problems:
        with _reported_lock:
            if problem in _reported:
                continue
            _reported.add(problem)
        setting = SETTINGS_BY_ENV.get(problem.env)
        instead = ""
        if setting is not None:
            default = setting.default_doc or str(setting.default)
            instead = f"; using the default ({default})"
        logger.error("otel-bridge: %s%s", problem, instead)


class _LastResortForOwnWarnings(logging.Handler):
    """Python prints a warning nobody handles to stderr (``logging.lastResort``); the contrib
    logging instrumentation's handler on the root logger ends that, and without a logs
    exporter it sends records nowhere: otel-bridge's warnings about a full queue or an
    unreachable ingest would vanish. This one does what the last resort would have done
    when the only handlers in reach are OTel's."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        last_resort = logging.lastResort
        if last_resort is None or self._handled_elsewhere(record):
            return
        if record.levelno >= last_resort.level:
            last_resort.handle(record)

    def _handled_elsewhere(self, record: logging.LogRecord) -> bool:
        from otel_bridge.logs.dedupe import is_otel_logging_handler

        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            for handler in logger.handlers:
                if handler is self or is_otel_logging_handler(handler):
                    continue
                if record.levelno >= handler.level:
                    return True
            if not logger.propagate:
                return False
            logger = logger.parent
        return False


def keep_own_warnings_visible(logger: logging.Logger) -> None:
    """Make sure `logger`'s warnings reach stderr when the application configured no logging
    output (idempotent)."""
    if not any(isinstance(h, _LastResortForOwnWarnings) for h in logger.handlers):
        logger.addHandler(_LastResortForOwnWarnings())


def split_names(names: str | None) -> list[str]:
    """A comma-separated list of names, as the SDK splits it (blanks dropped)."""
    return [name.strip() for name in (names or "").split(",") if name.strip()]


def entry_points_by_name(group: str) -> dict[str, list[EntryPoint]]:
    """Every entry point of a group, by name; more than one per name means the SDK picks
    one in no defined order."""
    found: dict[str, list[EntryPoint]] = {}
    for entry_point in entry_points(group=group):
        found.setdefault(entry_point.name, []).append(entry_point)
    return found


def resolve_exporter_name(
    name: str, environ: Mapping[str, str] | None = None, signal: str = "traces"
) -> str:
    """The entry point the SDK loads for ``name``: ``otlp`` follows the OTLP protocol
    variables of the signal (gRPC when unset), as ``opentelemetry.sdk._configuration`` does."""
    if name != "otlp":
        return name
    env = os.environ if environ is None else environ
    protocol = (
        env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    )
    if not protocol:
        return "otlp_proto_grpc"
    return _OTLP_BY_PROTOCOL.get(protocol.strip(), f"otlp ({protocol.strip()})")


def validate_exporter_names(
    names: str | None, environ: Mapping[str, str] | None = None, signal: str = "traces"
) -> tuple[list[str], list[str]]:
    """Split ``OTEL_TRACES_EXPORTER`` (or the ``metrics``/``logs`` one) into names that
    resolve to an installed exporter of that signal and names that do not (in the order
    given, without duplicates).

    ``none`` is neither: alone it means no exporter, in a list it is dropped (the SDK would
    look it up as an exporter and fail)."""
    installed = entry_points_by_name(f"opentelemetry_{signal}_exporter")
    known: list[str] = []
    unknown: list[str] = []
    for name in split_names(names):
        if name.lower() == "none" or name in known or name in unknown:
            continue
        target = known if resolve_exporter_name(name, environ, signal) in installed else unknown
        target.append(name)
    return known, unknown


def describe_unknown_exporter(name: str, environ: Mapping[str, str] | None = None) -> str:
    """Why a trace exporter name does not resolve, and what would fix it (one clause)."""
    resolved = resolve_exporter_name(name, environ)
    installed = sorted(entry_points_by_name(TRACES_EXPORTER_GROUP))
    if name == "otlp" and resolved not in _OTLP_PACKAGES:
        return (
            "OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf, got "
            f"{resolved[len('otlp ('):-1]!r}"
        )
    if resolved in _OTLP_PACKAGES:
        via = f"otlp means {resolved} here; " if name != resolved else ""
        hint = (
            " or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
            if resolved == "otlp_proto_grpc"
            else ""
        )
        return f"{via}install {_OTLP_PACKAGES[resolved]}{hint}"
    lowered = name.lower()
    if lowered != name and lowered in installed:
        return f"names are case-sensitive, use {lowered!r}"
    return f"no installed trace exporter of that name (installed: {', '.join(installed)})"


def validate_propagator_names(names: str | None) -> tuple[list[str], list[str]]:
    """Split ``OTEL_PROPAGATORS`` into installed propagator names and unknown ones (which
    make ``opentelemetry-instrument`` exit before the application starts)."""
    installed = entry_points_by_name(PROPAGATOR_GROUP)
    known: list[str] = []
    unknown: list[str] = []
    for name in split_names(names):
        if name.lower() == "none" or name in known or name in unknown:
            continue
        (known if name in installed else unknown).append(name)
    return known, unknown
