"""Figures, one module per chapter. Each figure is ``plot_x(result, ax=None) -> Axes``: it draws a result (a
dataclass of :mod:`kernelscope.experiments`) and computes nothing.

No global state: importing or drawing never chooses or changes matplotlib's backend. Without ``ax`` a figure is
drawn on a new :class:`matplotlib.figure.Figure` that belongs to no pyplot window (:func:`new_figure`); it is
rendered when it is saved (``ax.figure.savefig("f.png")``, Agg for PNG), whatever backend the process uses.
"""

from __future__ import annotations

from typing import Any

__all__ = ["new_figure", "new_axes"]


def new_figure(figsize: tuple[float, float] | None = None, **kwargs: Any):
    """A :class:`matplotlib.figure.Figure` outside pyplot (``kwargs``: ``layout=``, ``dpi=``...): nothing to close,
    no window, no backend chosen; ``fig.subplots(...)`` and ``fig.add_subplot(...)`` give its Axes."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, **kwargs)


def new_axes(ax=None, figsize: tuple[float, float] | None = None, projection: str | None = None):
    """``ax`` itself, or the Axes of a new figure (:func:`new_figure`) of ``figsize`` (``projection="3d"``...)."""
    if ax is not None:
        return ax
    return new_figure(figsize).add_subplot(projection=projection)
