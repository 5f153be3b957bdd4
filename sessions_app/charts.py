"""Geometry of the admin's inline SVG charts: the size histogram, a session's bytes by part, and
a load's waterfall. Templates draw the shapes; no JavaScript is needed to read them.
"""

import math
from dataclasses import dataclass

from django.template.defaultfilters import filesizeformat

WIDTH = 760
VALUE_ROOM = 200
"""Room right of the longest bar for its figure and note."""
BAR = 18
GAP = 4
AXIS_END_ROOM = 64
"""Room right of a histogram's last bar for the label of its upper edge."""


@dataclass(frozen=True, kw_only=True)
class Bar:
    label: str
    value: float
    x: float
    y: float
    width: float
    height: float
    note: str = ""
    depth: int = 0

    @property
    def label_x(self):
        return 14 * self.depth

    @property
    def end(self):
        return self.x + self.width


@dataclass(frozen=True, kw_only=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    axis_end: str = ""
    """The label of the last bar's right edge (a histogram's largest size)."""


def histogram(bands, *, height=160):
    """Vertical bars, one per size band, each labelled with its lower edge (the next bar's label
    is its upper one) and its range in its note; heights on a log scale, since one band often
    holds a hundred times the sessions of its neighbour."""
    if not bands:
        return Chart(width=WIDTH, height=height, bars=[])
    step = (WIDTH - AXIS_END_ROOM) / len(bands)
    tallest = math.log1p(max(count for _, _, count in bands)) or 1
    plot = height - 2 * BAR  # room for the count above and the size below each bar
    bars = []
    for i, (low, high, count) in enumerate(bands):
        h = plot * math.log1p(count) / tallest
        bars.append(
            Bar(
                label=filesizeformat(low),
                value=count,
                x=i * step + GAP / 2,
                y=BAR + plot - h,
                width=step - GAP,
                height=h,
                note=f"{filesizeformat(low)} \N{EN DASH} {filesizeformat(high)}",
            )
        )
    return Chart(width=WIDTH, height=height, bars=bars, axis_end=filesizeformat(bands[-1][1]))


def horizontal(rows, *, label_width=220):
    """Horizontal bars for (label, value, depth, note) rows, on one linear scale."""
    widest = max((value for _, value, _, _ in rows), default=0) or 1
    plot = WIDTH - label_width - VALUE_ROOM
    bars = [
        Bar(
            label=label,
            value=value,
            x=label_width,
            y=i * (BAR + GAP),
            width=max(plot * value / widest, 1 if value else 0),
            height=BAR,
            note=note,
            depth=depth,
        )
        for i, (label, value, depth, note) in enumerate(rows)
    ]
    return Chart(width=WIDTH, height=len(rows) * (BAR + GAP), bars=bars)


def waterfall(phases, *, label_width=160):
    """One bar per (name, seconds) phase, each starting where the one before ended."""
    total = sum(seconds for _, seconds in phases) or 1
    plot = WIDTH - label_width - VALUE_ROOM
    bars, start = [], 0.0
    for i, (name, seconds) in enumerate(phases):
        bars.append(
            Bar(
                label=name,
                value=seconds,
                x=label_width + plot * start / total,
                y=i * (BAR + GAP),
                width=max(plot * seconds / total, 1),
                height=BAR,
                note=f"{100 * seconds / total:.0f} %",
            )
        )
        start += seconds
    return Chart(width=WIDTH, height=len(phases) * (BAR + GAP), bars=bars)


def latency(minutes, *, height=160, label_width=64):
    """Two bars per minute, p99 behind p50 (depth 1 and 0), oldest first, heights on a log
    scale from a tenth of the fastest p50 to the slowest p99; a minute without calls has none.
    The chart's ``axis_end`` is the top of the scale, in milliseconds."""
    shown = [m for m in minutes if m.calls]
    step = (WIDTH - label_width) / max(len(minutes), 1)
    if not shown:
        return Chart(width=WIDTH, height=height, bars=[])
    top = max(m.p99 for m in shown)
    bottom = min(m.p50 for m in shown) / 10
    span = math.log(top / bottom) or 1
    plot = height - BAR
    bars = []
    for i, minute in enumerate(minutes):
        if not minute.calls:
            continue
        for depth, seconds in ((1, minute.p99), (0, minute.p50)):
            h = plot * math.log(seconds / bottom) / span
            bars.append(
                Bar(
                    label=str(minute.minute),
                    value=seconds,
                    x=label_width + i * step + GAP / 4,
                    y=plot - h,
                    width=step - GAP / 2,
                    height=h,
                    note=str(minute.calls),
                    depth=depth,
                )
            )
    return Chart(width=WIDTH, height=height, bars=bars, axis_end=f"{top * 1e3:.3g}")
