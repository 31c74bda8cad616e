"""Trace header parsing and the propagator that reads and writes them.

Kept import-light on purpose: ``opentelemetry.propagate`` may load our propagator while the
``opentelemetry-instrument`` launcher is still starting.
"""
