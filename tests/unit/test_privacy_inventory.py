"""docs/privacy.md names every column whose name suggests personal data: a new such column
fails this test until the inventory says why it is kept, who sees it and for how long (or
lists it under "Looks personal, is not")."""
import re
from pathlib import Path

import hub.models  # noqa: F401  (every table on Base.metadata)
from hub.db import Base

DOC = Path(__file__).resolve().parents[2] / "docs" / "privacy.md"
PERSONAL = re.compile(
    r"email|phone|name|address|birth|(^|_)ip($|_)|user_agent|_sealed$|^value$|attributes|items|recipient"
    r"|subject|claims|remote_member|body|^data$|receipt|delivery|store|sku|^code$|metadata|note"
)
# `code` matches every business code (programs, rewards, ...): only these are a member's.
MEMBER_CODES = {"reward_vouchers.code", "referral_codes.code"}


def personal_columns() -> set[str]:
    found = set()
    for table in Base.metadata.tables.values():
        for column in table.columns:
            name = f"{table.name}.{column.name}"
            if PERSONAL.search(column.name) and (column.name != "code" or name in MEMBER_CODES):
                found.add(name)
    return found


def named() -> set[str]:
    """`table.column` names in the document (not its file names or event types)."""
    return {n for n in re.findall(r"`([a-z_]+\.[a-z_]+)`", DOC.read_text())
            if n.split(".")[0] in Base.metadata.tables and not n.endswith(".json")}


def test_every_personal_column_is_in_the_inventory():
    missing = sorted(personal_columns() - named())
    assert not missing, f"add these columns to docs/privacy.md: {missing}"


def test_the_inventory_names_only_real_columns():
    columns = {f"{t.name}.{c.name}" for t in Base.metadata.tables.values() for c in t.columns}
    stale = sorted(named() - columns)
    assert not stale, f"docs/privacy.md names columns that do not exist: {stale}"
