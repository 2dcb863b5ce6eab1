"""The loyalty rules (issue 6): what a program's members earn beyond the base rate, and what
they unlock.

One package, one concern per module; none imports Flask:

    models.py      rule versions and awards (the tables every feature shares)
    effects.py     purchases_posted: what runs after purchases are posted (stamps, tiers, ...)
    awards.py      award(): bonus points granted once per (program, kind, key), with a reason
    rating.py      rate(): what a purchase earns under the earning and promotions sections, and why
    rating_lint.py those sections' linter (overlaps, contradictions, unbounded awards)
    counters.py    per-member caps and promotion budgets, taken atomically at earn time
    preview.py     a hypothetical purchase rated, with nothing written
"""
