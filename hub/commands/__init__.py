"""`hub` command groups that live in their own modules (settlement, reconciliation, audit,
ops users); hub/cli.py registers them. common.py is what every command shares."""
