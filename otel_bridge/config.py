"""Every environment variable otel-bridge reads, in one table.

Parsing, validation and the reference table in ``docs/configuration.md`` all come from
``SETTINGS``; a test checks that the document lists every entry. A value that does not
parse never stops the application: the setting falls back to its default and the problem
is returned so the caller can log it once.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class InvalidSetting(ValueError):
    """A value that does not parse; the message says what was expected."""


def _parse_str(raw: str) -> str | None:
    return raw.strip() or None


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise InvalidSetting(f"expected true or false, got {raw!r}")


def _parse_rate(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        rate = float(raw)
    except ValueError:
        raise InvalidSetting(f"expected a number between 0 and 1, got {raw!r}") from None
    if math.isnan(rate) or not 0.0 <= rate <= 1.0:
        raise InvalidSetting(f"expected a number between 0 and 1, got {raw!r}")
    return rate


def _parse_positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InvalidSetting(f"expected a positive number, got {raw!r}") from None
    if math.isnan(value) or value <= 0:
        raise InvalidSetting(f"expected a positive number, got {raw!r}")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise InvalidSetting(f"expected {expected}, got {raw!r}") from None
        if value < minimum:
            raise InvalidSetting(f"expected {expected}, got {raw!r}")
        return value

    return parse


_parse_positive_int = _int_at_least(1)


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_regex_list(raw: str) -> tuple[str, ...] | None:
    patterns = _parse_list(raw)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidSetting(f"{pattern!r} is not a regular expression: {exc}") from None
    return patterns


def _one_of(*choices: str) -> Callable[[str], str]:
    """A parser for a setting that takes one of a few names (case and blanks ignored)."""

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise InvalidSetting(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "NONE")


def _parse_log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value == "WARN":
        value = "WARNING"
    if value not in _LOG_LEVELS:
        raise InvalidSetting(f"expected one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
    return value


def _parse_fingerprint_rules(raw: str) -> tuple[Any, ...]:
    # Imported late: the rule type lives with the code that applies it.
    from otel_bridge.context import parse_fingerprint_rules

    return parse_fingerprint_rules(raw)


def _parse_cron_monitors(raw: str) -> tuple[str, ...]:
    from otel_bridge.schedules import parse_cron_monitors

    try:
        monitors = parse_cron_monitors(raw)
    except ValueError as exc:
        raise InvalidSetting(str(exc)) from None
    return tuple(f"{name}={schedule}" for name, schedule in monitors.items())


def _parse_timezone(raw: str) -> str | None:
    from otel_bridge.schedules import check_timezone

    name = raw.strip()
    if not name:
        return None
    try:
        check_timezone(name)
    except ValueError as exc:
        raise InvalidSetting(str(exc)) from None
    return name


_DEFAULT_UNTRACED_COMMANDS = (
    "runserver", "runserver_plus", "testserver", "runworker", "shell", "shell_plus",
    "dbshell", "check", "test",
)


@dataclass(frozen=True)
class Setting:
    attr: str
    env: str
    type_name: str
    default: Any
    doc: str
    parse: Callable[[str], Any]
    secret: bool = False
    # How the default reads in the docs when the value itself says little (None, a tuple).
    default_doc: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "dsn", "SENTRY_DSN", "DSN", None,
        "Sentry or GlitchTip DSN. Without it nothing is sent to Sentry: the `sentry` trace "
        "exporter is inactive and sentry-sdk is not started.",
        _parse_str, secret=True, default_doc="unset",
    ),
    Setting(
        "environment", "SENTRY_ENVIRONMENT", "string", None,
        "Environment of every event; wins over the resource's `deployment.environment.name`.",
        _parse_str, default_doc="from the resource, else `production`",
    ),
    Setting(
        "release", "SENTRY_RELEASE", "string", None,
        "Release of every event; wins over the resource's `service.version`.",
        _parse_str, default_doc="from the resource, else sentry-sdk's guess (git commit, ...)",
    ),
    Setting(
        "traces_sample_rate", "SENTRY_TRACES_SAMPLE_RATE", "float in [0, 1]", None,
        "Head sampling rate for traces this service starts. Upstream decisions are honoured. "
        "When unset: 1 or 0 for `OTEL_TRACES_SAMPLER=always_on` or `always_off` (and their "
        "`parentbased_` forms), else `OTEL_TRACES_SAMPLER_ARG`, else 1.0.",
        _parse_rate, default_doc="1.0",
    ),
    Setting(
        "debug", "SENTRY_DEBUG", "bool", False,
        "Turn on sentry-sdk's debug logging and otel-bridge's own debug messages.",
        _parse_bool,
    ),
    Setting(
        "send_default_pii", "SENTRY_SEND_DEFAULT_PII", "bool", False,
        "Let user IP addresses, e-mail addresses and cookies through to Sentry "
        "(sentry-sdk's `send_default_pii`).",
        _parse_bool,
    ),
    Setting(
        "trace_propagation_targets", "SENTRY_TRACE_PROPAGATION_TARGETS",
        "comma-separated regular expressions", None,
        "Outgoing requests whose URL matches one of these (searched anywhere in the URL) get "
        "trace headers (`traceparent`, `sentry-trace`, `baggage`); others get none.",
        _parse_regex_list, default_doc="every URL",
    ),
    Setting(
        "org_id", "SENTRY_ORG_ID", "string", None,
        "This service's Sentry organization id (sentry-sdk's `org_id`), sent in the DSC as "
        "`sentry-org_id`. An incoming trace whose baggage names another organization is not "
        "continued: a new trace starts.",
        _parse_str, default_doc="from the DSN's host (`o123.ingest.sentry.io`)",
    ),
    Setting(
        "strict_trace_continuation", "SENTRY_STRICT_TRACE_CONTINUATION", "bool", False,
        "Continue an incoming trace only when its organization id and this service's are "
        "both known and equal (sentry-sdk's `strict_trace_continuation`).",
        _parse_bool,
    ),
    Setting(
        "enable_logs", "SENTRY_ENABLE_LOGS", "bool", False,
        "Send log records to Sentry Logs (`log` envelope items).",
        _parse_bool,
    ),
    Setting(
        "span_errors", "OTEL_BRIDGE_SPAN_ERRORS", "none | server | server_consumer | all",
        "server",
        "Which spans' recorded exceptions become Sentry error events when sentry-sdk did not "
        "capture the same exception itself: `server` (SERVER spans), `server_consumer` (also "
        "CONSUMER spans), `all`, or `none`.",
        _one_of("none", "server", "server_consumer", "all"),
    ),
    Setting(
        "django_errors", "OTEL_BRIDGE_DJANGO_ERRORS", "lean | sentry", "lean",
        "How unhandled Django view errors are captured. `lean`: otel-bridge's own receiver "
        "of Django's `got_request_exception` (frames, locals, request data; one sentry-sdk "
        "scope per request from the OTel server span), with nothing added to requests that "
        "do not fail. `sentry`: sentry-sdk's DjangoIntegration (also template-frame details "
        "of template errors), which wraps every request and query.",
        _one_of("lean", "sentry"),
    ),
    Setting(
        "query_breadcrumbs", "OTEL_BRIDGE_QUERY_BREADCRUMBS", "bool", True,
        "Give error events a `query` breadcrumb for each database span of their trace that "
        "ended before them (at most the last 100), as sentry-sdk's DjangoIntegration does; "
        "made only when an error is captured.",
        _parse_bool,
    ),
    Setting(
        "pending_span_ttl", "OTEL_BRIDGE_PENDING_SPAN_TTL", "seconds", 300.0,
        "How long a finished span waits for its local root to finish before it is dropped "
        "(and counted as lost).",
        _parse_positive_float,
    ),
    Setting(
        "max_pending_spans", "OTEL_BRIDGE_MAX_PENDING_SPANS", "integer", 20_000,
        "Most finished spans held while their local root is still running; past it the "
        "oldest are dropped and counted.",
        _parse_positive_int,
    ),
    Setting(
        "transport_queue_size", "OTEL_BRIDGE_TRANSPORT_QUEUE_SIZE", "integer", 1000,
        "Most envelopes waiting to be sent (sentry-sdk's own queue holds as many jobs: an "
        "error event, or all the transactions of one span batch). The span pipeline waits "
        "for room instead of overflowing it; what cannot wait is dropped and counted.",
        _parse_positive_int,
    ),
    Setting(
        "compression", "OTEL_BRIDGE_COMPRESSION", "gzip | none", "gzip",
        "How envelopes are compressed: `gzip` (level 1: a sixth of the bytes for a few "
        "microseconds) for envelopes from `OTEL_BRIDGE_COMPRESSION_THRESHOLD` up, or `none` "
        "(never: no compression CPU on the application's machine, about five times the "
        "bytes; for an ingest on the same network).",
        _one_of("gzip", "none"),
    ),
    Setting(
        "compression_threshold", "OTEL_BRIDGE_COMPRESSION_THRESHOLD", "bytes", 32768,
        "With `gzip`, envelopes smaller than this are sent uncompressed, as Sentry's own "
        "Node.js transport does (32 KiB). Compressing costs little CPU but hands the GIL to "
        "the application's threads and back, which under load costs more than the "
        "compression (docs/benchmarks.md); a transaction of a few spans is 2-8 KB. `0` "
        "compresses every envelope (about a sixth of the bytes).",
        _int_at_least(0),
    ),
    Setting(
        "pipeline_depth", "OTEL_BRIDGE_PIPELINE_DEPTH", "integer", 32,
        "Most envelopes in flight on the connection to the ingest (HTTP/1.1 pipelining): a "
        "span batch's transactions go out in one write per this many. Each write and wait "
        "hands the GIL to the application's threads and back, which under load costs more "
        "than the sending (docs/benchmarks.md). The first exchange checks that the ingest "
        "answers pipelined requests (an `OPTIONS` after the first envelope); if it does not "
        "within a second, envelopes go one at a time. `1` never pipelines.",
        _parse_positive_int,
    ),
    Setting(
        "shutdown_timeout", "OTEL_BRIDGE_SHUTDOWN_TIMEOUT", "seconds", 10.0,
        "How long the process waits at exit to deliver what is pending.",
        _parse_positive_float,
    ),
    Setting(
        "sampling_rules", "OTEL_BRIDGE_SAMPLING_RULES", "rules", (),
        "Comma-separated `pattern=rate` rules matched against the route or span name of "
        "a local root (regular expression, full match); the first match wins. "
        "Example: `/health.*=0,GET /api/.*=0.5`.",
        _parse_list, default_doc="none",
    ),
    Setting(
        "scrub_enabled", "OTEL_BRIDGE_SCRUB", "bool", True,
        "Remove secrets and personal data from spans, events, breadcrumbs and logs.",
        _parse_bool,
    ),
    Setting(
        "scrub_keys", "OTEL_BRIDGE_SCRUB_KEYS", "comma-separated words", (),
        "More key fragments to scrub, on top of the built-in list (case-insensitive substrings).",
        _parse_list, default_doc="none",
    ),
    Setting(
        "log_breadcrumb_level", "OTEL_BRIDGE_LOG_BREADCRUMB_LEVEL", "log level", "INFO",
        "Log records at or above this level become breadcrumbs (`NONE` disables).",
        _parse_log_level,
    ),
    Setting(
        "log_event_level", "OTEL_BRIDGE_LOG_EVENT_LEVEL", "log level", "ERROR",
        "Log records at or above this level become Sentry error events (`NONE` disables).",
        _parse_log_level,
    ),
    Setting(
        "fingerprint_rules", "OTEL_BRIDGE_FINGERPRINT_RULES", "rules", (),
        "Comma-separated `<matcher>=<group>` rules setting the fingerprint of error events "
        "(first match wins); matchers `Type`, `type:<glob>`, `op:<op>`, `transaction:<glob>`, "
        "`message:<glob>`. Example: `OperationalError=database-down,op:http.client=api-errors`.",
        _parse_fingerprint_rules, default_doc="none",
    ),
    Setting(
        "django_commands_exclude", "OTEL_BRIDGE_DJANGO_COMMANDS_EXCLUDE",
        "comma-separated command names", _DEFAULT_UNTRACED_COMMANDS,
        "Django management commands that do not become transactions (replaces the default "
        "list).",
        _parse_list, default_doc="`" + ",".join(_DEFAULT_UNTRACED_COMMANDS) + "`",
    ),
    Setting(
        "cron_monitors", "OTEL_BRIDGE_CRON_MONITORS", "`command=schedule` pairs separated by `;`",
        (),
        "Django management commands that also send Sentry cron check-ins, the command name "
        "being the monitor slug. Example: `shop_report=*/5 * * * *;cleanup=1h`.",
        _parse_cron_monitors, default_doc="none",
    ),
    Setting(
        "cron_timezone", "OTEL_BRIDGE_CRON_TIMEZONE", "tz database name", None,
        "The timezone Sentry reads the crontabs of `OTEL_BRIDGE_CRON_MONITORS` in. A system "
        "cron runs jobs in the host's local time: set it to the host's zone (say "
        "`Europe/Berlin`), or `0 3 * * *` is expected at 03:00 UTC.",
        _parse_timezone, default_doc="UTC (Sentry's default)",
    ),
    Setting(
        "tag_keys", "OTEL_BRIDGE_TAG_KEYS", "comma-separated keys", (),
        "Structured log keys and span attributes promoted to Sentry tags.",
        _parse_list, default_doc="none",
    ),
)

SETTINGS_BY_ENV: Mapping[str, Setting] = {setting.env: setting for setting in SETTINGS}


@dataclass(frozen=True)
class ConfigProblem:
    env: str
    raw: str
    message: str

    def __str__(self) -> str:
        shown = "***" if SETTINGS_BY_ENV[self.env].secret else repr(self.raw)
        return f"{self.env}={shown} ignored: {self.message}"


# OTel's sampler names (OTEL_TRACES_SAMPLER) that otel-bridge's sampler stands in for, and
# the rate each sets; None: the rate is OTEL_TRACES_SAMPLER_ARG's. That sampler is always
# parent-based: Sentry keeps or drops a trace whole, so an upstream decision is honoured.
OTEL_SAMPLER_RATES: dict[str, float | None] = {
    "parentbased_always_on": 1.0,
    "always_on": 1.0,
    "parentbased_always_off": 0.0,
    "always_off": 0.0,
    "parentbased_traceidratio": None,
    "traceidratio": None,
    "otel_bridge": None,
}


def otel_sampler_name(environ: Mapping[str, str]) -> str:
    """OTEL_TRACES_SAMPLER, lower-cased as the OTel SDK reads it; empty when unset."""
    return environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()


def otel_sampler_notice(
    environ: Mapping[str, str], traces_sample_rate: float | None = None
) -> tuple[str, bool] | None:
    """What to say about OTEL_TRACES_SAMPLER, when otel-bridge reads it otherwise than the OTel
    SDK would, and whether it is a problem (a name that sets nothing)."""
    raw = environ.get("OTEL_TRACES_SAMPLER", "").strip()
    name = raw.lower()
    if not name or name == "otel_bridge":
        return None
    if name not in OTEL_SAMPLER_RATES:
        known = ", ".join(sorted(OTEL_SAMPLER_RATES))
        return (
            f"OTEL_TRACES_SAMPLER={raw!r} ignored: otel-bridge's sampler is used (Sentry's "
            f"sampling rules); it stands in for {known}",
            True,
        )
    if OTEL_SAMPLER_RATES[name] is not None and traces_sample_rate is not None:
        return (
            f"OTEL_TRACES_SAMPLER={raw!r} overridden by SENTRY_TRACES_SAMPLE_RATE="
            f"{traces_sample_rate:g}",
            False,
        )
    if not name.startswith("parentbased_"):
        return (
            f"OTEL_TRACES_SAMPLER={raw!r} read as 'parentbased_{name}': otel-bridge's sampler "
            "honours the decision of the service that started a trace, so it is kept or "
            "dropped whole",
            False,
        )
    return None


@dataclass(frozen=True)
class BridgeConfig:
    dsn: str | None = None
    environment: str | None = None
    release: str | None = None
    traces_sample_rate: float | None = None
    debug: bool = False
    send_default_pii: bool = False
    trace_propagation_targets: tuple[str, ...] | None = None
    org_id: str | None = None
    strict_trace_continuation: bool = False
    enable_logs: bool = False
    span_errors: str = "server"
    django_errors: str = "lean"
    query_breadcrumbs: bool = True
    pending_span_ttl: float = 300.0
    max_pending_spans: int = 20_000
    transport_queue_size: int = 1000
    compression: str = "gzip"
    compression_threshold: int = 32768
    pipeline_depth: int = 32
    shutdown_timeout: float = 10.0
    sampling_rules: tuple[str, ...] = ()
    scrub_enabled: bool = True
    scrub_keys: tuple[str, ...] = ()
    log_breadcrumb_level: str = "INFO"
    log_event_level: str = "ERROR"
    tag_keys: tuple[str, ...] = ()
    fingerprint_rules: tuple[Any, ...] = ()
    django_commands_exclude: tuple[str, ...] = _DEFAULT_UNTRACED_COMMANDS
    cron_monitors: tuple[str, ...] = ()
    cron_timezone: str | None = None
    problems: tuple[ConfigProblem, ...] = field(default=(), compare=False)

    def effective_org_id(self) -> str | None:
        """SENTRY_ORG_ID, else the one in the DSN's host, as sentry-sdk reads it."""
        if self.org_id is not None:
            return self.org_id
        if not self.dsn:
            return None
        from sentry_sdk.utils import Dsn

        org_id: str | None = Dsn(self.dsn).org_id
        return org_id

    def effective_sample_rate(self, environ: Mapping[str, str] | None = None) -> float:
        """SENTRY_TRACES_SAMPLE_RATE, else the rate an OTEL_TRACES_SAMPLER name sets
        (``always_on``: 1, ``always_off``: 0), else a ratio in OTEL_TRACES_SAMPLER_ARG, else
        1.0."""
        if self.traces_sample_rate is not None:
            return self.traces_sample_rate
        env = os.environ if environ is None else environ
        fixed = OTEL_SAMPLER_RATES.get(otel_sampler_name(env))
        if fixed is not None:
            return fixed
        raw = env.get("OTEL_TRACES_SAMPLER_ARG", "")
        try:
            rate = _parse_rate(raw)
        except InvalidSetting:
            return 1.0
        return 1.0 if rate is None else rate


def load_config(environ: Mapping[str, str] | None = None) -> BridgeConfig:
    """Read every setting; a bad value keeps its default and is listed in ``problems``."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is None:
            continue
        try:
            values[setting.attr] = setting.parse(raw)
        except InvalidSetting as exc:
            problems.append(ConfigProblem(setting.env, raw, str(exc)))
    if values.get("dsn"):
        dsn_problem = validate_dsn(values["dsn"])
        if dsn_problem is not None:
            problems.append(ConfigProblem("SENTRY_DSN", values.pop("dsn"), dsn_problem))
    return BridgeConfig(**values, problems=tuple(problems))


def validate_dsn(dsn: str) -> str | None:
    """Why sentry-sdk would refuse this DSN, or None when it is usable."""
    from sentry_sdk.utils import BadDsn, Dsn

    try:
        Dsn(dsn)
    except BadDsn as exc:
        return f"not a valid DSN ({exc})"
    return None


def masked(setting: Setting, value: Any) -> str:
    """A value as it may be printed: secrets keep only their scheme and host."""
    if value is None:
        return "unset"
    if setting.secret and isinstance(value, str):
        match = re.match(r"^(\w+://)[^@]*@(.*)$", value)
        return f"{match.group(1)}***@{match.group(2)}" if match else "***"
    if isinstance(value, tuple):
        return ",".join(value) if value else "(empty)"
    return str(value)


def markdown_table() -> str:
    """The reference table published in docs/configuration.md."""
    lines = ["| Variable | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    for setting in SETTINGS:
        default = setting.default_doc or f"`{setting.default}`"
        # A "|" inside a cell ("gzip | none") would end the cell.
        cells = [f"`{setting.env}`", setting.type_name, default, setting.doc]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


assert {f.name for f in fields(BridgeConfig)} - {"problems"} == {s.attr for s in SETTINGS}


if __name__ == "__main__":
    print(markdown_table())
