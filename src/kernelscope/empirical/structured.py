"""'structured': the empirical NTK from per-layer factors, chunk by chunk, never the N×P Jacobian.

:func:`layer_features` captures a chunk of examples (:mod:`kernelscope.empirical.capture`: one forward pass with
``ε`` on the factorised layers' outputs, one backward pass batched over the outputs, and per-example
vector-Jacobian products of the modules whose parameters do not factorise) and turns it into the features of
:mod:`kernelscope.empirical.features`. :func:`ntk_structured` fills the kernel block by block: the features of x2
are kept when the plan allows it (:mod:`kernelscope.empirical.memory`), else recomputed for every block of rows;
for k(X, X) only the blocks on and above the diagonal are computed, and mirrored.
"""

from __future__ import annotations

import torch
from torch import nn

from .._model import trainable_parameters
from .capture import Plan, capture, module_jacobian, plan
from .features import LayerFeatures, features, structured_gram

__all__ = ["layer_features", "ntk_structured", "fill_blocks"]


def layer_features(model: nn.Module, x: torch.Tensor, n_out: int, params: dict[str, torch.Tensor] | None = None,
                   *, trace: bool = False, partners: int | None = None, the_plan: Plan | None = None
                   ) -> list[LayerFeatures]:
    """The NTK features of the examples ``x`` (n, ...): per factorised layer its ``LinearFeatures`` (inputs and
    output gradients) or a convolution's per-example gradients (``GradientFeatures``, or patches and
    output gradients where that is cheaper, :func:`kernelscope.empirical.features.conv_form`), then the
    per-example gradients of the parameters that do not factorise.

    ``params`` replaces the trainable weights (``functional_call``; default: the model's own); ``trace`` and
    ``partners`` (how many examples each is paired with, default n) choose the cheaper form of each convolution;
    ``the_plan`` (:func:`kernelscope.empirical.capture.plan`) is read off the model when not given.
    """
    params = trainable_parameters(model) if params is None else params
    the_plan = plan(model, x, params) if the_plan is None else the_plan
    n = x.shape[0]
    cap = capture(model, x, n_out, params, the_plan)
    grads = {}
    for name, names in the_plan.fallback.items():
        calls = cap.modules[name]
        if calls:
            grads[name] = module_jacobian(model, name, names, params, calls, n, n_out)
        else:  # not called for these examples: no gradient
            size = sum(the_plan.sizes[p] for p in names)
            grads[name] = x.new_zeros((n, n_out, size), dtype=next(iter(params.values())).dtype)
    return features(cap, the_plan, grads, n, n_out, trace, n if partners is None else partners)


def _rows(feats: list[LayerFeatures], sl: slice) -> list[LayerFeatures]:
    return [f.rows(sl) for f in feats]


def _gather(feats, x: torch.Tensor, chunk: int) -> list[LayerFeatures]:
    """The features of all of ``x``, computed ``chunk`` examples at a time and written into one buffer per layer
    (no concatenation: the peak is the whole plus one chunk)."""
    first = feats(x[:chunk])
    n = x.shape[0]
    if n <= chunk:
        return first
    out = [f.empty(n) for f in first]
    for f, part in zip(out, first):
        f.put(0, part)
    del first
    for i in range(chunk, n, chunk):
        for f, part in zip(out, feats(x[i:i + chunk])):
            f.put(i, part)
    return out


def fill_blocks(K: torch.Tensor, symmetric: bool, rows: int, block) -> torch.Tensor:
    """Fill the kernel ``K`` (N1, N2) or (N1, N2, O, O) by row blocks: ``block(i0, i1, j0, out)`` adds the
    block of rows i0:i1 and columns j0: to ``out`` (zeros). ``symmetric``: only the columns from i0 on are computed
    and the block below the diagonal is the transpose (``K[j, i, o, p] = K[i, j, p, o]``)."""
    n1, n2 = K.shape[:2]
    for i0 in range(0, n1, rows):
        i1 = min(n1, i0 + rows)
        j0 = i0 if symmetric else 0
        out = K[i0:i1, j0:].zero_()
        block(i0, i1, j0, out)
        if symmetric and i1 < n2:
            below = out[:, i1 - i0:]  # (rows, N2 − i1): rows i0:i1, columns i1:
            K[i1:, i0:i1] = below.transpose(0, 1) if K.ndim == 2 else below.permute(1, 0, 3, 2)
    return K


def ntk_structured(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, n_out: int, trace: bool, chunk: int,
                   keep: bool, the_plan: Plan, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Θ (N1, N2) with ``trace`` (pass it for O = 1), else (N1, N2, O, O), from the features of chunks of ``chunk``
    examples; the features of x2 kept (``keep``) or recomputed per block of rows."""
    xs2 = x1 if x2 is None else x2
    n1, n2 = x1.shape[0], xs2.shape[0]

    def feats(x):
        return layer_features(model, x, n_out, params, trace=trace, partners=n2, the_plan=the_plan)

    K = x1.new_empty((n1, n2) if trace else (n1, n2, n_out, n_out), dtype=next(iter(params.values())).dtype)
    if keep:
        F2 = _gather(feats, xs2, chunk)
        # k(X, X): blocks of about n/8 rows on and above the diagonal (56% of the work, GEMMs still large)
        rows = chunk if x2 is not None else max(8, -(-n1 // 8))

        def block(i0, i1, j0, out):
            F1 = _rows(F2, slice(i0, i1)) if x2 is None else feats(x1[i0:i1])
            structured_gram(F1, _rows(F2, slice(j0, None)), trace, out)
    else:
        rows = chunk

        def block(i0, i1, j0, out):
            F1 = feats(x1[i0:i1])
            for j in range(j0, n2, chunk):
                Fj = F1 if x2 is None and j == i0 else feats(xs2[j:j + chunk])
                structured_gram(F1, Fj, trace, out[:, j - j0:j - j0 + chunk])

    return fill_blocks(K, x2 is None, rows, block)
