from otel_bridge import __version__

__all__ = ["__version__"]
