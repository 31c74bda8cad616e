"""Event ids without a system call.

``uuid.uuid4()`` reads ``os.urandom``, and CPython releases the GIL around that read. On the
batch thread, under a busy application, each release hands the GIL to a request thread and
costs a round of waiting to win it back: ``uuid4`` was a fifth of the batch thread's CPU in
a 3,000-request burst (py-spy, 2026-11-22). A pseudo-random generator seeded from the OS is
enough for ids that must only be unique (OpenTelemetry's own id generator does the same).
It is a private instance, so an application that seeds the global ``random`` cannot make two
processes send the same event ids (Sentry drops an event whose id it has already seen), and
it is reseeded in a forked child (pre-fork servers) for the same reason.
"""

from __future__ import annotations

import os
import random
import uuid

_generator = random.Random()
os.register_at_fork(after_in_child=_generator.seed)

# The bits uuid.UUID(version=4) fixes: the version nibble (4) and the RFC 4122 variant (10).
_FIXED_BITS_MASK = (0xF000 << 64) | (0xC000 << 48)
_UUID4_BITS = (0x4000 << 64) | (0x8000 << 48)


def new_event_id() -> str:
    """A random UUID4 as 32 hex digits, the form of ``uuid.uuid4().hex``."""
    return f"{_uuid4_bits():032x}"


def _uuid4_bits() -> int:
    return (_generator.getrandbits(128) & ~_FIXED_BITS_MASK) | _UUID4_BITS


def new_uuid4() -> uuid.UUID:
    """A random UUID4, the value of ``uuid.uuid4()``, without the system call."""
    return uuid.UUID(int=_uuid4_bits())
