"""The story's experiments: each returns a dataclass of results that the figures and the tour draw from.

Built only on the library (``linsys``, ``kernels``, ``nets``, ``regression``, ``empirical``, ``dynamics``, ``optim``);
one module per chapter:

- :mod:`.primer` - the chain rule on a computation graph, eigenvectors by power iteration (a shear, PCA of the
  digits), the second-derivative test, the sample mean and Monte-Carlo dual activations, a conditional probability.
- :mod:`.linsys` - systems of equations solved and taken apart into their four subspaces.
- :mod:`.learning` - norms and least-ℓp solutions, Hessians and descent on surfaces, step size against curvature,
  batch sizes, chapter 1 in weight space (Δw = J⁺(y − f₀), Gauss–Newton = NTK), lifts and influence maps.
- :mod:`.kernels` - feature maps against kernels, the ridge path, GP bands, random features.
- :mod:`.nets` - infinite-width kernels against random features and finite widths, angles, digits.
- :mod:`.lazy` - lazy training sweeps on the 1-D set and on digits.
- :mod:`.pathkernel` - the path kernel's step-size study and its distance to the NTKs.
- :mod:`.spirals` - learning the feature vector: the lecture's ``2 -> H (ReLU) -> 2 (embedding) -> K`` network
  trained on spirals (snapshots of the embedding and class vectors), the hidden-width sweep, the input-to-embedding
  interpolation, and a narrow deep leaky-ReLU net folding the plane (with its count of linear pieces).
- :mod:`.anatomy` - the lecture's pictures as numbers: class vectors, phases of training, layers as rotation ·
  scaling · rotation, the drag of one pulled point, exact linear pieces against width.
- :mod:`.architectures` - the MLP and the CNNs (Flatten, GlobalAvgPool) the digits and MNIST-1D compare.
- :mod:`.conv` - convolutional kernels on the 8×8 digits, and finite CNNs converging to the CNTK.
- :mod:`.mnist1d` - MNIST-1D: infinite-width MLP and CNN kernels against the paper's trained networks, learning
  curves, and what pooling buys.
- :mod:`.regimes` - where the kernel picture stops: analytic NNGP/NTK classifiers against finite networks of
  growing width in the NTK parameterisation (test accuracy, relative NTK change, kernel-target alignment).
"""

from __future__ import annotations

from .._lazy import exports

# Submodules and names are imported on first use: a chapter that needs one experiment loads only its module (and
# what that module is built on), not every experiment of the story.
_SUBMODULES = ("primer", "linsys", "learning", "kernels", "nets", "lazy", "pathkernel", "spirals", "anatomy",
               "regimes", "conv", "mnist1d", "architectures")
_NAMES = {
    **dict.fromkeys(("RegimeRow", "RegimeTable", "regime_table", "train_ntk_net"), "regimes"),
    **dict.fromkeys(("SpiralRun", "train_spiral", "decision_regions", "interpolation_grid", "WidthSweep",
                     "spiral_width_sweep", "FoldingRun", "train_folding_net", "count_linear_pieces"), "spirals"),
}

__all__ = [
    "primer", "linsys", "learning", "kernels", "nets", "lazy", "pathkernel", "spirals", "anatomy", "regimes", "conv",
    "mnist1d", "architectures",
    "SpiralRun", "train_spiral", "decision_regions", "interpolation_grid",
    "WidthSweep", "spiral_width_sweep",
    "FoldingRun", "train_folding_net", "count_linear_pieces",
    "RegimeRow", "RegimeTable", "regime_table", "train_ntk_net",
]


__getattr__, __dir__ = exports(__name__, _NAMES, _SUBMODULES)
