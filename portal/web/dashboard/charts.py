"""Charts drawn on the server as SVG geometry: no script, no CDN, readable without colour.

Functions return plain shapes; ``templates/dashboard/_charts.html`` turns them into ``<svg>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    #: Where bar labels end (horizontal bars) or sit (columns).
    label_at: float
    #: Columns: label every n-th column, so that long labels ("14 Sept.") do not run together.
    label_every: int = 1


def horizontal_bars(
    items: Sequence[tuple[str, int]], width: int = 560, label_width: int = 170, row: int = 30
) -> Chart:
    """One bar per item, longest for the largest value; labels on the left."""
    top = max((value for _, value in items), default=0) or 1
    room = width - label_width - 70
    bars = [
        Bar(label, value, label_width, index * row + 4, room * value / top, row - 10)
        for index, (label, value) in enumerate(items)
    ]
    return Chart(width, row * len(items) + 4, bars, label_width - 8)


def columns(items: Sequence[tuple[str, int]], width: int = 560, height: int = 220) -> Chart:
    """One column per item, left to right, with room below for labels and above for values."""
    top = max((value for _, value in items), default=0) or 1
    slot = width / max(len(items), 1)
    room = height - 50
    bars = []
    for index, (label, value) in enumerate(items):
        tall = room * value / top
        bars.append(
            Bar(label, value, index * slot + slot * 0.15, 20 + room - tall, slot * 0.7, tall)
        )
    widest = max((text_width(label, 11) for label, _ in items), default=0)
    every = max(1, math.ceil((widest + 6) / slot))
    return Chart(width, height, bars, height - 12, every)


def text_width(text: str, size: float) -> float:
    """About how wide ``text`` is at font ``size``: CJK characters a full em, others 0.62."""
    return sum(size if ord(char) >= 0x2E80 else size * 0.62 for char in text)
