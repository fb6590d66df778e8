"""The per-layer factors of the empirical NTK and their Gram matrices (Novak et al. 2022, "Fast finite width neural
tangent kernel", structured derivatives).

A linear map ``z_u = W a_u + b`` used at U places per example (calls of a shared layer, sequence positions) has
``∂f_o/∂W = Σ_u g_uo a_uᵀ`` with ``g_uo = ∂f_o/∂z_u``, so its NTK contribution is, without forming any Jacobian::

    Θ_W,b(x, x')[o, o'] = Σ_{u,v} (g_uo · g'_vo') (a_u · a'_v + 1)          (the 1 for a trainable bias)

— for a layer used once, (output-gradient Gram) ⊙ (input Gram + 1): :class:`LinearFeatures`.

A convolution ``z_p = W U_p + b`` (``U_p`` the input patch of output position p, ``F.unfold``, C_in/groups·kh·kw
numbers per group) is the same with the L output positions as uses. Two ways to contract it:

(a) the per-example gradients ``∂f_o/∂W = Σ_p g_po U_pᵀ`` (one batched matmul over positions; O·P_layer numbers
    per example) and their Gram, one GEMM (:class:`GradientFeatures`): ``O·C_out·K`` multiplications per pair of
    examples (O² without the trace over outputs), plus ``O·C_out·K·L`` per example to form them;
(b) the position-pair form above: ``L²(K + O·C_out)`` per pair (O² with the full O×O blocks).

:func:`conv_form` picks the cheaper; (b) wins only for a few output positions (a conv whose output is 1×1 or 2×2).

Parameters that do not factorise (:mod:`kernelscope.empirical.capture`) bring their per-example gradients J,
whose Gram is their contribution (:class:`GradientFeatures` too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .capture import Capture, Conv, Plan

__all__ = ["LinearFeatures", "GradientFeatures", "LayerFeatures", "contract", "structured_gram", "features",
           "feature_sizes", "conv_form"]


def contract(J1: torch.Tensor, J2: torch.Tensor, trace: bool) -> torch.Tensor:
    """(n, O, P) × (m, O, P) -> (n, m, O, O), or its trace over outputs (n, m): one GEMM."""
    n, O, P = J1.shape
    m = J2.shape[0]
    if trace:  # Σ_o J1[n, o]·J2[m, o]: one GEMM over O·P, no O×O blocks
        return J1.reshape(n, O * P) @ J2.reshape(m, O * P).T  # (n, m)
    return (J1.reshape(n * O, P) @ J2.reshape(m * O, P).T).reshape(n, O, m, O).permute(0, 2, 1, 3)  # (n, m, O, O)


@dataclass
class LinearFeatures:
    """What one linear map (or a convolution in the position-pair form) contributes to the NTK of n examples.

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

    def empty(self, n: int) -> LinearFeatures:
        """Uninitialised features for n examples, shaped like these (to be filled by :meth:`put`)."""
        return LinearFeatures(self.A.new_empty((n, *self.A.shape[1:])), self.G.new_empty((n, *self.G.shape[1:])),
                              self.weight, self.bias)

    def put(self, i: int, part: LinearFeatures) -> None:
        """Write the features of examples i, i+1, ... (``part``) into these."""
        self.A[i:i + part.A.shape[0]] = part.A
        self.G[i:i + part.G.shape[0]] = part.G

    @property
    def nbytes(self) -> int:
        return self.A.numel() * self.A.element_size() + self.G.numel() * self.G.element_size()

    def gram(self, other: LinearFeatures, trace: bool, out: torch.Tensor) -> None:
        """Add ``Σ_{u,u'} (g_u·g'_{u'}) (a_u·a'_{u'} + 1)`` (the 1 only with a trainable bias) to ``out``:
        (n1, n2, O, O), or its trace over outputs (n1, n2)."""
        f1, f2 = self, other
        n1, U1, O, _ = f1.G.shape
        n2, U2 = f2.G.shape[:2]
        if U1 == 1 and U2 == 1:
            AA = f1.A[:, 0] @ f2.A[:, 0].T if f1.weight else f1.A.new_zeros(n1, n2)  # (n1, n2)
            if f1.bias:
                AA += 1.0
            if trace or O == 1:  # (g·g')(a·a' + 1), multiplied and added in one pass
                GG = f1.G[:, 0].reshape(n1, -1) @ f2.G[:, 0].reshape(n2, -1).T  # (n1, n2)
                (out if trace else out[:, :, 0, 0]).addcmul_(GG, AA)
                return
            out.add_(torch.einsum("nok,mpk->nmop", f1.G[:, 0], f2.G[:, 0]).mul_(AA[:, :, None, None]))
            return
        # Several uses: GEMMs for the use-pair Grams a_u·a'_v and g_u·g'_v, then Σ_{u,v} of their product
        # (memory: two (n1, U1, n2, U2) arrays; a single einsum builds larger intermediates and is ~7x slower).
        AA = (f1.A.reshape(n1 * U1, -1) @ f2.A.reshape(n2 * U2, -1).T if f1.weight
              else f1.A.new_zeros(n1 * U1, n2 * U2)).reshape(n1, U1, n2, U2)
        if f1.bias:
            AA += 1.0
        if trace:  # Σ_o g_uo·g'_vo in one GEMM
            GG = (f1.G.reshape(n1 * U1, -1) @ f2.G.reshape(n2 * U2, -1).T).reshape(n1, U1, n2, U2)
            out.add_(GG.mul_(AA).sum((1, 3)))  # (n1, n2)
            return
        G1, G2 = f1.G.transpose(1, 2).contiguous(), f2.G.transpose(1, 2).contiguous()  # (n, O, U, d_out)
        for o in range(O):
            for p in range(O):
                GG = (G1[:, o].reshape(n1 * U1, -1) @ G2[:, p].reshape(n2 * U2, -1).T).reshape(n1, U1, n2, U2)
                out[:, :, o, p] += GG.mul_(AA).sum((1, 3))


@dataclass
class GradientFeatures:
    """Per-example gradients J (n, O, P) of some parameters, whose Gram matrix is their NTK contribution: the
    weight ``∂f_o/∂W = Σ_p g_p U_pᵀ`` (P = C_out·C_in/groups·kh·kw) or the bias ``Σ_p g_p`` (P = C_out) of a
    convolution, or the parameters that do not factorise."""

    J: torch.Tensor

    def rows(self, sl: slice) -> GradientFeatures:
        return GradientFeatures(self.J[sl])

    def empty(self, n: int) -> GradientFeatures:
        """Uninitialised features for n examples, shaped like these (to be filled by :meth:`put`)."""
        return GradientFeatures(self.J.new_empty((n, *self.J.shape[1:])))

    def put(self, i: int, part: GradientFeatures) -> None:
        """Write the features of examples i, i+1, ... (``part``) into these."""
        self.J[i:i + part.J.shape[0]] = part.J

    @property
    def nbytes(self) -> int:
        return self.J.numel() * self.J.element_size()

    def gram(self, other: GradientFeatures, trace: bool, out: torch.Tensor) -> None:
        """Add ``J Jᵀ`` to ``out``: one GEMM, (n1, n2, O, O) or its trace over outputs (n1, n2)."""
        n, O, P = self.J.shape
        if trace or O == 1:  # accumulated by the GEMM itself, no temporary
            (out if trace else out[:, :, 0, 0]).addmm_(self.J.reshape(n, O * P), other.J.reshape(-1, O * P).T)
            return
        out.add_(contract(self.J, other.J, trace))


LayerFeatures = LinearFeatures | GradientFeatures


def structured_gram(F1: list[LayerFeatures], F2: list[LayerFeatures], trace: bool = False,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """Σ over layers of their NTK contributions: (n1, n2, O, O), or (n1, n2) if ``trace``; added to ``out`` when
    given (a block of the kernel being filled), else to zeros.

    Linear maps: ``Σ_{u,u'} (g_u·g'_{u'}) (a_u·a'_{u'} + 1)``; the rest: ``⟨∂f/∂w(x), ∂f/∂w(x')⟩``. The two
    feature lists may come from different weights of the same architecture (the path kernel uses this).
    """
    if out is None:
        f1, f2 = F1[0], F2[0]
        n1, n2 = (f1.A if isinstance(f1, LinearFeatures) else f1.J).shape[0], \
            (f2.A if isinstance(f2, LinearFeatures) else f2.J).shape[0]
        O = f1.G.shape[2] if isinstance(f1, LinearFeatures) else f1.J.shape[1]
        ref = f1.A if isinstance(f1, LinearFeatures) else f1.J
        out = ref.new_zeros((n1, n2) if trace else (n1, n2, O, O))
    for f1, f2 in zip(F1, F2, strict=True):
        f1.gram(f2, trace, out)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Convolutions
# ---------------------------------------------------------------------------------------------------------------

def _patches(a: torch.Tensor, geo: Conv) -> torch.Tensor:
    """Input patches ``U_p`` of every output position p: (n, C_in·kh·kw, L) from a (n, C_in, H, W), the rows
    ordered like a flattened weight (channel-major), so those of group i are the i-th contiguous block."""
    left, right, top, bottom = geo.pads
    if left == right and top == bottom:  # unfold pads without a copy
        return F.unfold(a, geo.kernel, dilation=geo.dilation, padding=(top, left), stride=geo.stride)
    return F.unfold(F.pad(a, geo.pads), geo.kernel, dilation=geo.dilation, stride=geo.stride)


def conv_form(K: int, C: int, L: int, n_out: int, groups: int, weight: bool, trace: bool, partners: int) -> str:
    """``'pairs'`` when the position-pair form (b) costs fewer multiplications per pair of examples,
    ``L²(K + O_g·C)``, than the per-example gradients (a), ``O_g·C·K + 2·O·C·K·L/partners`` (their Gram, and
    forming them, shared by the ``partners`` examples each is paired with), else ``'gradients'``. O_g = O with the
    trace over outputs, O² without; K = C_in/groups·kh·kw; L output positions summed over calls."""
    og = n_out if trace else n_out * n_out
    pairs = L * L * (K + og * C)
    grads = og * C * K + 2 * n_out * C * K * L / max(partners, 1)
    return "pairs" if weight and groups == 1 and pairs < grads else "gradients"


def _conv_weight_gradient(a: torch.Tensor, g: torch.Tensor, geo: Conv, out: torch.Tensor | None) -> torch.Tensor:
    """Per-example ``∂f_o/∂W = Σ_p g_p U_pᵀ`` of one call, (n, O, C_out·K) from a (n, C_in, H, W) and
    g (n, O, C_out, L), added to ``out`` if given.

    A batched matmul over positions per group, in row blocks of about 8 MB of patches (they stay in cache:
    measured 1.5-2x faster than one block for 16×16 images), each written into its rows of the result."""
    n, n_out, C, L = g.shape
    groups = geo.groups
    K = a.shape[1] // groups * geo.kernel[0] * geo.kernel[1]
    rows = max(1, (8 << 20) // (groups * K * L * g.element_size()))
    first = out is None
    if first:
        out = g.new_empty(n, n_out, C * K)
    for i in range(0, n, rows):
        U = _patches(a[i:i + rows], geo)  # (r, C_in·kh·kw, L)
        r = U.shape[0]
        dst = out[i:i + r]  # (r, O, C_out·K)
        if groups == 1:  # one batched GEMM (r, O·C_out, L) @ (r, L, K), written in place
            gi, Ut = g[i:i + r].reshape(r, n_out * C, L), U.transpose(1, 2)
            if first:
                torch.bmm(gi, Ut, out=dst.view(r, n_out * C, K))
            else:
                dst.view(r, n_out * C, K).baddbmm_(gi, Ut)
            continue
        U = U.reshape(r, groups, K, L)  # (r, groups, K, L)
        gi = g[i:i + r].reshape(r, n_out, groups, C // groups, L)  # (r, O, groups, C_out/groups, L)
        part = torch.einsum("rogcl,rgkl->rogck", gi, U).reshape(r, n_out, C * K)
        if first:
            dst.copy_(part)
        else:
            dst += part
    return out


def _conv_features(calls: list[tuple[torch.Tensor, torch.Tensor, Conv]], weight: bool, bias: bool, n_out: int,
                   trace: bool, partners: int) -> list[LayerFeatures]:
    """One convolution's features from its calls: inputs a (n, C_in, H, W), output gradients g (n, O, C_out, L)."""
    a0, g0, geo0 = calls[0]
    K = a0.shape[1] // geo0.groups * geo0.kernel[0] * geo0.kernel[1]
    L = sum(g.shape[-1] for _, g, _ in calls)
    if conv_form(K, g0.shape[2], L, n_out, geo0.groups, weight, trace, partners) == "pairs":
        A = torch.cat([_patches(a, geo).transpose(1, 2) for a, _, geo in calls], dim=1)  # (n, L, C_in·kh·kw)
        G = torch.cat([g.permute(0, 3, 1, 2) for _, g, _ in calls], dim=1)  # (n, L, O, C_out)
        return [LinearFeatures(A, G, weight, bias)]
    feats = []  # (a): per-example gradients, the weight's and the bias's apart (no copy into one row)
    if weight:
        Jw = None
        for a, g, geo in calls:
            Jw = _conv_weight_gradient(a, g, geo, Jw)
        feats.append(GradientFeatures(Jw))  # (n, O, C_out·K)
    if bias:
        feats.append(GradientFeatures(sum(g.sum(-1) for _, g, _ in calls)))  # (n, O, C_out)
    return feats


def features(cap: Capture, the_plan: Plan, fallback: dict[str, torch.Tensor], n: int, n_out: int, trace: bool,
             partners: int) -> list[LayerFeatures]:
    """The features of a captured chunk of n examples: per group (plan order) its :class:`LinearFeatures` or its
    convolution's features, then per fallback module its per-example gradients (given, (n, O, P))."""
    feats: list[LayerFeatures] = []
    for group, calls in zip(the_plan.groups, cap.calls):
        weight, bias = group.weight is not None, group.bias is not None
        if group.kind == "conv":
            feats.extend(_conv_features([(a, g.flatten(3), geo) for a, g, geo in calls], weight, bias, n_out, trace,
                                        partners))
            continue
        A = torch.cat([a.reshape(n, -1, a.shape[-1]) for a, _, _ in calls], dim=1)  # (n, U, d_in)
        G = torch.cat([g.reshape(n, n_out, -1, g.shape[-1]).transpose(1, 2) for _, g, _ in calls],
                      dim=1)  # (n, U, O, d_out)
        feats.append(LinearFeatures(A, G, weight, bias))
    feats.extend(GradientFeatures(fallback[name]) for name in the_plan.fallback)
    return feats


def feature_sizes(the_plan: Plan, n_out: int, itemsize: int, trace: bool, partners: int
                  ) -> tuple[float, int, float]:
    """Bytes per example of the features :func:`features` makes (the same choices of form), the largest number
    of uses U of a :class:`LinearFeatures` (its Gram holds two (n1, U, n2, U) arrays), and the bytes per example
    of the largest convolution's patches (formed in blocks of at most 8 MB)."""
    total, most, patches = 0.0, 1, 0.0
    for group, shapes in zip(the_plan.groups, the_plan.group_shapes):
        weight, bias = group.weight is not None, group.bias is not None
        if group.kind == "linear":
            U = sum(math.prod(a[:-1]) for a, _, _ in shapes)
            total += U * (shapes[0][0][-1] + n_out * shapes[0][1][-1])
            most = max(most, U)
            continue
        a, z, geo = shapes[0]
        K = a[0] // geo.groups * geo.kernel[0] * geo.kernel[1]
        C, L = z[0], sum(math.prod(s[1][1:]) for s in shapes)
        patches = max(patches, K * geo.groups * L * itemsize)
        if conv_form(K, C, L, n_out, geo.groups, weight, trace, partners) == "pairs":
            total += L * (K + n_out * C)
            most = max(most, L)
        else:
            total += n_out * C * (K * weight + bias)
    total += sum(n_out * the_plan.sizes[p] for names in the_plan.fallback.values() for p in names)
    return total * itemsize, most, patches
