"""The perceptrons of the dynamics chapters: :func:`kernelscope.nets.finite.mlp` (one builder for the library)."""

from ..nets.finite import ACTIVATIONS, DenseModule, mlp

NTKDense = DenseModule  # alias-for-merge

__all__ = ["mlp", "ACTIVATIONS", "NTKDense"]
