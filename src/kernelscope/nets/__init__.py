"""Infinite-width networks: the NNGP and NTK of a network described once, and its finite random counterpart.

    from kernelscope import nets
    net = nets.serial(nets.Dense(512, w_std=1.5, b_std=0.05), nets.ReLU(), nets.Dense(1, w_std=1.5, b_std=0.05))
    k = net.kernel(X)                  # k.nngp, k.ntk: (N, N), THEORY.md §4
    model = net.finite(seed=0)         # torch.nn.Module, same architecture and parameterisation
    mc = nets.monte_carlo(net, X, width=256, n_samples=100, seed=0)   # estimates with standard errors

Convolutional networks take (N, C, L) or (N, C, H, W) inputs (torch layout):

    cnn = nets.serial(nets.Conv(256, 3, padding="same"), nets.ReLU(), nets.Conv(256, 3, padding="same"),
                      nets.ReLU(), nets.GlobalAvgPool(), nets.Dense(1))
    k = cnn.kernel(images)             # CNN-GP and CNTK, (N, N)

A network that declares its per-example input shape (``serial(..., input_shape=(1, 40))`` or a first
``Reshape((1, 40))``) also takes flat rows (N, 40), as scikit-learn estimators pass them; every network is
scikit-learn-parameter-aware (``net.set_params(w_std=1.4)``, ``layers__0__w_std``; :mod:`.params`).

Modules, each importing only those before it (as neural-tangents' ``stax``): ``state`` (the immutable kernel
state), ``params`` (the parameter protocol), ``engine`` (the :class:`Layer` base, its tiles and threads), ``dense``,
``conv``, ``activations``, ``normalization``, ``shape``, ``combinators``; ``finite`` and ``finite_conv`` (the finite
modules), ``montecarlo``, and ``convert`` (``from_torch``: the network of a torch model's architecture).
"""

from .._lazy import exports

# name -> the module that defines it, imported on first use: `import kernelscope.nets.finite` (the finite
# modules training needs) does not load the infinite-width engine.
_NAMES = {
    **dict.fromkeys(("abrelu_dual", "erf_dual", "exp_dual", "gauss_hermite_dual", "gaussian_dual", "gelu_dual",
                     "polynomial_dual", "sign_dual", "sin_dual"), "kernelscope.duals"),
    **dict.fromkeys(("GELU", "ABReLU", "Abs", "Cos", "Elementwise", "Erf", "Exp", "Gaussian", "Hermite", "Identity",
                     "LeakyReLU", "Monomial", "Polynomial", "Rbf", "ReLU", "Sigmoid", "Sign", "Sin", "Tanh"),
                    "activations"),
    **dict.fromkeys(("FanInConcat", "FanInProd", "FanInSum", "FanOut", "Parallel", "Serial", "parallel", "serial"),
                    "combinators"),
    **dict.fromkeys(("AvgPool", "Conv", "Flatten", "GlobalAvgPool"), "conv"),
    "Dense": "dense",
    "from_torch": "convert",
    **dict.fromkeys(("Layer", "NetKernel"), "engine"),
    **dict.fromkeys(("MonteCarloKernel", "empirical_ntk", "monte_carlo"), "montecarlo"),
    "LayerNorm": "normalization",
    "Reshape": "shape",
    "KState": "state",
}

__all__ = [
    "GELU",
    "ABReLU",
    "Abs",
    "AvgPool",
    "Conv",
    "Cos",
    "Dense",
    "Elementwise",
    "Erf",
    "Exp",
    "FanInConcat",
    "FanInProd",
    "FanInSum",
    "FanOut",
    "Flatten",
    "Gaussian",
    "GlobalAvgPool",
    "Hermite",
    "Identity",
    "KState",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Monomial",
    "MonteCarloKernel",
    "NetKernel",
    "Parallel",
    "Polynomial",
    "Rbf",
    "ReLU",
    "Reshape",
    "Serial",
    "Sigmoid",
    "Sign",
    "Sin",
    "Tanh",
    "abrelu_dual",
    "empirical_ntk",
    "erf_dual",
    "exp_dual",
    "from_torch",
    "gauss_hermite_dual",
    "gaussian_dual",
    "gelu_dual",
    "monte_carlo",
    "parallel",
    "polynomial_dual",
    "serial",
    "sign_dual",
    "sin_dual",
]
__getattr__, __dir__ = exports(__name__, _NAMES)
