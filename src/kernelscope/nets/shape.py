"""The shape of a network's inputs: ``Reshape`` (and ``serial(..., input_shape=...)``, which is the same).

scikit-learn passes rows, (n_samples, n_features). A convolutional network needs positions, (N, C, L) or
(N, C, H, W). A network that declares its per-example input shape takes both::

    cnn = nets.serial(nets.Conv(64, 5, padding="circular"), nets.ReLU(), nets.GlobalAvgPool(), nets.Dense(1),
                      input_shape=(1, 40))          # or nets.serial(nets.Reshape((1, 40)), nets.Conv(...), ...)
    cnn.kernel(X)                                   # X (N, 40): seen as (N, 1, 40), torch's order (C, then L)
    ks.KernelClassifier(cnn).fit(X, y)

The reshaping happens to the inputs, before the first Gram matrix (:meth:`kernelscope.nets.Layer.kernel`): the
per-position covariances a convolution needs cannot be recovered from the Gram matrix of flat rows. So a Reshape
(or a serial's ``input_shape``) belongs at the start of a network; elsewhere it is refused with that reason. The
finite network (``net.finite()``) reshapes its (N, C·L) inputs the same way, with ``torch.reshape``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._arrays import ValidationError, check_int
from .engine import Layer
from .state import KState

__all__ = ["Reshape", "check_shape"]


def check_shape(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """A per-example input shape: 1 to 3 positive ints, ``(d,)``, ``(C, L)`` or ``(C, H, W)``."""
    values = (shape,) if isinstance(shape, int) else tuple(shape) if isinstance(shape, (tuple, list)) else None
    if values is None or not 1 <= len(values) <= 3:
        raise ValidationError(name, "a per-example shape of 1 to 3 positive ints: (d,), (C, L) or (C, H, W)",
                              repr(shape), "For signals of length 40 with one channel: (1, 40).")
    return tuple(check_int(v, name, minimum=1) for v in values)


class Reshape(Layer):
    """The network's inputs as examples of ``shape`` (torch's order): rows of ``prod(shape)`` numbers are
    reshaped, inputs of that shape already are taken as they are. Only as the first layer (module docstring).

    Parameters
    ----------
    shape : (d,), (C, L) or (C, H, W).
    """

    def __init__(self, shape: Any):
        self.shape = check_shape(shape)

    def __repr__(self) -> str:
        return f"Reshape({self.shape})"

    def declared_input_shape(self) -> tuple[int, ...]:
        return self.shape

    def kernel_fn(self, k: KState) -> KState:
        # Layer.kernel has reshaped the inputs already: here the state must be that of the inputs themselves.
        got = (k.width,) + tuple(k.spatial)
        if got != self.shape or k.ntk is not None:
            raise ValidationError("Reshape", "to be the first layer of the network (it reshapes the inputs)",
                                  f"a Reshape{self.shape} after layers giving shape {got}",
                                  "Put it first, or declare serial(..., input_shape=...).")
        return k

    def build(self, in_width, gen, hidden, readout, dtype):
        out = self.shape if len(self.shape) > 1 else self.shape[0]
        if in_width == out:
            return torch.nn.Identity(), out
        if isinstance(in_width, int) and in_width == math.prod(self.shape):
            return torch.nn.Unflatten(1, self.shape), out
        raise ValidationError("Reshape", f"inputs of {math.prod(self.shape)} features or of shape {self.shape}",
                              f"inputs of shape {in_width}")
