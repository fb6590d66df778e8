"""Training dynamics: lazy training of wide networks and Domingos' path kernel (THEORY.md §5–6).

- :func:`mlp` - small perceptrons in the NTK parameterisation (parameters in ``nn.Linear``).
- :func:`train_lazy`, :func:`width_sweep`, :func:`ntk_convergence` - a network and its linearisation trained
  side by side; how the weights, the NTK and the predictions move as the width grows.
- :func:`path_kernel` - any model trained by gradient descent as a kernel machine over its training points.
"""

from .lazy import LazyRun, NTKConvergence, fit_slope, ntk_convergence, stable_lr, train_lazy, width_sweep
from .models import ACTIVATIONS, NTKDense, mlp
from .pathkernel import LOSSES, PathKernelResult, path_kernel, top_contributions

__all__ = ["mlp", "NTKDense", "ACTIVATIONS", "train_lazy", "width_sweep", "LazyRun", "fit_slope", "stable_lr",
           "ntk_convergence", "NTKConvergence", "path_kernel", "PathKernelResult", "top_contributions", "LOSSES"]
