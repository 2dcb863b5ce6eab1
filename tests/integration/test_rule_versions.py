"""Rule versions: published in order, never backdated, found by the moment they rate."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from hub.db import utcnow
from hub.errors import Invalid
from hub.programs.models import Program
from hub.rules import versions


def _program_id(db, partner):
    with db.read() as s:
        return s.scalar(select(Program.id).where(Program.code == partner.program))


def test_the_version_in_force_is_the_latest_started_at_that_moment(db, partner):
    program_id = _program_id(db, partner)
    now = utcnow()
    first = db.write(lambda s: versions.publish(s, program_id, {}, created_by="test"))
    second = db.write(lambda s: versions.publish(
        s, program_id, {}, created_by="test", effective_from=now + timedelta(days=7)))
    assert (first.version, second.version) == (1, 2)
    with db.read() as s:
        assert versions.in_force(s, program_id, now - timedelta(days=1)) is None
        assert versions.in_force(s, program_id, now + timedelta(days=1)).version == 1
        assert versions.in_force(s, program_id, now + timedelta(days=7)).version == 2
        assert [v.version for v in versions.history(s, program_id)] == [1, 2]


@pytest.mark.parametrize("days, slug", [(-1, "rules-backdated"), (3, "rules-out-of-order")])
def test_a_version_cannot_rewrite_the_past_or_jump_the_queue(db, partner, days, slug):
    program_id = _program_id(db, partner)
    db.write(lambda s: versions.publish(
        s, program_id, {}, created_by="test", effective_from=utcnow() + timedelta(days=5)))
    with pytest.raises(Invalid) as raised:
        db.write(lambda s: versions.publish(
            s, program_id, {}, created_by="test", effective_from=utcnow() + timedelta(days=days)))
    assert raised.value.slug == slug


def test_a_bad_document_names_the_path_of_each_error(db, partner):
    program_id = _program_id(db, partner)
    with pytest.raises(Invalid) as raised:
        db.write(lambda s: versions.publish(s, program_id, {"bogus": 1}, created_by="test"))
    assert raised.value.slug == "invalid-rules"
    assert raised.value.extra["errors"][0]["path"] == "/"
    with db.read() as s:
        assert versions.history(s, program_id) == []


def test_a_rolled_back_version_is_not_remembered(db, partner):
    program_id = _program_id(db, partner)

    def publish_then_fail(s):
        versions.publish(s, program_id, {}, created_by="test")
        assert versions.in_force(s, program_id, utcnow()).version == 1
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        db.write(publish_then_fail)
    with db.read() as s:
        assert versions.in_force(s, program_id, utcnow()) is None
