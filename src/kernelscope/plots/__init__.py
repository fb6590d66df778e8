"""Figures, one module per chapter. Each figure is ``plot_x(result, ax=None) -> Axes``: it draws results and
computes nothing heavy. Uses matplotlib's non-interactive Agg backend unless one was chosen already."""

from __future__ import annotations

import matplotlib

if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
    try:
        matplotlib.use("Agg")
    except Exception:  # pragma: no cover
        pass
