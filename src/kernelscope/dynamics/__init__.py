"""Training dynamics: one training loop, lazy training of wide networks, Domingos' path kernel (THEORY.md §5–6).

- :func:`train` - the training loop of the library (losses, optimisers, divergence detection); its settings
  checked once in a :class:`TrainOptions`.
- :func:`mlp` - small perceptrons in the NTK parameterisation (:func:`kernelscope.nets.finite.mlp`).
- :func:`train_lazy`, :func:`lazy_width_sweep`, :func:`ntk_convergence` - a network and its linearisation
  trained side by side; how the weights, the NTK and the predictions move as the width grows.
- :func:`scaled`, :func:`lazy_alpha_sweep`, :func:`curvature_ratio` - why: Chizat & Bach's output scale α
  (``α·(g(w) − g(w₀))`` trained on ``L/α²``) and the ratio ``‖∇²f‖/‖∇f‖²`` that sets how lazy training is.
- :func:`path_kernel` - any model trained by gradient descent as a kernel machine over its training points;
  :func:`gram_properties` - the path kernel (or any kernel matrix) examined as a kernel: symmetry, spectrum.
"""

from ..nets.finite import ACTIVATIONS, mlp
from .lazy import (
                   AlphaSweep,
                   CurvatureRatio,
                   LazyRun,
                   LazySweep,
                   NTKConvergence,
                   Scaled,
                   curvature_ratio,
                   lazy_alpha_sweep,
                   lazy_width_sweep,
                   ntk_convergence,
                   scaled,
                   stable_lr,
                   train_lazy,
)
from .pathkernel import (
    GramProperties,
    PathKernelResult,
    block_matrix,
    gram_properties,
    layer_shares,
    path_kernel,
    top_contributions,
)
from .train import LOSSES, OPTIMIZERS, TrainOptions, TrainResult, loss_value, train

__all__ = ["train", "TrainOptions", "TrainResult", "loss_value", "LOSSES", "OPTIMIZERS", "mlp", "ACTIVATIONS",
           "train_lazy", "lazy_width_sweep", "LazySweep", "LazyRun", "stable_lr", "ntk_convergence",
           "NTKConvergence", "scaled", "Scaled", "lazy_alpha_sweep", "AlphaSweep", "curvature_ratio",
           "CurvatureRatio", "path_kernel", "PathKernelResult", "top_contributions", "layer_shares",
           "gram_properties", "GramProperties", "block_matrix"]
