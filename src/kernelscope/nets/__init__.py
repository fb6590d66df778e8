"""Infinite-width networks: the NNGP and NTK of a network described once, and its finite random counterpart.

    from kernelscope import nets
    net = nets.serial(nets.Dense(512, w_std=1.5, b_std=0.05), nets.ReLU(), nets.Dense(1, w_std=1.5, b_std=0.05))
    k = net.kernel(X)                  # k.nngp, k.ntk: (N, N), THEORY.md §4
    model = net.finite(seed=0)         # torch.nn.Module, same architecture and parameterisation
    mc = nets.monte_carlo(net, X, width=256, n_samples=100, seed=0)   # estimates with standard errors
"""

from .dual import abrelu_dual, erf_dual, gauss_hermite_dual
from .layers import (
                     GELU,
                     ABReLU,
                     Dense,
                     Elementwise,
                     Erf,
                     FanInSum,
                     FanOut,
                     Identity,
                     KState,
                     Layer,
                     LeakyReLU,
                     NetKernel,
                     Parallel,
                     ReLU,
                     Serial,
                     Sigmoid,
                     Tanh,
                     parallel,
                     serial,
)
from .montecarlo import MonteCarloKernel, empirical_ntk, monte_carlo

__all__ = ["Dense", "ReLU", "LeakyReLU", "ABReLU", "Erf", "GELU", "Tanh", "Sigmoid", "Identity", "Elementwise",
           "serial", "parallel", "FanOut", "FanInSum", "Layer", "Serial", "Parallel", "NetKernel", "KState",
           "monte_carlo", "MonteCarloKernel", "empirical_ntk", "abrelu_dual", "erf_dual", "gauss_hermite_dual"]
