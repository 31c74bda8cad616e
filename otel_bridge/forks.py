"""Resetting per-process state in forked children (pre-fork servers, Celery's prefork pool)."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any


def reset_in_forked_children(method: Callable[[], Any]) -> None:
    """Call the bound ``method`` in every child forked from now on, while its object lives.

    Only a weak reference is registered: ``os.register_at_fork`` keeps its callbacks for the
    life of the process, and must not keep the object alive."""
    weak_method = weakref.WeakMethod(method)

    def after_fork_in_child() -> None:
        bound = weak_method()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=after_fork_in_child)
