"""otel-bridge: OpenTelemetry-first instrumentation that exports to Sentry and GlitchTip."""

__version__ = "0.1.0"
