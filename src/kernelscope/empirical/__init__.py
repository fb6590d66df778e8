"""Empirical NTK and NNGP of any ``torch.nn.Module``, and its linearisation (THEORY.md §5).

For a model ``f(x; w)`` with O outputs and trainable weights ``w`` (P numbers), the empirical neural tangent
kernel is the Gram matrix of the parameter gradients (the Jacobian ``J(x) = ∂f(x; w)/∂w`` of shape (O, P))::

    Θ(x, x')[o, o'] = Σ_p ∂f_o(x)/∂w_p · ∂f_o'(x')/∂w_p = (J(x) J(x')ᵀ)[o, o'].

Three ways to compute it, all through autograd (no hand-written backprop):

``'structured'`` per-layer factors, never the N×P Jacobian (:mod:`~kernelscope.empirical.structured`; Novak et
                 al. 2022). Every weight used as the weight of ``F.linear``, ``F.conv1d`` or ``F.conv2d`` on the
                 batch — ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d`` with any stride, padding, padding mode,
                 dilation and groups, the library's own NTK-parameterised layers, shared layers, sequence
                 positions — contributes ``Σ_{u,u'} (g_u·g'_{u'})(a_u·a'_{u'} + 1)`` from its inputs a and output
                 gradients g (:mod:`~kernelscope.empirical.features`; a convolution's per-example gradients where
                 that is cheaper). The other parameters (LayerNorm and eval-mode BatchNorm scales, a bias added
                 outside the call, parameters of the model's own forward) get per-example gradients from the
                 smallest module holding their uses (:mod:`~kernelscope.empirical.capture`). Pooling, flatten,
                 residual additions and any other operation without weights cost nothing more than a backward pass.
``'jacobian'``   the Jacobian of a chunk of examples (``torch.func.jacrev``), contracted: memory O(chunk·O·P).
``'ntvp'``       NTK-vector products ``Θ v = J₁ (J₂ᵀ v)``: a VJP then JVPs per chunk of basis vectors; no
                 Jacobian of x1 is formed.
``'auto'``       ``'structured'`` (``'jacobian'`` if the model defeats it: a module that mixes the examples of a
                 batch, or changes its inputs in place).

Every method estimates its peak memory before it starts (:func:`footprint`, :mod:`~kernelscope.empirical.memory`),
takes the largest chunk of examples that fits the memory budget (``chunk_size=None``) or checks the one given, and
refuses up front — naming the bytes and the argument that would make it fit — what cannot fit.

Also :func:`nngp` (the kernel of the readout layer's input features) and :func:`linearize` (a module computing
``f(x; w₀) + J(x)(w − w₀)`` by forward-mode products, trainable with any torch optimiser).
"""

from .._lazy import exports

# name -> the module that defines it, imported on first use (as kernelscope.nets): the modules that use the
# empirical NTK import this package only, and each method's module loads when it is first called.
_NAMES = {
    **dict.fromkeys(("ntk", "footprint", "resolve_method", "METHODS"), "kernel"),
    **dict.fromkeys(("nngp", "linearize", "LinearizedModel"), "linear"),
    **dict.fromkeys(("StructuredUnsupported", "plan"), "capture"),
    **dict.fromkeys(("LinearFeatures", "GradientFeatures", "structured_gram"), "features"),
    "Footprint": "memory",
    "jacobian": "autodiff",
    "layer_features": "structured",
    "trainable_parameters": "kernelscope._model",
}

__all__ = ["Footprint", "GradientFeatures", "LinearFeatures", "LinearizedModel", "METHODS", "StructuredUnsupported",
           "footprint", "jacobian", "layer_features", "linearize", "nngp", "ntk", "plan", "resolve_method",
           "structured_gram", "trainable_parameters"]
__getattr__, __dir__ = exports(__name__, _NAMES, ("autodiff", "capture", "features", "kernel", "linear", "memory",
                                                  "structured"))
