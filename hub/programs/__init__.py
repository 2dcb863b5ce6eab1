"""Partners, programs, members, memberships and earning (no Flask here)."""
