"""Sentry span pipeline: finished OTel spans to Sentry transactions and error events."""
