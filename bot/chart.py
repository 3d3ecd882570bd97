"""The chart of paid amounts per day, as a PNG. matplotlib is imported inside `draw`, never at
start-up (it costs ~40 MB and a second or more to import), and `draw` runs in a worker thread
so the event loop keeps answering while it renders."""

from __future__ import annotations

import asyncio
import io

from bot.core import PaidPerDay

WIDTH, DPI = 8.0, 100  # inches and dots per inch: 800 pixels wide


def draw(per_day: PaidPerDay, title: str) -> bytes:
    """One line per currency (its own axis when there are several: amounts in tenge and in
    lira do not share a scale), in major units; days on the x axis."""
    import matplotlib  # only here: when a chart is asked for

    matplotlib.use("Agg")  # no display: render to memory
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    currencies = list(per_day.amounts) or [""]
    figure = Figure(figsize=(WIDTH, 2.5 + 2.0 * len(currencies)), dpi=DPI, layout="constrained")
    axes = figure.subplots(len(currencies), 1, sharex=True, squeeze=False)[:, 0]
    for ax, currency in zip(axes, currencies, strict=True):
        amounts = per_day.amounts.get(currency, ())
        # bar heights only: the money itself stays in integer minor units
        heights = [float(m.to_decimal()) for m in amounts] or [0.0] * len(per_day.days)
        ax.bar(list(per_day.days), heights, color="#3b7dd8", width=0.8)
        ax.set_ylabel(currency)
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[0].set_title(title)
    axes[-1].xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))  # the same in every language
    for label in axes[-1].get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


async def chart_png(per_day: PaidPerDay, title: str) -> bytes:
    return await asyncio.to_thread(draw, per_day, title)
