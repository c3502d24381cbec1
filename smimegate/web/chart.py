"""The Dashboard's messages-per-hour chart as geometry for an inline SVG drawn by the
template (dashboard.html): stacked bars, one per hour, one colour per direction and result.

No script and no style attributes: the page's Content-Security-Policy (security.CSP) allows
neither inline script nor inline style, and SVG presentation attributes (x, y, fill ...) are
neither. Every text reaches the page through the template's autoescaping. Each bar segment
has a <title> (its hour, series and count) and the page has the same figures as a table, for
readers that cannot see the chart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 760, 220
LEFT, BOTTOM, TOP = 44, 22, 8

# Colour-blind-safe hues (Okabe & Ito); results that are no success get the warm ones.
_GOOD = ("#0072B2", "#009E73", "#56B4E9", "#999999")
_BAD = ("#D55E00", "#E69F00", "#CC79A7", "#F0E442")


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Rect]
    ticks: list[tuple[float, str]]  # (y, label) of the vertical axis
    hour_labels: list[tuple[float, str]]  # (x, "HH") under every third bar
    legend: list[tuple[str, str]]  # (fill, "direction result")
    peak: int
    total: int


def colours(series: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    good = [s for s in series if s[1] == "ok"]
    bad = [s for s in series if s[1] != "ok"]
    out = {s: _GOOD[i % len(_GOOD)] for i, s in enumerate(good)}
    out.update({s: _BAD[i % len(_BAD)] for i, s in enumerate(bad)})
    return out


def hourly(hours: Sequence[int], series: Mapping[tuple[str, str], Sequence[int]]) -> Chart:
    """The chart of ``series`` ((direction, result) -> messages per hour, aligned with
    ``hours``, hour starts in seconds UTC)."""
    names = sorted(series)
    fills = colours(names)
    slots = max(len(hours), 1)
    step = (WIDTH - LEFT) / slots
    totals = [sum(series[n][i] for n in names) for i in range(len(hours))]
    peak = max([*totals, 0])
    scale_top = max(peak, 1)
    plot = HEIGHT - BOTTOM - TOP
    bars: list[Rect] = []
    labels: list[tuple[float, str]] = []
    for i, hour in enumerate(hours):
        x = LEFT + i * step + 1
        stacked = 0
        start = dt.datetime.fromtimestamp(hour, dt.UTC)
        for name in names:
            n = series[name][i]
            if not n:
                continue
            h = plot * n / scale_top
            y = TOP + plot * (1 - (stacked + n) / scale_top)
            bars.append(Rect(round(x, 1), round(y, 1), round(step - 2, 1), round(h, 1),
                             fills[name],
                             f"{start:%H}:00 UTC: {n} {name[0]} {name[1]}"))
            stacked += n
        if i % 3 == 0:
            labels.append((round(x + (step - 2) / 2, 1), f"{start:%H}"))
    ticks = [(round(TOP + plot * (1 - f), 1), f"{scale_top * f:g}")
             for f in (0.0, 0.5, 1.0)]
    return Chart(WIDTH, HEIGHT, bars, ticks, labels,
                 [(fills[n], f"{n[0]} {n[1]}") for n in names], peak, sum(totals))
