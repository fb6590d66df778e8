"""The inputs of the empirical kernels: validated, in the model's dtype and on its device."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .._arrays import ArrayKind, ValidationError, as_tensor, check_magnitude
from .._model import materialize, model_device, model_dtype

__all__ = ["inputs"]


def inputs(model: nn.Module, x1: Any, x2: Any) -> tuple[torch.Tensor, torch.Tensor | None, ArrayKind]:
    """``x1`` and ``x2`` (or None) as tensors in ``model``'s dtype and on its device (integer token ids stay
    integers), checked to hold examples of one shape whose squares cannot overflow; a lazily built model draws its
    parameters here. Also returns how the caller gave them (:class:`~kernelscope._arrays.ArrayKind`: NumPy in,
    NumPy out)."""
    kind = ArrayKind.of(x1, x2)
    # Integer inputs (token ids of an nn.Embedding) stay integers: the NTK differentiates with respect to the
    # parameters, never the inputs. Everything else goes to the model's floating dtype.
    integer = _is_integer(x1)
    t1 = as_tensor(x1, "x1", dtype=torch.int64 if integer else None)
    if t1.ndim == 0:
        raise ValidationError("x1", "an array of examples (N, ...)", "a scalar")
    # the first layer's gradients hold the inputs: the NTK sums their products x·x' over an example's entries
    features = int(np.prod(t1.shape[1:])) if t1.ndim > 1 else 1
    check_magnitude(t1, "x1", features=features)
    materialize(model, t1)  # a lazily built model draws its parameters for these inputs
    dtype, device = (torch.int64 if integer else model_dtype(model)), model_device(model)
    t1 = t1.to(dtype=dtype, device=device)
    t2 = None
    if x2 is not None:
        t2 = as_tensor(x2, "x2", dtype=dtype, device=device)
        if tuple(t2.shape[1:]) != tuple(t1.shape[1:]):
            raise ValidationError("x2", f"examples of shape {tuple(t1.shape[1:])} (like x1)",
                                  f"shape {tuple(t2.shape)}")
        check_magnitude(t2, "x2", features=features)
    return t1, t2, kind


def _is_integer(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)
    return isinstance(x, np.ndarray) and x.dtype.kind in "iu"


