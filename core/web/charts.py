"""Server-rendered SVG bar charts of a daily series (no chart library, nothing for the browser to fetch)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

WIDTH = 640
HEIGHT = 180
PAD_LEFT = 56
PAD_BOTTOM = 22
PAD_TOP = 10


@dataclass(frozen=True, slots=True)
class Bar:
    """One day's bar: its value exactly as the API reports it, and where it is drawn."""

    day: date
    value: Decimal
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Chart:
    """A titled daily series laid out for the ``_chart.html`` template."""

    metric: str
    title: str
    unit: str
    bars: tuple[Bar, ...]
    max_value: Decimal
    total: Decimal
    width: int = WIDTH
    height: int = HEIGHT
    pad_left: int = PAD_LEFT
    baseline: int = HEIGHT - PAD_BOTTOM

    @property
    def total_text(self) -> str:
        """The total as people read it: money to the cent, counts without trailing zeros."""
        return number_text(self.total, money=bool(self.unit))

    @property
    def max_text(self) -> str:
        return number_text(self.max_value, money=bool(self.unit))

    @property
    def first_day(self) -> date | None:
        return self.bars[0].day if self.bars else None

    @property
    def last_day(self) -> date | None:
        return self.bars[-1].day if self.bars else None


def number_text(value: Decimal, *, money: bool) -> str:
    """``1,234.50`` for money, ``1,234`` or ``12.5`` for counts."""
    if money:
        return f"{value:,.2f}"
    text = f"{value.normalize():,f}"
    return text


def bar_chart(metric: str, title: str, unit: str, points: list[tuple[date, Decimal]]) -> Chart:
    """Lay out ``points`` (one per day, in order) as bars scaled to the largest value."""
    top = max((value for _, value in points), default=Decimal(0))
    plot_w = WIDTH - PAD_LEFT - 8
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(len(points), 1)
    bars = []
    for i, (day, value) in enumerate(points):
        height = float(value / top) * plot_h if top > 0 else 0.0
        bars.append(
            Bar(
                day=day,
                value=value,
                x=round(PAD_LEFT + i * step + step * 0.1, 2),
                y=round(HEIGHT - PAD_BOTTOM - height, 2),
                width=round(step * 0.8, 2),
                height=round(height, 2),
            )
        )
    return Chart(metric, title, unit, tuple(bars), top, sum((v for _, v in points), Decimal(0)))
