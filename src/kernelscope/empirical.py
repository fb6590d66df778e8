"""Empirical NTK and NNGP of any ``torch.nn.Module``, and its linearisation (THEORY.md §5).

For a model ``f(x; w)`` with O outputs and trainable weights ``w`` (P numbers), the empirical neural tangent
kernel is the Gram matrix of the parameter gradients (the Jacobian ``J(x) = ∂f(x; w)/∂w`` of shape (O, P))::

    Θ(x, x')[o, o'] = Σ_p ∂f_o(x)/∂w_p · ∂f_o'(x')/∂w_p = (J(x) J(x')ᵀ)[o, o'].

Three ways to compute it, all through ``torch.func`` / autograd (no hand-written backprop):

``'jacobian'``   the Jacobian of a chunk of examples (``torch.func.jacrev``), contracted: memory O(chunk·O·P).
``'ntvp'``       NTK-vector products ``Θ v = J₁ (J₂ᵀ v)``: a VJP (``torch.func.vjp``) then a JVP
                 (``torch.func.jvp``) per basis vector, vmapped over a chunk of them; no Jacobian of x1 is formed.
``'structured'`` per-layer factors, never the N×P Jacobian. Layer inputs are captured with forward hooks and
                 the output gradients ``g = ∂f/∂z`` of every layer with one batched backward pass over the O
                 outputs (a zero ``ε`` added to each layer output, so ``g = ∂f/∂ε``).
                 ``nn.Linear`` ``z = W a + b``: ``∂f/∂W = Σ_u g_u a_uᵀ`` (one term per use ``u`` of the layer:
                 weight sharing, sequence positions), so the layer's contribution is
                 ``Σ_{u,u'} (g_u·g'_{u'}) (a_u·a'_{u'} + 1)`` — for a layer used once, (output-gradient Gram) ⊙
                 (input Gram with a ones column for the bias).
                 ``nn.Conv2d`` ``z = W ⋆ a + b`` (any stride, padding, padding mode, dilation, groups): with
                 ``U_p(x)`` the input patch at output position p (``F.unfold``, C_in/groups·kh·kw per group),
                 ``∂f/∂W = Σ_p g_p U_pᵀ`` and ``∂f/∂b = Σ_p g_p``. The contribution is computed as (a) the Gram
                 of these per-example gradients (one batched matmul over positions forms them; O·P_layer numbers
                 per example), unless (b) the position-pair form ``Σ_{p,q} (g_p·g'_q)(U_p·U'_q + 1)`` needs fewer
                 multiplications per pair of examples: ``L²(K + O²C_out)`` against ``O²C_out·K`` for L output
                 positions and K = C_in/groups·kh·kw, which happens only for a few output positions (a conv whose
                 output is 1×1 or 2×2, groups=1: measured 2x faster there than (a)). For typical CNNs (8×8 or
                 larger outputs) (a) is chosen; its Gram costs what 'jacobian' pays for the same layer, so the
                 gain over 'jacobian' comes from the Linear layers of the model and the lower memory.
                 Subclasses that override ``forward`` are refused. The features of x2 are kept while they fit a
                 quarter of the memory budget, else recomputed per block of rows (memory: two chunks).
``'auto'``       ``'structured'`` when every trainable parameter belongs to an ``nn.Linear`` or ``nn.Conv2d``,
                 else ``'jacobian'`` (BatchNorm affine weights, Conv1d, Embedding, ...).

Also :func:`nngp` (the kernel of the readout layer's input features) and :func:`linearize` (a module computing
``f(x; w₀) + J(x)(w − w₀)`` by forward-mode products, trainable with any torch optimiser).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from ._arrays import (
    ArrayKind,
    ValidationError,
    as_tensor,
    check_choice,
    check_int,
    check_magnitude,
    check_memory,
    check_nonnegative,
    memory_budget_bytes,
)
from ._model import (
    check_fixed_function,
    check_module,
    materialize,
    model_device,
    model_dtype,
    output_dim,
    trainable_parameters,
)

__all__ = ["ntk", "nngp", "linearize", "LinearizedModel", "METHODS", "StructuredUnsupported",
           "trainable_parameters", "jacobian", "layer_features", "structured_gram", "resolve_method"]

METHODS = ("auto", "jacobian", "ntvp", "structured")


class StructuredUnsupported(ValueError):
    """``method='structured'`` cannot handle this model (a trainable parameter outside ``nn.Linear`` and
    ``nn.Conv2d``, a layer that does not see the batch as its first dimension)."""


# ---------------------------------------------------------------------------------------------------------------
# The inputs
# ---------------------------------------------------------------------------------------------------------------

def _inputs(model: nn.Module, x1: Any, x2: Any) -> tuple[torch.Tensor, torch.Tensor | None, ArrayKind]:
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


# ---------------------------------------------------------------------------------------------------------------
# 'structured': per-layer factorisation for nn.Linear and nn.Conv2d
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class LinearFeatures:
    """What one ``nn.Linear`` layer (or a small-output ``nn.Conv2d``) contributes to the NTK of n examples.

    A : (n, U, d_in) layer inputs, one row per use ``u`` (calls of a shared layer, sequence positions, the
        positions p of a convolution with its input patches ``U_p`` as rows)
    G : (n, U, O, d_out) gradients of each output ``f_o`` with respect to the layer's output ``z_u``
    weight, bias : whether W and b are trainable (b absent -> False)
    """

    A: torch.Tensor
    G: torch.Tensor
    weight: bool
    bias: bool

    def rows(self, sl: slice) -> LinearFeatures:
        return LinearFeatures(self.A[sl], self.G[sl], self.weight, self.bias)

    @staticmethod
    def cat(parts: list[LinearFeatures]) -> LinearFeatures:
        return LinearFeatures(torch.cat([p.A for p in parts]), torch.cat([p.G for p in parts]),
                              parts[0].weight, parts[0].bias)

    @property
    def nbytes(self) -> int:
        return self.A.numel() * self.A.element_size() + self.G.numel() * self.G.element_size()

    def gram(self, other: LinearFeatures, trace: bool) -> torch.Tensor:
        """``Σ_{u,u'} (g_u·g'_{u'}) (a_u·a'_{u'} + 1)`` (the 1 only with a trainable bias): (n1, n2, O, O), or
        its trace over outputs (n1, n2)."""
        f1, f2 = self, other
        n1, U1, O, _ = f1.G.shape
        n2, U2 = f2.G.shape[:2]
        if U1 == 1 and U2 == 1:
            AA = f1.A[:, 0] @ f2.A[:, 0].T if f1.weight else f1.A.new_zeros(n1, n2)  # (n1, n2)
            if f1.bias:
                AA += 1.0
            if trace:
                return (f1.G[:, 0].reshape(n1, -1) @ f2.G[:, 0].reshape(n2, -1).T).mul_(AA)  # (n1, n2)
            if O == 1:
                return (f1.G[:, 0, 0] @ f2.G[:, 0, 0].T).mul_(AA)[:, :, None, None]  # (n1, n2, 1, 1)
            return torch.einsum("nok,mpk->nmop", f1.G[:, 0], f2.G[:, 0]) * AA[:, :, None, None]
        # Several uses: GEMMs for the use-pair Grams a_u·a'_v and g_u·g'_v, then Σ_{u,v} of their product
        # (memory: two (n1, U1, n2, U2) arrays; a single einsum builds larger intermediates and is ~7x slower).
        AA = (f1.A.reshape(n1 * U1, -1) @ f2.A.reshape(n2 * U2, -1).T if f1.weight
              else f1.A.new_zeros(n1 * U1, n2 * U2)).reshape(n1, U1, n2, U2)
        if f1.bias:
            AA += 1.0
        if trace:  # Σ_o g_uo·g'_vo in one GEMM
            GG = (f1.G.reshape(n1 * U1, -1) @ f2.G.reshape(n2 * U2, -1).T).reshape(n1, U1, n2, U2)
            return GG.mul_(AA).sum((1, 3))  # (n1, n2)
        G1, G2 = f1.G.transpose(1, 2).contiguous(), f2.G.transpose(1, 2).contiguous()  # (n, O, U, d_out)
        K = AA.new_empty(n1, n2, O, O)
        for o in range(O):
            for p in range(O):
                GG = (G1[:, o].reshape(n1 * U1, -1) @ G2[:, p].reshape(n2 * U2, -1).T).reshape(n1, U1, n2, U2)
                K[:, :, o, p] = GG.mul_(AA).sum((1, 3))
        return K  # (n1, n2, O, O)


@dataclass
class GradientFeatures:
    """What the weight or the bias of one ``nn.Conv2d`` contributes to the NTK of n examples: its per-example
    gradients, whose Gram matrix is the contribution.

    J : (n, O, P) ``∂f_o(x_n)/∂W = Σ_p g_p U_pᵀ`` flattened like W (P = C_out·C_in/groups·kh·kw), or
        ``∂f_o(x_n)/∂b = Σ_p g_p`` (P = C_out)
    """

    J: torch.Tensor

    def rows(self, sl: slice) -> GradientFeatures:
        return GradientFeatures(self.J[sl])

    @staticmethod
    def cat(parts: list[GradientFeatures]) -> GradientFeatures:
        return GradientFeatures(torch.cat([p.J for p in parts]))

    @property
    def nbytes(self) -> int:
        return self.J.numel() * self.J.element_size()

    def gram(self, other: GradientFeatures, trace: bool) -> torch.Tensor:
        return _contract(self.J, other.J, trace)  # one GEMM: (n1, n2, O, O) or (n1, n2)


LayerFeatures = LinearFeatures | GradientFeatures
_STRUCTURED = (nn.Linear, nn.Conv2d)


def _structured_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``nn.Linear`` and ``nn.Conv2d`` layers with a trainable parameter; an error if a trainable parameter
    lies elsewhere (or in a subclass that changes ``forward`` or owns other parameters than weight and bias)."""
    layers, covered = [], set()
    for name, mod in model.named_modules():
        if not isinstance(mod, _STRUCTURED):
            continue
        base = nn.Linear if isinstance(mod, nn.Linear) else nn.Conv2d
        own = dict(mod.named_parameters(recurse=False))
        if type(mod).forward is not base.forward or not set(own) <= {"weight", "bias"}:
            continue  # its trainable parameters (if any) are reported below
        if any(p.requires_grad for p in own.values()):
            layers.append((name, mod))
            covered.update(id(p) for p in own.values())
    others = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if others:
        owners = {type(model.get_submodule(n.rpartition(".")[0])).__name__ if "." in n else type(model).__name__
                  for n in others}
        raise StructuredUnsupported(
            f"method='structured' handles models whose trainable parameters all belong to nn.Linear or nn.Conv2d "
            f"layers; {', '.join(repr(n) for n in others[:4])}{' ...' if len(others) > 4 else ''} belong to "
            f"{', '.join(sorted(owners))}. Use method='jacobian' or method='ntvp'.")
    return layers



def _conv_padding(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding of the input, as ``F.pad`` takes it ('same': the odd one on the right)."""
    (kh, kw), (dh, dw) = conv.kernel_size, conv.dilation
    if conv.padding == "valid":
        return (0, 0, 0, 0)
    if conv.padding == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    ph, pw = conv.padding
    return (pw, pw, ph, ph)


def _patches(conv: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """Input patches ``U_p`` of every output position p: (n, C_in·kh·kw, L), the rows ordered like a flattened
    weight (channel-major), so those of group i are the i-th contiguous block."""
    left, right, top, bottom = _conv_padding(conv)
    if conv.padding_mode == "zeros" and left == right and top == bottom:  # unfold pads without a copy
        return F.unfold(a, conv.kernel_size, dilation=conv.dilation, padding=(top, left), stride=conv.stride)
    a = F.pad(a, (left, right, top, bottom), mode="constant" if conv.padding_mode == "zeros" else conv.padding_mode)
    return F.unfold(a, conv.kernel_size, dilation=conv.dilation, stride=conv.stride)


def _conv_positions_cheaper(conv: nn.Conv2d, L: int, n_out: int, weight: bool = True) -> bool:
    """Whether the position-pair form (b) ``Σ_{p,q} (g_p·g'_q)(U_p·U'_q + 1)`` costs fewer multiplications per pair
    of examples, ``L²(K + O²·C_out)``, than the Gram of per-example gradients (a), ``O²·C_out·K``
    (K = C_in/groups·kh·kw, L output positions summed over uses). (b) wins only for a few output positions."""
    K = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
    C = conv.out_channels
    return weight and conv.groups == 1 and L * L * (K + n_out**2 * C) < n_out**2 * C * K


def _conv_weight_gradient(conv: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-example ``∂f_o/∂W = Σ_p g_p U_pᵀ`` of one use: (n, O, C_out·K) from a (n, C_in, H, W), g (n, O, C_out, L).

    A batched matmul over positions per group, in row blocks of about 8 MB of patches (they stay in cache:
    measured 1.5-2x faster than one block for 16×16 images)."""
    n, n_out, C, L = g.shape
    groups = conv.groups
    K = conv.in_channels // groups * conv.kernel_size[0] * conv.kernel_size[1]
    rows = max(1, (8 << 20) // (groups * K * L * g.element_size()))
    blocks = []
    for i in range(0, n, rows):
        U = _patches(conv, a[i:i + rows])  # (r, C_in·kh·kw, L)
        r = U.shape[0]
        U = U.reshape(r, groups, K, L)  # (r, groups, K, L)
        gi = g[i:i + rows].reshape(r, n_out, groups, C // groups, L)  # (r, O, groups, C_out/groups, L)
        blocks.append(torch.einsum("rogcl,rgkl->rogck", gi, U).reshape(r, n_out, C * K))
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


def _conv_features(conv: nn.Conv2d, uses: list[tuple[torch.Tensor, torch.Tensor]], n_out: int
                   ) -> list[LayerFeatures]:
    """One Conv2d's features from its uses: inputs a (n, C_in, H, W) and output gradients g (n, O, C_out, L)."""
    weight, bias = conv.weight.requires_grad, conv.bias is not None and conv.bias.requires_grad
    L = sum(g.shape[-1] for _, g in uses)
    if _conv_positions_cheaper(conv, L, n_out, weight):  # (b): a Linear layer used at every position
        A = torch.cat([_patches(conv, a).transpose(1, 2) for a, _ in uses], dim=1)  # (n, L, C_in·kh·kw)
        G = torch.cat([g.permute(0, 3, 1, 2) for _, g in uses], dim=1)  # (n, L, O, C_out)
        return [LinearFeatures(A, G, weight, bias)]
    feats = []  # (a): per-example gradients, the weight's and the bias's apart (no copy into one row)
    if weight:
        Jw = None
        for a, g in uses:
            J = _conv_weight_gradient(conv, a, g)
            Jw = J if Jw is None else Jw.add_(J)
        feats.append(GradientFeatures(Jw))  # (n, O, C_out·K)
    if bias:
        feats.append(GradientFeatures(sum(g.sum(-1) for _, g in uses)))  # (n, O, C_out)
    return feats


def layer_features(model: nn.Module, x: torch.Tensor, n_out: int,
                   params: dict[str, torch.Tensor] | None = None) -> list[LayerFeatures]:
    """Features of every trainable ``nn.Linear`` and ``nn.Conv2d`` for the examples ``x`` (n, ...).

    ``nn.Linear``: its inputs and output gradients (:class:`LinearFeatures`). ``nn.Conv2d``: its per-example
    gradients (:class:`GradientFeatures`), or patches and output gradients where :func:`_conv_positions_cheaper`.
    One forward pass with hooks (``params`` optionally replaces the weights, via ``functional_call``) and one
    (batched) backward pass over the outputs. A zero tensor ``ε`` is added to each layer output so that
    ``∂f/∂z = ∂f/∂ε`` even if a later in-place operation (``ReLU(inplace=True)``) overwrites ``z``.
    """
    layers = _structured_layers(model)
    n = x.shape[0]
    records: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {id(m): [] for _, m in layers}

    def hook(mod, inputs, out):
        a = inputs[0]
        conv = isinstance(mod, nn.Conv2d)
        if a.shape[0] != n or out.shape[0] != n or (conv and a.ndim != 4):
            kind = ("nn.Conv2d to see a batch (N, C, H, W)" if conv
                    else "nn.Linear to see the batch as its first dimension")
            raise StructuredUnsupported(
                f"method='structured' needs every {kind} ({n} examples); a layer got input of shape "
                f"{tuple(a.shape)}. Use method='jacobian' or method='ntvp'.")
        eps = torch.zeros_like(out, requires_grad=True)
        records[id(mod)].append((a.detach(), eps))
        return out + eps

    handles = [m.register_forward_hook(hook) for _, m in layers]
    try:
        with torch.enable_grad():
            out = functional_call(model, params, (x,)) if params is not None else model(x)
            out = out.reshape(n, n_out)
            eps_all = [e for _, m in layers for _, e in records[id(m)]]
            grads = _output_gradients(out, eps_all, n_out)
    finally:
        for h in handles:
            h.remove()
    feats, k = [], 0
    for _, mod in layers:
        uses = records[id(mod)]
        if not uses:  # a layer not used by forward contributes nothing
            continue
        # per use: the output gradients of all outputs, (n, O, *z.shape[1:])
        gs = [torch.stack([grads[o][k + j] if grads[o][k + j] is not None else torch.zeros_like(e)
                           for o in range(n_out)], dim=1) for j, (_, e) in enumerate(uses)]
        k += len(uses)
        if isinstance(mod, nn.Conv2d):
            feats.extend(_conv_features(mod, [(a, g.flatten(3)) for (a, _), g in zip(uses, gs)], n_out))
            continue
        A = torch.cat([a.reshape(n, -1, a.shape[-1]) for a, _ in uses], dim=1)  # (n, U, d_in)
        G = torch.cat([g.reshape(n, n_out, -1, g.shape[-1]).transpose(1, 2) for g in gs], dim=1)  # (n, U, O, d_out)
        feats.append(LinearFeatures(A, G, mod.weight.requires_grad, mod.bias is not None and mod.bias.requires_grad))
    return feats



def _output_gradients(out: torch.Tensor, eps_all: list[torch.Tensor], n_out: int) -> list[list]:
    """``grads[o][k] = ∂(Σ_n f_o(x_n))/∂ε_k``: one batched backward pass over the O outputs (vmap over the
    cotangents ``e_o``), or one pass per output where batching is not supported."""
    if n_out > 1:
        cot = torch.eye(n_out, dtype=out.dtype, device=out.device)[:, None, :].expand(n_out, *out.shape)
        try:
            batched = torch.autograd.grad(out, eps_all, grad_outputs=cot, is_grads_batched=True, retain_graph=True,
                                          allow_unused=True)  # each (O, *ε.shape)
            return [[None if g is None else g[o] for g in batched] for o in range(n_out)]
        except RuntimeError:  # an operation without a batching rule: fall back to one pass per output
            pass
    return [list(torch.autograd.grad(out[:, o].sum(), eps_all, retain_graph=o < n_out - 1, allow_unused=True))
            for o in range(n_out)]


def _slice(feats: list[LayerFeatures], rows: slice) -> list[LayerFeatures]:
    return [f.rows(rows) for f in feats]


def structured_gram(F1: list[LayerFeatures], F2: list[LayerFeatures], trace: bool = False) -> torch.Tensor:
    """Σ over layers of their NTK contributions: (n1, n2, O, O), or (n1, n2) if ``trace``.

    ``nn.Linear``: ``Σ_{u,u'} (g_u·g'_{u'}) (a_u·a'_{u'} + 1)``; ``nn.Conv2d``: ``⟨∂f/∂(W, b)(x), ∂f/∂(W, b)(x')⟩``.
    The two feature lists may come from different weights of the same architecture (the path kernel uses this).
    """
    K = None
    for f1, f2 in zip(F1, F2, strict=True):
        part = f1.gram(f2, trace)
        K = part if K is None else K.add_(part)
    return K


def _features_chunked(model, x, n_out, chunk, first=None):
    """Features of all of ``x``, one chunk of examples at a time (``first``: those of the first chunk, if known)."""
    parts = [first if i == 0 and first is not None else layer_features(model, x[i:i + chunk], n_out)
             for i in range(0, x.shape[0], chunk)]
    if len(parts) == 1:
        return parts[0]
    return [type(fs[0]).cat(list(fs)) for fs in zip(*parts)]


def _ntk_structured(model, x1, x2, n_out, trace, chunk):
    xs2 = x1 if x2 is None else x2
    n1, n2 = x1.shape[0], xs2.shape[0]
    first = layer_features(model, xs2[:chunk], n_out)
    # Keep the features of x2 while they fit a quarter of the budget (a Conv2d's are O·P_layer numbers per
    # example), else recompute them for each block of rows, so that memory stays at two chunks.
    keep = n2 * sum(f.nbytes for f in first) / min(chunk, n2) < 0.25 * memory_budget_bytes()
    F2 = _features_chunked(model, xs2, n_out, chunk, first) if keep else None

    def features1(i):  # of x1[i:i + chunk]
        if x2 is None and keep:
            return _slice(F2, slice(i, i + chunk))
        return first if x2 is None and i == 0 else layer_features(model, x1[i:i + chunk], n_out)

    def row_block(F1):
        if keep:
            return structured_gram(F1, F2, trace)
        return torch.cat([structured_gram(F1, first if j == 0 else layer_features(model, xs2[j:j + chunk], n_out),
                                          trace) for j in range(0, n2, chunk)], dim=1)

    return torch.cat([row_block(features1(i)) for i in range(0, n1, chunk)], dim=0)


# ---------------------------------------------------------------------------------------------------------------
# 'jacobian' and 'ntvp' through torch.func
# ---------------------------------------------------------------------------------------------------------------

def _batched_fn(model: nn.Module, n_out: int):
    """``f(params, x) -> (n, O)`` through ``functional_call`` (non-trainable parameters and buffers stay put)."""

    def f(params, x):
        return functional_call(model, params, (x,)).reshape(x.shape[0], n_out)

    return f


def jacobian(model: nn.Module, x: torch.Tensor, n_out: int, params: dict[str, torch.Tensor] | None = None
             ) -> torch.Tensor:
    """Per-example Jacobians ``∂f(x_n)/∂w`` of a batch: (n, O, P), parameters flattened in ``named_parameters``
    order. ``vmap(jacrev(f))`` over the examples (each example is a batch of one inside the model)."""
    params = trainable_parameters(model) if params is None else params

    def f_single(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).reshape(n_out)

    J = vmap(jacrev(f_single), in_dims=(None, 0))(params, x)  # dict name -> (n, O, *shape)
    n = x.shape[0]
    return torch.cat([J[k].reshape(n, n_out, -1) for k in params], dim=2)  # (n, O, P)


def _contract(J1: torch.Tensor, J2: torch.Tensor, trace: bool) -> torch.Tensor:
    """(n, O, P) × (m, O, P) -> (n, m, O, O), or its trace over outputs (n, m): one GEMM."""
    n, O, P = J1.shape
    m = J2.shape[0]
    if trace:  # Σ_o J1[n, o]·J2[m, o]: one GEMM over O·P, no O×O blocks
        return J1.reshape(n, O * P) @ J2.reshape(m, O * P).T  # (n, m)
    return (J1.reshape(n * O, P) @ J2.reshape(m * O, P).T).reshape(n, O, m, O).permute(0, 2, 1, 3)  # (n, m, O, O)


def _ntk_jacobian(model, x1, x2, n_out, trace, chunk):
    params = trainable_parameters(model)
    P = sum(p.numel() for p in params.values())
    itemsize = torch.finfo(model_dtype(model)).bits // 8
    check_memory(2 * chunk * n_out * P * itemsize, "method='jacobian' (two Jacobian chunks)",
                 "Use method='structured' (nn.Linear/nn.Conv2d models), method='ntvp', or a smaller chunk_size.")
    xs2 = x1 if x2 is None else x2
    n1, n2 = x1.shape[0], xs2.shape[0]
    # Keep the Jacobians of x2 when they fit the budget (and reuse them for x1 when x2 is x1); else recompute
    # them for each row block, so memory stays at two chunks.
    keep = n2 * n_out * P * itemsize < 0.25 * memory_budget_bytes()
    cache: dict[int, torch.Tensor] = {}

    def J2(j):
        if j in cache:
            return cache[j]
        J = jacobian(model, xs2[j:j + chunk], n_out, params)
        if keep:
            cache[j] = J
        return J

    rows = []
    for i in range(0, n1, chunk):
        J1 = J2(i) if x2 is None else jacobian(model, x1[i:i + chunk], n_out, params)
        rows.append(torch.cat([_contract(J1, J2(j), trace) for j in range(0, n2, chunk)], dim=1))
    return torch.cat(rows, dim=0)


def _ntk_ntvp(model, x1, x2, n_out, trace, chunk):
    """Columns of Θ as NTK-vector products: for the basis vector e_(j,q) of x2's outputs, ``J₁ (J₂ᵀ e)``."""
    params = trainable_parameters(model)
    f = _batched_fn(model, n_out)
    xs2 = x1 if x2 is None else x2
    n1, n2 = x1.shape[0], xs2.shape[0]
    cols = []
    for j in range(0, n2, chunk):
        xb = xs2[j:j + chunk]
        nb = xb.shape[0]
        _, vjp_fn = vjp(lambda p, xb=xb: f(p, xb), params)
        basis = torch.eye(nb * n_out, dtype=x1.dtype, device=x1.device).reshape(nb * n_out, nb, n_out)
        (tangents,) = vmap(vjp_fn)(basis)  # dict name -> (nb*O, *shape): J₂ᵀ e for each basis vector

        def jvp_x1(t):
            return jvp(lambda p: f(p, x1), (params,), (t,))[1]  # (n1, O)

        col = vmap(jvp_x1)(tangents)  # (nb*O, n1, O)
        col = col.reshape(nb, n_out, n1, n_out).permute(2, 0, 3, 1)  # (n1, nb, O, O')
        cols.append(torch.diagonal(col, dim1=2, dim2=3).sum(-1) if trace else col)
    return torch.cat(cols, dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------------------------

def resolve_method(model: nn.Module, method: str) -> str:
    """The method :func:`ntk` uses for ``method`` on this model: ``'auto'`` becomes ``'structured'`` when every
    trainable parameter belongs to an ``nn.Linear`` or ``nn.Conv2d``, else ``'jacobian'``; ``'structured'`` on a
    model it cannot handle raises :class:`StructuredUnsupported` (saying why and what to use instead)."""
    method = check_choice(method, "method", METHODS)
    if method == "structured":
        _structured_layers(model)
    if method != "auto":
        return method
    try:
        _structured_layers(model)
        return "structured"
    except StructuredUnsupported:
        return "jacobian"


def ntk(model: nn.Module, x1: Any, x2: Any = None, method: str = "auto", *, trace: bool = False,
        chunk_size: int = 256) -> Any:
    """Empirical neural tangent kernel ``Θ(x, x') = J(x) J(x')ᵀ`` of a torch model at its current weights.

    Parameters
    ----------
    model : torch.nn.Module mapping inputs of shape (N, ...) to outputs of shape (N,) or (N, O). Every trainable
        parameter (``requires_grad=True``) counts. BatchNorm layers must be in eval mode (a fixed function).
    x1 : array of shape (N1, ...) ; x2 : array of shape (N2, ...) or None (meaning x1).
    method : 'auto', 'jacobian', 'ntvp' or 'structured' (see the module docstring).
    trace : for O outputs, return the trace over outputs ``Σ_o Θ[o, o]`` of shape (N1, N2).
    chunk_size : examples per chunk; bounds the memory of every method.

    Returns
    -------
    Θ of shape (N1, N2) for a scalar-output model (or with ``trace=True``), else (N1, N2, O, O); NumPy in ->
    NumPy out, a tensor in -> a tensor out (in the model's dtype, on its device).
    """
    method = check_choice(method, "method", METHODS)
    chunk = check_int(chunk_size, "chunk_size", minimum=1)
    check_fixed_function(check_module(model))
    t1, t2, kind = _inputs(model, x1, x2)
    n_out = output_dim(model, t1, "x1")
    trainable_parameters(model)
    n2 = t1.shape[0] if t2 is None else t2.shape[0]
    itemsize = torch.finfo(model_dtype(model)).bits // 8
    check_memory(t1.shape[0] * n2 * (1 if trace else n_out * n_out) * itemsize, "the NTK matrix",
                 "Compute it in blocks of rows of x1, or use trace=True.")
    method = resolve_method(model, method)
    fn = {"jacobian": _ntk_jacobian, "ntvp": _ntk_ntvp, "structured": _ntk_structured}[method]
    K = fn(model, t1, t2, n_out, trace, chunk)
    if not trace:
        K = K[:, :, 0, 0] if n_out == 1 else K
    return kind.wrap(K.detach())


def _readout(model: nn.Module, x: torch.Tensor) -> str:
    """Name of the readout: the last module called that owns parameters, widened to the enclosing module while
    that holds no other parameters (``nets.finite.DenseModule`` wrapping an ``nn.Linear``)."""
    owners = [(n, m) for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    if not owners:
        raise ValidationError("model", "a model with a readout layer that owns parameters", "none")
    order: list[str] = []
    hs = [m.register_forward_pre_hook(lambda mod, inp, n=n: order.append(n)) for n, m in owners]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hs:
            h.remove()
    name = order[-1]
    count = lambda n: sum(p.numel() for p in model.get_submodule(n).parameters())  # noqa: E731
    while "." in name:
        parent = name.rpartition(".")[0]
        if count(parent) != count(name):
            break
        name = parent
    return name


def nngp(model: nn.Module, x1: Any, x2: Any = None, *, w_std: float = 1.0, b_std: float = 0.0,
         layer: str | None = None) -> Any:
    """Empirical NNGP kernel: the kernel of the features entering the readout layer.

    With ``φ(x)`` (of width n) the input of the readout (the last module with parameters called in forward, or
    the submodule named ``layer``)::

        K(x, x') = w_std² φ(x)·φ(x') / n + b_std²,

    the covariance of a readout ``(w_std/√n) W φ + b_std b`` over standard normal ``W, b`` (NTK parameterisation,
    THEORY.md §4), which converges to the infinite-width NNGP Σ of the whole network.

    Returns (N1, N2); NumPy in -> NumPy out.
    """
    check_fixed_function(check_module(model))
    w_std = check_nonnegative(w_std, "w_std")
    b_std = check_nonnegative(b_std, "b_std")
    t1, t2, kind = _inputs(model, x1, x2)
    if layer is None:
        layer = _readout(model, t1)
    try:
        readout = model.get_submodule(layer)
    except AttributeError:
        raise ValidationError("layer", "the name of a submodule of the model", repr(layer)) from None

    def features(x):
        seen: list[torch.Tensor] = []
        h = readout.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach()))
        try:
            with torch.no_grad():
                model(x)
        finally:
            h.remove()
        return seen[-1].reshape(x.shape[0], -1)  # (n, width)

    p1 = features(t1)
    p2 = p1 if t2 is None else features(t2)
    K = w_std**2 * (p1 @ p2.T) / p1.shape[1] + b_std**2
    return kind.wrap(K)


class LinearizedModel(nn.Module):
    """``f_lin(x; w) = f(x; w₀) + J(x; w₀)(w − w₀)``, computed with ``torch.func.jvp`` (no Jacobian stored).

    The trainable weights ``w`` start at ``w₀`` and are ordinary ``nn.Parameter`` s (``params``), so any torch
    optimiser trains the linearised model; ``w₀`` and the base network are frozen copies.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        trainable_parameters(model)
        check_fixed_function(model)
        base = copy.deepcopy(model)
        self._names = [n for n, p in base.named_parameters() if p.requires_grad]
        for p in base.parameters():
            p.requires_grad_(False)
        self.base = base
        self.params = nn.ParameterList([nn.Parameter(base.get_parameter(n).detach().clone()) for n in self._names])
        for i, n in enumerate(self._names):
            self.register_buffer(f"w0_{i}", base.get_parameter(n).detach().clone())

    def w0(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, f"w0_{i}") for i, n in enumerate(self._names)}

    def w(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in zip(self._names, self.params)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w0, w = self.w0(), self.w()
        dw = {n: w[n] - w0[n] for n in self._names}
        f0, df = jvp(lambda p: functional_call(self.base, p, (x,)), (w0,), (dw,))
        return f0 + df


def linearize(model: nn.Module) -> LinearizedModel:
    """The first-order Taylor model of ``model`` around its current weights ``w₀`` (THEORY.md §5).

    ``linearize(model)(x) = f(x; w₀) + ∇_w f(x; w₀)ᵀ (w − w₀)``; equal to ``model(x)`` at ``w = w₀``; train its
    ``parameters()`` with any torch optimiser. The caller's model is not modified.
    """
    return LinearizedModel(check_module(model))
