"""Non-bridged peer services for the interop tests (run as separate processes)."""
