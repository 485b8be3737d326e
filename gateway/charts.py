"""The console's charts, drawn on the server as SVG by pygal (no JavaScript and no asset from
anywhere else: its default tooltip script lives on a CDN, so ``js=[]``; the small inline config
it still writes is inert, and the page's Content-Security-Policy runs no script at all).

A chart is drawn from a ``Figure``: one series per name, one value per bucket of its ``Window``
(oldest first).  Bars stack counts; lines join figures such as latencies, with a gap where a
bucket has none.  Under each chart its ``totals`` say in words what the picture shows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Literal

import pygal
from markupsafe import Markup
from pygal.style import Style

from sql import Row

Series = dict[str, list[float | None]]

PALETTE = ("#4457d6", "#2f9e61", "#e3a008", "#d64545", "#0e9fb0", "#8b5cf6", "#ea7a2e", "#64748b")
WIDTH, HEIGHT = 640, 250
MAX_SERIES = 6  # more names than this are summed as "other"
OTHER, GREY = "other", "#9aa3b5"


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """A chart range: ``span_s`` seconds up to now, in buckets of ``bucket_s``."""

    key: str
    label: str
    span_s: int
    bucket_s: int
    tick_every: int  # buckets between two x-axis labels
    tick_format: str

    def starts(self, now: dt.datetime) -> list[int]:
        """Each bucket's start in epoch seconds, oldest first; the last holds ``now``."""
        last = int(now.timestamp()) // self.bucket_s * self.bucket_s
        count = self.span_s // self.bucket_s
        return [last - (count - 1 - i) * self.bucket_s for i in range(count)]

    def since(self, now: dt.datetime) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.starts(now)[0], dt.UTC)

    @property
    def per(self) -> str:
        minutes = self.bucket_s // 60
        if minutes % 60 == 0:
            return f"per {minutes // 60} hours" if minutes > 60 else "per hour"
        return f"per {minutes} minutes" if minutes > 1 else "per minute"


WINDOWS = {
    "1h": Window("1h", "last hour", 3600, 60, 10, "%H:%M"),
    "24h": Window("24h", "last 24 hours", 86_400, 900, 12, "%H:%M"),
    "7d": Window("7d", "last 7 days", 7 * 86_400, 7200, 12, "%a %d"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Figure:
    key: str  # the chart's element id
    title: str
    kind: Literal["bars", "lines"]
    unit: str  # of the values: "deliveries", "ms", …
    series: Series
    colors: Mapping[str, str] = dataclasses.field(default_factory=dict)
    peaks: bool = False  # the legend gives each series' peak (a level) rather than its sum
    note: str = ""  # a line under the legend: how the figures were made

    @property
    def colors_by_name(self) -> dict[str, str]:
        return {
            name: self.colors.get(name) or PALETTE[i % len(PALETTE)]
            for i, name in enumerate(self.series)
        }

    @property
    def totals(self) -> list[tuple[str, str, str]]:
        """(name, figure, color) of each series: its sum over the range (counts), or its
        highest value (levels, and lines).  Shown as the chart's legend, readable without the
        picture."""
        found = []
        for name, color in self.colors_by_name.items():
            present = [v for v in self.series[name] if v is not None]
            if self.peaks or self.kind == "lines":
                found.append((name, f"peak {number(max(present, default=0.0))}", color))
            else:
                found.append((name, number(sum(present)), color))
        return found


def colors_for(names: Iterable[str]) -> dict[str, str]:
    """One color per name, the same in every chart that shows it ("other" in grey)."""
    found = sorted(set(names) - {OTHER})
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(found)} | {OTHER: GREY}


def aligned(
    rows: Iterable[Row], starts: list[int], name: str, value: str, *, gaps: bool = False
) -> Series:
    """Rows of (``bucket``, ``name``, ``value``) as one series per name, a value per bucket:
    summed, and 0 where a bucket has none (or None with ``gaps``, for lines)."""
    index = {start: i for i, start in enumerate(starts)}
    series: Series = {}
    for row in rows:
        i = index.get(int(row["bucket"]))
        if i is None or row[value] is None:
            continue
        values = series.setdefault(str(row[name]), [None if gaps else 0.0] * len(starts))
        values[i] = (values[i] or 0.0) + float(row[value])
    return dict(sorted(series.items()))


def fold(series: Series, limit: int = MAX_SERIES) -> Series:
    """The ``limit - 1`` largest series, and the rest summed as "other" (bars only)."""
    if len(series) <= limit:
        return series
    ranked = sorted(series, key=lambda n: -sum(v or 0.0 for v in series[n]))
    kept = {name: series[name] for name in ranked[: limit - 1]}
    rest = [series[name] for name in ranked[limit - 1 :]]
    kept[OTHER] = [sum(v or 0.0 for v in column) for column in zip(*rest, strict=True)]
    return kept


def draw(figure: Figure, window: Window, now: dt.datetime) -> Markup:
    """The figure as inline SVG (its size follows the page; pygal escapes every label)."""
    colors = figure.colors_by_name
    style = Style(
        background="transparent",
        plot_background="transparent",
        foreground="#6b7489",
        foreground_strong="#172033",
        foreground_subtle="#e3e7ee",
        font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
        label_font_size=11,
        major_label_font_size=11,
        legend_font_size=12,
        opacity=".85",
        opacity_hover="1",
        colors=tuple(colors.values()) or PALETTE,
        guide_stroke_color="#eef1f5",
        major_guide_stroke_color="#eef1f5",
    )
    chart_type = pygal.StackedBar if figure.kind == "bars" else pygal.Line
    chart = chart_type(
        style=style,
        width=WIDTH,
        height=HEIGHT,
        js=[],
        disable_xml_declaration=True,
        explicit_size=False,
        show_legend=False,  # the page's legend says each series' total
        truncate_label=-1,
        show_minor_x_labels=False,
        x_labels_major_every=window.tick_every,
        show_x_guides=False,
        show_dots=figure.kind == "lines",
        dots_size=2.5,
        stroke_style={"width": 2},
        allow_interruptions=True,
        spacing=2,
        margin=8,
        min_scale=2,
        max_scale=5,
        no_data_text="no data in this range",
        value_formatter=number,
    )
    starts = window.starts(now)
    chart.x_labels = [
        dt.datetime.fromtimestamp(start, dt.UTC).strftime(window.tick_format) for start in starts
    ]
    if figure.kind == "bars" and figure.series:
        chart.y_labels = _count_ticks(figure.series)
    for name, values in figure.series.items():
        chart.add(name, values)
    return Markup(chart.render(is_unicode=True))


def _count_ticks(series: Series) -> list[int] | None:
    """Whole-number ticks for small stacked counts (pygal would draw 0.2, 0.4, …)."""
    columns = zip(*series.values(), strict=True)
    peak = max((sum(v or 0.0 for v in column) for column in columns), default=0.0)
    return list(range(int(peak) + 2)) if peak < 6 else None


def number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
