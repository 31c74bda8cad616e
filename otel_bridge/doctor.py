"""What ``otel-bridge doctor`` finds: the effective configuration and what
``opentelemetry-instrument`` would load, with every problem flagged and explained.

Reads only the environment and installed entry points (no network, no providers built), so
it is safe to run anywhere. It mirrors the selection rules of ``opentelemetry-instrument``
(``opentelemetry.instrumentation.auto_instrumentation._load``) and of the SDK's
configuration, because the traps are in those rules: the first distro or configurator found
wins, a wrong ``OTEL_PYTHON_DISTRO`` falls back silently, an unknown exporter or propagator
name stops everything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from otel_bridge.config import (
    OTEL_SAMPLER_RATES,
    SETTINGS,
    BridgeConfig,
    load_config,
    masked,
    otel_sampler_name,
    otel_sampler_notice,
)
from otel_bridge.diagnostics import (
    ID_GENERATOR_GROUP,
    PROPAGATOR_GROUP,
    TRACES_EXPORTER_GROUP,
    describe_unknown_exporter,
    entry_points_by_name,
    resolve_exporter_name,
    split_names,
    validate_exporter_names,
    validate_propagator_names,
)

__all__ = ["Finding", "Section", "effective_environ", "inspect_environment"]

BRIDGE_NAME = "otel_bridge"

# Standard variables shown as set; the ones that may hold credentials are masked.
_OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_PROPAGATORS",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PYTHON_DISTRO",
    "OTEL_PYTHON_CONFIGURATOR",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
    "OTEL_PYTHON_ID_GENERATOR",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
)
_HEADER_VARIABLES = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
_DEFAULT_PROPAGATORS = "tracecontext,baggage"


@dataclass(frozen=True)
class Finding:
    label: str
    value: str
    note: str = ""
    problem: bool = False


@dataclass
class Section:
    title: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, label: str, value: str, note: str = "", problem: bool = False) -> None:
        self.findings.append(Finding(label, value, note, problem))


def mask_value(name: str, value: str) -> str:
    """A standard OTel variable as it may be printed: header values and URL credentials
    and query strings hidden."""
    if name in _HEADER_VARIABLES:
        keys = [part.split("=", 1)[0].strip() for part in value.split(",") if part.strip()]
        return ",".join(f"{key}=***" for key in keys)
    value = re.sub(r"(\w+://)[^/@\s]*@", r"\1***@", value)
    return re.sub(r"\?\S*", "?***", value)


def _dist_label(entry_point: EntryPoint) -> str:
    dist = entry_point.dist
    return f"{dist.name} {dist.version}" if dist is not None else entry_point.value


def _chosen(entry_points_found: list[EntryPoint], wanted: str | None) -> EntryPoint | None:
    for entry_point in entry_points_found:
        if wanted is None or entry_point.name == wanted:
            return entry_point
    return None


def effective_environ(environ: Mapping[str, str]) -> tuple[dict[str, str], bool, str]:
    """The environment as the application will see it after the distro's defaults, whether
    otel-bridge's distro runs, and a note saying so."""
    env = dict(environ)
    distros = list(entry_points(group="opentelemetry_distro"))
    chosen = _chosen(distros, env.get("OTEL_PYTHON_DISTRO"))
    if chosen is None or chosen.name != BRIDGE_NAME:
        return env, False, "otel-bridge's distro is not the one selected: no defaults applied"
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return env, False, "OTEL_SDK_DISABLED=true: nothing is configured"
    try:
        from otel_bridge.distro import apply_environment_defaults

        apply_environment_defaults(env)
    except Exception as exc:  # the report must still come out
        return env, True, f"the distro's defaults could not be computed ({type(exc).__name__})"
    return env, True, "values marked 'distro default' are set by otel-bridge's distro"


def _settings_section(config: BridgeConfig, environ: Mapping[str, str]) -> Section:
    section = Section("otel-bridge settings")
    problems = {problem.env: problem for problem in config.problems}
    for setting in SETTINGS:
        value = getattr(config, setting.attr)
        shown = masked(setting, value)
        if setting.env in problems:
            section.add(
                setting.env, shown, f"default; value ignored: {problems[setting.env].message}",
                problem=True,
            )
        elif setting.env in environ:
            section.add(setting.env, shown, "env")
        elif value is None:
            section.add(setting.env, "unset", f"default: {setting.default_doc or 'unset'}")
        else:
            section.add(setting.env, shown, "default")
    return section


def _otel_section(environ: Mapping[str, str], effective: Mapping[str, str], why: str) -> Section:
    section = Section("OpenTelemetry environment")
    for name in _OTEL_VARIABLES:
        if name in environ:
            section.add(name, mask_value(name, environ[name]), "env")
        elif name in effective:
            section.add(name, mask_value(name, effective[name]), "distro default")
    generator = environ.get("OTEL_PYTHON_ID_GENERATOR", "").strip()
    installed = entry_points_by_name(ID_GENERATOR_GROUP)
    if generator and generator not in installed:
        section.add(
            "id generator", generator,
            f"no installed id generator of that name (installed: "
            f"{', '.join(sorted(installed)) or 'none'}); otel-bridge logs one line at start-up "
            "and uses random ids (without otel-bridge the SDK would set up nothing)",
            problem=True,
        )
    section.add("note", why)
    return section


def _selection_section(effective: Mapping[str, str]) -> Section:
    section = Section("Distro and configurator")
    for group, variable, what in (
        ("opentelemetry_distro", "OTEL_PYTHON_DISTRO", "distro"),
        ("opentelemetry_configurator", "OTEL_PYTHON_CONFIGURATOR", "configurator"),
    ):
        found = list(entry_points(group=group))
        wanted = effective.get(variable)
        chosen = _chosen(found, wanted)
        names = ", ".join(f"{ep.name} ({_dist_label(ep)})" for ep in found) or "none"
        section.add(f"installed {what}s", names)
        if chosen is None:
            fallback = "the default distro is used" if what == "distro" else "none runs"
            section.add(
                what, "none",
                f"{variable}={wanted!r} matches no installed {what}: {fallback}, "
                "silently, and otel-bridge is not configured" if wanted is not None
                else f"no {what} installed",
                problem=True,
            )
            continue
        if wanted is None and len(found) > 1:
            section.add(
                what, chosen.name,
                f"{len(found)} {what}s installed and {variable} unset: the first found wins, "
                f"in no defined order; set {variable}={BRIDGE_NAME}",
                problem=True,
            )
        elif chosen.name != BRIDGE_NAME:
            section.add(what, chosen.name, f"selected by {variable}; not otel-bridge's",
                        problem=True)
        else:
            section.add(what, chosen.name, f"selected by {variable}" if wanted else "only one")
    return section


def _exporters_section(config: BridgeConfig, effective: Mapping[str, str]) -> Section:
    section = Section("Trace exporters (OTEL_TRACES_EXPORTER)")
    raw = effective.get("OTEL_TRACES_EXPORTER", "")
    installed = entry_points_by_name(TRACES_EXPORTER_GROUP)
    known, unknown = validate_exporter_names(raw, effective)
    if not known and not unknown:
        section.add("none", "spans are not exported", "no exporter configured")
    for name in known:
        resolved = resolve_exporter_name(name, effective)
        candidates = installed[resolved]
        alias = f" (otlp -> {resolved})" if resolved != name else ""
        if len(candidates) > 1:
            section.add(
                name, "ambiguous",
                f"{len(candidates)} exporters named {resolved!r} "
                f"({', '.join(_dist_label(ep) for ep in candidates)}): one is picked in no "
                "defined order",
                problem=True,
            )
        elif name == "sentry" and not config.dsn:
            section.add(name, "inactive", "SENTRY_DSN is unset or invalid: nothing reaches Sentry",
                        problem=True)
        else:
            section.add(name, "active", f"{_dist_label(candidates[0])}{alias}")
    for name in unknown:
        section.add(
            name, "unknown",
            f"{describe_unknown_exporter(name, effective)}; otel-bridge drops it at start-up "
            "(without otel-bridge the SDK would instrument nothing)",
            problem=True,
        )
    return section


_BRIDGE_PROPAGATOR_ALIASES = ("otel_bridge", "sentry")


def _propagator_names(effective: Mapping[str, str], bridged: bool) -> list[str]:
    if bridged:
        try:
            from otel_bridge.propagation.setup import propagator_names

            return list(propagator_names(effective))
        except ImportError:
            pass
    return split_names(effective.get("OTEL_PROPAGATORS") or _DEFAULT_PROPAGATORS)


def _propagators_section(effective: Mapping[str, str], bridged: bool) -> Section:
    """Mirrors ``otel_bridge.propagation.setup`` when otel-bridge's distro runs (``sentry``
    and ``otel_bridge`` mean our propagator, which also owns ``baggage``; unknown names are
    dropped with a warning), else the SDK (unknown names stop the launcher)."""
    section = Section("Propagators (OTEL_PROPAGATORS)")
    names = _propagator_names(effective, bridged)
    installed = entry_points_by_name(PROPAGATOR_GROUP)
    ours = bridged and any(n.lower() in _BRIDGE_PROPAGATOR_ALIASES for n in names)
    if any(name.lower() == "none" for name in names):
        section.add("none", "no propagation", "'none' in OTEL_PROPAGATORS removes every propagator")
        return section
    _, unknown = validate_propagator_names(",".join(names))
    # otel_bridge.pth already removed these at interpreter start (see propagation/envfix.py).
    from otel_bridge.propagation.envfix import DROPPED_ENV

    removed = [n for n in split_names(effective.get(DROPPED_ENV, "")) if n not in names]
    for name in removed:
        section.add(
            name, "unknown",
            f"not installed (installed: {', '.join(sorted(installed))}); ignored, with one "
            "warning at start-up (otel-bridge's start-up hook, otel_bridge.pth, removes it)",
            problem=True,
        )
    for name in names:
        low = name.lower()
        if bridged and low in _BRIDGE_PROPAGATOR_ALIASES:
            section.add(name, "active", "otel-bridge: traceparent + sentry-trace, one merged "
                        "baggage header")
        elif ours and low == "baggage":
            section.add(name, "active", "merged into otel-bridge's baggage header")
        elif name in unknown:
            effect = (
                "ignored, with one warning at start-up" if bridged
                else "opentelemetry-instrument exits before the application starts"
            )
            section.add(
                name, "unknown",
                f"not installed (installed: {', '.join(sorted(installed))}); {effect}",
                problem=True,
            )
        elif len(installed[name]) > 1:
            section.add(
                name, "ambiguous",
                f"{len(installed[name])} propagators named {name!r} "
                f"({', '.join(_dist_label(ep) for ep in installed[name])}): one is picked in "
                "no defined order",
                problem=True,
            )
        else:
            section.add(name, "active", _dist_label(installed[name][0]))
    if bridged and not ours:
        section.add("note", "no sentry-trace", "otel_bridge is not in OTEL_PROPAGATORS: "
                    "Sentry SDK peers will not continue these traces")
    return section


def _requirement(text: object) -> str:
    # Requirement strings carry their extras marker; it says nothing to a reader.
    return re.sub(r';\s*extra\s*==\s*"[^"]*"', "", str(text)).strip()


def _conflict_text(conflict: Any) -> str:
    if conflict.required:
        required = _requirement(conflict.required)
        if conflict.found:
            return f"needs {required}, found {conflict.found}"
        return f"{required} is not installed"
    if conflict.required_any:
        options = " or ".join(_requirement(r) for r in conflict.required_any)
        if conflict.found_any:
            found = ", ".join(str(f) for f in conflict.found_any)
            return f"needs {options}, found {found}"
        return f"needs {options}, none installed"
    return str(conflict)


def _instrumentor_status(entry_point: EntryPoint) -> tuple[str, str, bool]:
    """What ``opentelemetry-instrument`` would do with an instrumentor: (status, why, problem)."""
    from opentelemetry.instrumentation.dependencies import (
        get_dependency_conflicts,
        get_dist_dependency_conflicts,
    )

    dist = entry_point.dist
    conflict = get_dist_dependency_conflicts(dist) if dist is not None else None
    if conflict is not None:
        return "skipped", _conflict_text(conflict), bool(conflict.found or conflict.found_any)
    try:
        instrumentor = entry_point.load()()
        declared = get_dependency_conflicts(instrumentor.instrumentation_dependencies())
    except ModuleNotFoundError as exc:
        return "skipped", f"{exc.name or exc} is not installed", False
    except Exception as exc:
        return "fails", f"loading it raises {type(exc).__name__}: {exc}", True
    # The loader checks only a distribution's `instruments` extra and then instruments with
    # skip_dep_check=True: what the instrumentor itself declares is never compared with
    # the versions installed. A library that is missing altogether still stops it (its
    # import fails when it instruments), one of another version does not.
    if declared is not None and not (declared.found or declared.found_any):
        return "skipped", _conflict_text(declared), False
    if declared is not None:
        return "active", (
            f"{_dist_label(entry_point)}; loaded although it declares "
            f"{_conflict_text(declared)} (opentelemetry-instrument does not check that)"
        ), False
    return "active", _dist_label(entry_point), False


def _instrumentations_section(effective: Mapping[str, str]) -> Section:
    section = Section("Instrumentations (opentelemetry_instrumentor)")
    disabled = set(split_names(effective.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")))
    found = entry_points_by_name("opentelemetry_instrumentor")
    for name in sorted(disabled - set(found) - {"*"}):
        section.add(name, "unknown", "in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS but no "
                    "instrumentation has that name: it has no effect", problem=True)
    for name in sorted(found):
        if "*" in disabled or name in disabled:
            section.add(name, "disabled", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
            continue
        status, why, problem = _instrumentor_status(found[name][0])
        if name == "django" and status == "active" and not effective.get(
            "DJANGO_SETTINGS_MODULE"
        ):
            # contrib's instrumentor then calls settings.configure() with empty settings,
            # and manage.py no longer finds the project's commands.
            why = ("DJANGO_SETTINGS_MODULE is not in the environment: contrib's Django "
                   "instrumentation falls back to empty settings (manage.py commands break); "
                   "export it before opentelemetry-instrument, or disable 'django'")
            problem = True
        section.add(name, status, why, problem)
    return section


def _rate_problem(raw: str) -> str | None:
    try:
        rate = float(raw)
    except ValueError:
        return f"{raw!r} is not a number"
    if math.isnan(rate) or not 0.0 <= rate <= 1.0:
        return f"{raw!r} is outside [0, 1]"
    return None


def _sentry_section(config: BridgeConfig, effective: Mapping[str, str]) -> Section:
    section = Section("Sentry")
    if config.dsn:
        from sentry_sdk.utils import Dsn

        dsn = Dsn(config.dsn)
        section.add("DSN", f"valid: host {dsn.netloc}, project {dsn.project_id}",
                    "sentry-sdk starts for errors; check-ins and transactions use it too")
        section.add("envelope endpoint", f"{dsn.scheme}://{dsn.netloc}{dsn.path}"
                    f"api/{dsn.project_id}/envelope/")
    elif any(problem.env == "SENTRY_DSN" for problem in config.problems):
        section.add("DSN", "invalid", "nothing is sent to Sentry", problem=True)
    else:
        section.add("DSN", "unset", "nothing is sent to Sentry; OTel exporters still work")
    sampler_notice = otel_sampler_notice(effective, config.traces_sample_rate)
    if sampler_notice is not None:
        section.add("OTEL_TRACES_SAMPLER", effective["OTEL_TRACES_SAMPLER"].strip(),
                    sampler_notice[0], problem=sampler_notice[1])
    if config.traces_sample_rate is not None:
        source = "SENTRY_TRACES_SAMPLE_RATE"
    elif OTEL_SAMPLER_RATES.get(otel_sampler_name(effective)) is not None:
        source = "OTEL_TRACES_SAMPLER"
    elif effective.get("OTEL_TRACES_SAMPLER_ARG", "").strip():
        source = "OTEL_TRACES_SAMPLER_ARG"
        problem = _rate_problem(effective["OTEL_TRACES_SAMPLER_ARG"])
        if problem:
            section.add("OTEL_TRACES_SAMPLER_ARG", "ignored", f"{problem}; 1.0 is used",
                        problem=True)
            source = "default"
    else:
        source = "default"
    section.add("traces sample rate", str(config.effective_sample_rate(effective)), source)
    for rule in config.sampling_rules:
        pattern, sep, rate = rule.rpartition("=")
        problem = "expected pattern=rate" if not sep or not pattern else _rate_problem(rate)
        if problem is None:
            try:
                re.compile(pattern)
            except re.error as exc:
                problem = f"{pattern!r} is not a regular expression ({exc})"
        if problem:
            section.add("sampling rule", rule, problem, problem=True)
    return section


def inspect_environment(environ: Mapping[str, str]) -> list[Section]:
    """Everything ``otel-bridge doctor`` prints, as sections of findings."""
    effective, bridged, why = effective_environ(environ)
    config = load_config(environ)
    return [
        _settings_section(config, environ),
        _otel_section(environ, effective, why),
        _selection_section(effective),
        _sentry_section(config, effective),
        _exporters_section(config, effective),
        _propagators_section(effective, bridged),
        _instrumentations_section(effective),
    ]


def problems_of(sections: list[Section]) -> list[tuple[str, Finding]]:
    return [(s.title, f) for s in sections for f in s.findings if f.problem]

