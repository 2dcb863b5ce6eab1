"""Bar charts drawn on the server as SVG (no script; only attributes, so the pages' strict
CSP holds): the geometry of one program's issued and redeemed points per bucket."""
from __future__ import annotations

from dataclasses import dataclass

from hub.settlement.activity import ProgramActivity

WIDTH, HEIGHT = 640, 180  # the plot area, in SVG user units
LEFT, BOTTOM = 48, 20  # room for the axis labels


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    kind: str  # "issued" | "redeemed": the CSS class that colours it
    title: str  # what a pointer or a screen reader reads on the bar


@dataclass(frozen=True)
class Chart:
    program: str
    bars: list[Bar]
    top: int  # the value the plot's top stands for
    ticks: list[tuple[int, str]]  # x and label of the buckets labelled on the axis
    width: int = WIDTH + LEFT
    height: int = HEIGHT + BOTTOM
    left: int = LEFT
    plot_height: int = HEIGHT


def chart(activity: ProgramActivity) -> Chart:
    buckets = activity.buckets
    top = max([b.issued for b in buckets] + [b.redeemed for b in buckets] + [1])
    slot = WIDTH // max(len(buckets), 1)
    bar = max(slot // 2 - 1, 1)
    bars, ticks = [], []
    for i, bucket in enumerate(buckets):
        x = LEFT + i * slot
        for offset, kind, value in ((0, "issued", bucket.issued), (bar, "redeemed", bucket.redeemed)):
            height = value * HEIGHT // top
            bars.append(Bar(x + offset, HEIGHT - height, bar, height, kind, f"{bucket.label}: {value:,} {kind}"))
        if i % max(len(buckets) // 6, 1) == 0:
            ticks.append((x, bucket.label))
    return Chart(activity.program, bars, top, ticks)
