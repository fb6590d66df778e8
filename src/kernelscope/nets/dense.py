"""The fully connected layer ``Dense`` and the affine kernel map that Dense and Conv share.

Parameterisations of ``Dense(out, w_std, b_std, parameterization)`` (both exactly as in neural-tangents):

- ``'ntk'`` (default, THEORY.md §4): ``z = (w_std/√n_in) W x + b_std b`` with ``W, b ~ N(0, 1)``.
  Kernel: ``Σ' = w_std² Σ + b_std²``, ``Θ' = Σ' + w_std² Θ``. Width-independent NTK.
- ``'standard'``: ``z = W x + b`` with ``W ~ N(0, w_std²/n_in)``, ``b ~ N(0, b_std²)``.
  Same NNGP, but ``Θ' = n_in Σ + 1 + w_std² Θ`` (``Σ``, ``Θ`` the kernels *entering* the layer): the NTK grows
  with the declared widths ``n_in`` (it has no finite infinite-width limit, one reason the 'ntk' form exists).
"""

from __future__ import annotations

import torch

from .. import _scratch
from .._arrays import check_choice, check_int, check_nonnegative, check_positive
from . import finite as _finite
from .engine import Layer
from .finite_conv import ChannelsLast
from .state import KState, Pending

__all__ = ["Dense", "affine_kernel"]

_NOTHING_PENDING = Pending()


def affine_kernel(k: KState, w_std: float, b_std: float, parameterization: str, out: int, fan_in: int,
                  scale: float = 1.0) -> KState:
    """The kernel map of ``z = (w_std/√fan_in) W x + b_std b`` (THEORY.md §4; module docstring for 'standard'):
    ``Σ' = w² Σ + b²`` and ``Θ' = Σ' + w² Θ`` ('ntk') or ``Θ' = fan_in Σ + 1 + w² Θ`` ('standard'); ``out``
    channels come out. Dense layers call it with ``Σ`` as it comes; convolutions with ``Σ`` summed over the
    filter, and ``scale = 1/|F|`` (the state's kernels and variances are ``1/scale`` times Σ, Θ: the average's
    division is fused into these passes). An activation's pending multipliers (:class:`Pending`) are fused too."""
    w2, b2 = w_std**2 * scale, b_std**2
    if parameterization == "standard":  # Θ' = n_in Σ + 1 + w² Θ, with the incoming Σ and Θ
        k = k.materialized()
        if k.ntk is None:
            ntk = torch.mul(k.nngp, float(fan_in) * scale).add_(1.0)
        else:
            ntk = k.ntk.mul_(w2).add_(k.nngp, alpha=float(fan_in) * scale).add_(1.0)
    else:
        k = k.writable()
    p = _NOTHING_PENDING if k.pending is None else k.pending
    b2_t = k.nngp.new_tensor(b2)
    if p.scale1 is not None:  # Σ' = b² + w² (Σ·s1)·s2: the activation's scale fused in (2 passes, not 4)
        nngp = torch.addcmul(b2_t, k.nngp.mul_(p.scale1 * w2), p.scale2, out=k.nngp)
    else:
        nngp = torch.add(b2_t, k.nngp, alpha=w2, out=k.nngp)  # Σ' = w² Σ + b², in the state's buffer
    if parameterization == "ntk":  # Θ' = Σ' + w² Θ (times the activation's Σ̇, fused in)
        if k.ntk is None:
            ntk = _scratch.empty_like(nngp).copy_(nngp)
        elif p.ntk_factor is not None:
            ntk = torch.addcmul(nngp, k.ntk, p.ntk_factor, value=w2 * p.ntk_scale, out=k.ntk)
            if k.donated:  # the activation's factor, used up
                _scratch.release(p.ntk_factor)
        else:
            ntk = torch.add(nngp, k.ntk, alpha=w2, out=k.ntk)
    if k.diag:
        return k.replace(nngp=nngp, ntk=ntk, width=out, pending=None)
    v1, v2 = k.map_vars(("affine", w2, b2), lambda v: v * w2 + b2)
    return k.replace(nngp=nngp, ntk=ntk, var1=v1, var2=v2, width=out, pending=None)


class Dense(Layer):
    """Fully connected layer ``out`` channels; see the module docstring for both parameterisations.

    Parameters
    ----------
    out : number of output channels (the width when the network is made finite).
    w_std : weight scale σ_w > 0.   b_std : bias scale σ_b >= 0.
    parameterization : ``'ntk'`` (default; THEORY.md §4) or ``'standard'``.
    """

    def __init__(self, out: int, w_std: float = 1.0, b_std: float = 0.0, parameterization: str = "ntk"):
        self.out = check_int(out, "out", minimum=1)
        self.w_std = check_positive(w_std, "w_std")
        self.b_std = check_nonnegative(b_std, "b_std")
        self.parameterization = check_choice(parameterization, "parameterization", _finite.PARAMETERIZATIONS)

    def __repr__(self) -> str:
        return f"Dense({self.out}, w_std={self.w_std}, b_std={self.b_std}, parameterization={self.parameterization!r})"

    def dense_layers(self):
        return [self]

    def kernel_fn(self, k: KState) -> KState:
        return affine_kernel(k, self.w_std, self.b_std, self.parameterization, self.out, k.width)

    def build(self, in_width, gen, hidden, readout, dtype):
        n_out = self.out if (hidden is None or self is readout) else hidden
        if isinstance(in_width, tuple):  # (C, *S): acts on the channels at each position, as neural-tangents
            return ChannelsLast(_finite.DenseModule(in_width[0], n_out, self.w_std, self.b_std,
                                                    self.parameterization, gen, dtype)), (n_out,) + in_width[1:]
        return _finite.DenseModule(int(in_width), n_out, self.w_std, self.b_std, self.parameterization, gen,
                                   dtype), n_out
