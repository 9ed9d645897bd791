"""Chart geometry for the dashboard's server-made SVG: pure functions, integers and Decimals.

The templates draw what these compute; nothing is fetched or scripted in the browser. Every
chart is also given as a table beside it, for screen readers and for copying figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

WIDTH = 640
LEFT = 112
RIGHT = 16
TOP = 12
BAR_ROW = 30


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    label: str
    value: str
    label_x: int
    label_y: int
    show_label: bool = True
    warn: bool = False


@dataclass(frozen=True, slots=True)
class Tick:
    y: int
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[Tick]
    baseline: int
    plot_left: int
    plot_right: int

    @property
    def empty(self) -> bool:
        return not self.bars


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10ⁿ at or above ``value`` (for a tidy axis)."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def columns(
    items: list[tuple[str, int]],
    *,
    value_text: list[str],
    tick_text: list[str] | None = None,
    height: int = 220,
) -> Chart:
    """Vertical bars for whole-number values (amounts per day, counts per bucket).

    ``tick_text`` gives the words for the axis at 0, half and the top of the scale, computed by
    the caller from :func:`scale_top` so that numbers follow the reader's language.
    """
    bottom = height - 34
    if not items:
        return Chart(WIDTH, height, [], [], bottom, LEFT, WIDTH - RIGHT)
    top_value = scale_top([v for _, v in items])
    plot = WIDTH - LEFT - RIGHT
    slot = plot // len(items)
    gap = max(2, slot // 5)
    every = max(1, -(-len(items) // 6))  # at most about six labels: readable on a phone
    bars = []
    for i, ((label, value), shown) in enumerate(zip(items, value_text, strict=True)):
        h = (bottom - TOP) * value // top_value
        x = LEFT + i * slot + gap // 2
        bars.append(
            Bar(
                x=x,
                y=bottom - h,
                width=max(1, slot - gap),
                height=h,
                label=label,
                value=shown,
                label_x=x + (slot - gap) // 2,
                label_y=bottom + 16,
                show_label=(len(items) - 1 - i) % every == 0,
            )
        )
    words = tick_text or ["0", str(top_value // 2), str(top_value)]
    ticks = [Tick(bottom, words[0]), Tick(TOP, words[2])]
    if top_value % 2 == 0:
        ticks.insert(1, Tick(bottom - (bottom - TOP) // 2, words[1]))
    return Chart(WIDTH, height, bars, ticks, bottom, LEFT, WIDTH - RIGHT)


def scale_top(values: list[int]) -> int:
    return _nice_ceiling(max([*values, 1]))


def shares(
    items: list[tuple[str, Decimal | None]],
    *,
    value_text: list[str],
    scale: Decimal = Decimal(1),
    warn_below: Decimal | None = None,
    warn_above: Decimal | None = None,
    width: int = 440,
    label_width: int = 120,
) -> Chart:
    """Horizontal bars for ratios in ``[0, scale]`` (leakage, benchmark compliance), one row each."""
    height = TOP * 2 + BAR_ROW * len(items) + 8
    plot = width - label_width - RIGHT - 84
    bars = []
    for i, ((label, ratio), shown) in enumerate(zip(items, value_text, strict=True)):
        clamped = min(max(ratio or Decimal(0), Decimal(0)), scale)
        w = int((Decimal(plot) * clamped / scale).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        y = TOP + i * BAR_ROW
        warn = ratio is not None and (
            (warn_below is not None and ratio < warn_below) or (warn_above is not None and ratio > warn_above)
        )
        bars.append(
            Bar(
                x=label_width,
                y=y + 4,
                width=w,
                height=BAR_ROW - 10,
                label=label,
                value=shown,
                label_x=label_width + w + 6,
                label_y=y + BAR_ROW // 2 + 4,
                warn=warn,
            )
        )
    return Chart(width, height, bars, [], height - TOP, label_width, label_width + plot)
