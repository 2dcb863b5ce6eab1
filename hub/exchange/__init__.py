"""Conversion of points between programs, pooling and member-to-member transfers (no Flask)."""
