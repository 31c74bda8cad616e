"""Benchmarks of otel-bridge against its anchors: ``python -m bench.run [--quick]``.

See docs/benchmarks.md. Nothing here is imported by the package or the test suite.
"""
