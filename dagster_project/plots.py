"""Small PNG charts for asset metadata (histograms, curves), embedded as markdown images.

Drawn with matplotlib's Agg canvas on a fresh ``Figure`` (no pyplot, no global state), so it
is safe in any run worker and needs no display. matplotlib is imported on first use, which
keeps loading the code location fast.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SIZE = (6.0, 3.2)
DPI = 90


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def histogram_png(values: Sequence[float] | np.ndarray | Mapping[float, int], *,
                  bins: int | Sequence[float] = 30, title: str = "", xlabel: str = "",
                  ylabel: str = "count", log_y: bool = False, log_x: bool = False,
                  size: tuple[float, float] = SIZE) -> bytes:
    """A histogram as PNG bytes.

    ``values``: raw values (binned into ``bins``), or a mapping ``{value: count}`` of counts
    already made (one bar per value, as for cluster sizes; integer values get integer ticks).
    ``log_x`` (positive values only) bins into ``bins`` log-spaced bins instead, for
    heavy-tailed data such as cluster sizes on a large crawl.
    """
    fig = _figure(size)
    ax = fig.add_subplot()
    if log_x:
        if isinstance(values, Mapping):
            data = np.asarray([float(k) for k in values], dtype=float)
            weights = np.asarray([float(v) for v in values.values()], dtype=float)
        else:
            data = np.asarray(values, dtype=float)
            weights = np.ones_like(data)
        keep = np.isfinite(data) & (data > 0)
        data, weights = data[keep], weights[keep]
        if data.size:
            lo, hi = data.min(), max(data.max(), data.min() * 1.01)
            edges = np.geomspace(lo, hi * 1.0001, (bins if isinstance(bins, int) else 30) + 1)
            ax.hist(data, bins=edges, weights=weights, color="#4c72b0")
            ax.set_xscale("log")
    elif isinstance(values, Mapping):
        items = sorted(values.items())
        xs = [float(k) for k, _ in items]
        counts = [int(v) for _, v in items]
        if xs:
            ax.bar(xs, counts, width=0.8 if all(x.is_integer() for x in xs) else None,
                   color="#4c72b0")
            if all(x.is_integer() for x in xs) and len(xs) <= 20:
                ax.set_xticks(xs, [str(int(x)) for x in xs])
    else:
        data = np.asarray(values, dtype=float)
        data = data[np.isfinite(data)]
        if data.size:
            ax.hist(data, bins=bins, color="#4c72b0")
    if not ax.has_data():
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    elif log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _png(fig)


def line_png(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
             title: str = "", xlabel: str = "", ylabel: str = "", log_y: bool = False,
             size: tuple[float, float] = SIZE) -> bytes:
    """Curves (for example train and validation loss) as PNG bytes: ``{label: (x, y)}``."""
    fig = _figure(size)
    ax = fig.add_subplot()
    for label, (x, y) in series.items():
        ax.plot(list(x), list(y), label=label)
    if not ax.has_data():
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    else:
        if log_y:
            ax.set_yscale("log")
        if len(series) > 1:
            ax.legend()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _png(fig)


def md_image(png: bytes, alt: str = "chart") -> dg.MetadataValue:
    """PNG bytes as a markdown metadata value (a base64 data URI the UI renders inline)."""
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")
