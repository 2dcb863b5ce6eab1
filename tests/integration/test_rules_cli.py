"""`hub rules`: check, publish and show a program's rule document from its config file."""
from __future__ import annotations

import json
from datetime import timedelta

from hub.db import utcnow
from tests.integration.test_cli import run  # noqa: F401  (fixture)
from tests.integration.test_rules_api import BAD, BAD_PATHS, MORNINGS, versions


def write(tmp_path, document, name="rules.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def test_check_prints_every_finding_with_its_path(run, tmp_path):
    bad = run("rules", "check", write(tmp_path, BAD))
    assert bad.exit_code == 1
    assert {line.split(":")[0] for line in bad.output.splitlines()} == BAD_PATHS
    good = run("rules", "check", write(tmp_path, MORNINGS))
    assert good.exit_code == 0 and "valid" in good.output
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    unreadable = run("rules", "check", str(broken))
    assert unreadable.exit_code == 1 and "broken.json" in unreadable.output


def test_publish_then_show(run, tmp_path, partner):
    published = run("rules", "publish", partner.program, write(tmp_path, MORNINGS))
    assert published.exit_code == 0, published.output
    assert f"{partner.program} rules version 1" in published.output
    later = (utcnow() + timedelta(days=2)).isoformat()
    assert run("rules", "publish", partner.program, write(tmp_path, {}), "--effective-from", later).exit_code == 0
    assert versions(partner.api, partner.program) == [2, 1]

    shown = run("rules", "show", partner.program)
    assert shown.exit_code == 0, shown.output
    now = json.loads(shown.output)
    assert (now["version"], now["document"], now["created_by"]) == (1, MORNINGS, "cli")
    assert json.loads(run("rules", "show", partner.program, "--version", "2").output)["version"] == 2
    missing = run("rules", "show", partner.program, "--version", "3")
    assert missing.exit_code == 1 and "no rules version 3" in missing.output


def test_publish_refusals_write_nothing(run, tmp_path, partner):
    bad = run("rules", "publish", partner.program, write(tmp_path, BAD))
    assert bad.exit_code == 1 and "/earning/rules/0:" in bad.output
    past = run("rules", "publish", partner.program, write(tmp_path, {}), "--effective-from", "2020-01-01T00:00:00Z")
    assert past.exit_code == 1 and "past" in past.output
    naive = run("rules", "publish", partner.program, write(tmp_path, {}), "--effective-from", "2030-01-01T00:00")
    assert naive.exit_code == 1 and "time zone" in naive.output
    assert run("rules", "publish", "NOSUCHPROGRAM", write(tmp_path, {})).exit_code == 1
    assert versions(partner.api, partner.program) == []
    nothing = run("rules", "show", partner.program)
    assert nothing.exit_code == 1 and "base rate only" in nothing.output
