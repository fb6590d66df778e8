"""The story's experiments: each returns a dataclass of results that the figures and the tour draw from.

- :mod:`.spirals` - learning the feature vector: the lecture's ``2 -> H (ReLU) -> 2 (embedding) -> K`` network
  trained on spirals (snapshots of the embedding and class vectors), the hidden-width sweep, the input-to-embedding
  interpolation, and a narrow deep leaky-ReLU net folding the plane (with its count of linear pieces).
- :mod:`.regimes` - where the kernel picture stops: analytic NNGP/NTK classifiers against finite networks of
  growing width in the NTK parameterisation (test accuracy, relative NTK change, kernel-target alignment).
"""

from __future__ import annotations

from .regimes import RegimeRow, RegimeTable, kernel_target_alignment, regime_table, train_ntk_net
from .spirals import (FoldingRun, SpiralRun, WidthSweep, count_linear_pieces, decision_regions, interpolation_grid,
                      spiral_width_sweep, train_folding_net, train_spiral, width_sweep)

__all__ = [
    "SpiralRun", "train_spiral", "decision_regions", "interpolation_grid",
    "WidthSweep", "spiral_width_sweep",
    "FoldingRun", "train_folding_net", "count_linear_pieces",
    "RegimeRow", "RegimeTable", "regime_table", "train_ntk_net", "kernel_target_alignment",
    "width_sweep",  # alias-for-merge
]
