"""The audit trail: every privileged action (who, what, when, before and after) in an
append-only, hash-chained log (trail.py) that `hub audit verify` checks end to end."""
