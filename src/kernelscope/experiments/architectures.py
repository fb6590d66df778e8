"""The architectures the story compares on images and signals: an MLP against CNNs read out two ways.

Only :mod:`kernelscope.nets` below it (no estimator), so every experiment can build them.
"""

from __future__ import annotations

from typing import Any

from .. import nets

__all__ = ["W_STD", "B_STD", "compared_networks"]

W_STD, B_STD = 1.4, 0.1


def compared_networks(width: int = 256, *, input_shape: tuple[int, ...] = (1, 8, 8), depth: int = 2,
                      kernel_size: int = 3, padding: str = "same") -> dict[str, Any]:
    """The compared architectures, all taking flat rows (the CNNs declare ``input_shape`` and also take inputs of
    that shape): a two-hidden-layer ReLU MLP, and ``depth`` ReLU convolutions read out by Flatten or by
    GlobalAvgPool, then a Dense readout (σ_w = 1.4, σ_b = 0.1 everywhere). ``width`` is the finite width of
    ``net.finite()``; the infinite-width kernels do not depend on it."""
    def cnn(head):
        body = []
        for _ in range(depth):
            body += [nets.Conv(width, kernel_size, padding=padding, w_std=W_STD, b_std=B_STD), nets.ReLU()]
        return nets.serial(*body, head, nets.Dense(1, W_STD, B_STD), input_shape=input_shape)

    return {
        "MLP": nets.serial(nets.Dense(width, W_STD, B_STD), nets.ReLU(), nets.Dense(width, W_STD, B_STD),
                           nets.ReLU(), nets.Dense(1, W_STD, B_STD)),
        "CNN + Flatten": cnn(nets.Flatten()),
        "CNN + GlobalAvgPool": cnn(nets.GlobalAvgPool()),
    }
