"""Event ids: UUID4s from a private generator, distinct across forks and global seeding."""

from __future__ import annotations

import os
import random
import re
import uuid

import pytest

from otel_bridge.pipeline.ids import new_event_id


def test_event_ids_are_uuid4_hex() -> None:
    ids = {new_event_id() for _ in range(2000)}
    assert len(ids) == 2000
    for event_id in list(ids)[:200]:
        assert re.fullmatch(r"[0-9a-f]{32}", event_id)
        parsed = uuid.UUID(hex=event_id)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_seeding_the_global_random_does_not_repeat_event_ids() -> None:
    state = random.getstate()
    try:
        random.seed(42)
        first = new_event_id()
        random.seed(42)
        second = new_event_id()
    finally:
        random.setstate(state)
    assert first != second


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_other_event_ids_than_its_parent() -> None:
    # Pre-fork servers (gunicorn) copy the generator's state into every worker; without a
    # reseed in the child, parent and child would send the same ids (Sentry drops repeats).
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.write(write_end, " ".join(new_event_id() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        child_ids = reader.read().decode().split()
    os.waitpid(pid, 0)
    parent_ids = [new_event_id() for _ in range(3)]
    assert len(child_ids) == 3
    assert not set(child_ids) & set(parent_ids)
