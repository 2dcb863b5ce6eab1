"""The overview's buckets and chart geometry (pure functions: no database)."""
from __future__ import annotations

from datetime import datetime, timezone

from hub.settlement.activity import DAY, MONTH, Bucket, ProgramActivity, labels
from hub.web.ops import charts


def test_the_spans_end_with_the_current_bucket_and_cross_year_ends():
    now = datetime(2026, 1, 3, 23, 59, tzinfo=timezone.utc)
    days = labels(DAY, now)
    assert len(days) == 30 and days[-1] == "2026-01-03" and days[0] == "2025-12-05"
    months = labels(MONTH, now)
    assert len(months) == 12 and months[-1] == "2026-01" and months[0] == "2025-02"


def test_bars_scale_to_the_largest_value_and_stand_on_the_axis():
    chart = charts.chart(ProgramActivity("KOPI", [Bucket("2026-01", 50, 0), Bucket("2026-02", 200, 100)]))
    heights = {(bar.title.split(":")[0], bar.kind): bar.height for bar in chart.bars}
    assert chart.top == 200
    assert heights == {("2026-01", "issued"): charts.HEIGHT // 4, ("2026-01", "redeemed"): 0,
                       ("2026-02", "issued"): charts.HEIGHT, ("2026-02", "redeemed"): charts.HEIGHT // 2}
    assert all(bar.y + bar.height == charts.HEIGHT for bar in chart.bars)
    assert len({bar.x for bar in chart.bars}) == 4  # side by side, none on top of another


def test_a_program_with_no_activity_draws_empty_bars():
    chart = charts.chart(ProgramActivity("KOPI", [Bucket("2026-01", 0, 0)]))
    assert chart.top == 1 and all(bar.height == 0 for bar in chart.bars)
