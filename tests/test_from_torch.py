"""nets.from_torch: a torch model's architecture as a kernelscope.nets network (issue 22).

Against hand-written nets networks (to 1e-12), against the finite networks it describes (the empirical NTK of wide
versions converges like width^(-1/2)), and against torch's own default initialisation (Monte Carlo over
torch-initialised models: the NNGP, and the NTK in the standard parameterisation); refusals by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kernelscope import empirical, nets, stats
from kernelscope._arrays import KernelscopeWarning, ValidationError

S3 = 1 / np.sqrt(3)  # torch's default weights: variance 1/(3·fan_in)


class PreActBlock(nn.Module):
    """A pre-activation residual block: the residual stream carries Conv outputs (Gaussian at infinite width)."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding="same", bias=False)

    def forward(self, x):
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class ResNet(nn.Module):
    """Not a Sequential: stem, residual block, ReLU, global average pool, Linear (fx traces through)."""

    def __init__(self, c=8, out=1):
        super().__init__()
        self.stem, self.block = nn.Conv2d(1, c, 3, padding=1), PreActBlock(c)
        self.pool, self.head = nn.AdaptiveAvgPool2d(1), nn.Linear(c, out)

    def forward(self, x):
        return self.head(self.pool(torch.relu(self.block(self.stem(x)))).flatten(1))


def hand_written(c=8, w=S3, b=None, fan=None):
    """ResNet in nets, with torch's default scales unless w, b are given."""
    bias = (lambda f: 1 / np.sqrt(3 * f)) if b is None else (lambda f: b)
    conv = lambda bb: nets.Conv(c, 3, padding="same", w_std=w, b_std=bb)  # noqa: E731
    branch = nets.serial(nets.ReLU(), conv(bias(9 * c)), nets.ReLU(), conv(0.0))
    return nets.serial(conv(bias(9)), nets.FanOut(2), nets.parallel(nets.Identity(), branch), nets.FanInSum(),
                       nets.ReLU(), nets.GlobalAvgPool(), nets.Flatten(), nets.Dense(1, w_std=w, b_std=bias(c)))


X = np.random.default_rng(0).standard_normal((5, 1, 6, 6))


def _close(net_a, net_b, X):
    a, b = net_a.kernel(X), net_b.kernel(X)
    for u, v in ((a.nngp, b.nngp), (a.ntk, b.ntk)):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


def test_resnet_equals_the_hand_written_network():
    net = nets.from_torch(ResNet())
    _close(net, hand_written(), X)
    _close(nets.from_torch(ResNet(), w_std=1.4, b_std=0.1), hand_written(w=1.4, b=0.1), X)
    assert "w_std=0.577" in repr(net) and "b_std=0.192" in repr(net)  # the scales it read: 1/√3, 1/√(3·9)


def test_wide_finite_versions_converge_like_inverse_sqrt_width():
    net = nets.from_torch(ResNet(), w_std=1.4, b_std=0.1)
    Xs = X[:4, :, :4, :4]
    K = net.kernel(Xs).ntk
    widths = (32, 128, 512)
    err = [np.mean([np.linalg.norm(empirical.ntk(net.finite(seed=s, width=w), Xs) - K) / np.linalg.norm(K)
                    for s in range(5)]) for w in widths]
    slope, _ = stats.fit_slope(widths, err)
    assert -0.75 < slope < -0.35, (slope, err)
    assert err[-1] < 0.1


def _mlp(seed, width=512):
    with torch.random.fork_rng():  # torch's initialisers draw from the global generator
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, width), nn.Tanh(),
                             nn.Linear(width, 1)).double()


def test_default_scales_are_those_of_torchs_initialisation():
    """Monte Carlo over torch-initialised MLPs: the NNGP within 4 standard errors of from_torch's; the NTK of
    torch's (standard) parameterisation within 5% of from_torch(..., parameterization='standard')."""
    Xv = np.random.default_rng(1).standard_normal((5, 3))
    mc = nets.monte_carlo(_mlp, Xv, n_samples=24, seed=0)
    ntk_net = nets.from_torch(_mlp(0))
    std_net = nets.from_torch(_mlp(0), parameterization="standard")
    k = ntk_net.kernel(Xv)
    assert np.all(np.abs(mc.nngp - k.nngp) <= 4 * mc.nngp_se)
    np.testing.assert_allclose(std_net.kernel(Xv).nngp, k.nngp, rtol=1e-12)
    ks = std_net.kernel(Xv).ntk
    assert np.abs(mc.ntk - ks).max() < 0.05 * np.abs(ks).max()
    assert np.abs(mc.ntk - k.ntk).max() > 10 * np.abs(k.ntk).max()  # the NTK parameterisation is another kernel


def test_sequential_layers_and_functions():
    model = nn.Sequential(nn.Conv1d(2, 6, 3, padding=1), nn.GELU(), nn.AvgPool1d(2), nn.Conv1d(6, 6, 1),
                          nn.LeakyReLU(0.2), nn.Dropout(0.3).eval(), nn.Flatten(), nn.LayerNorm(24), nn.Linear(24, 8),
                          nn.Tanh(), nn.Identity(), nn.Linear(8, 2, bias=False))
    want = nets.serial(nets.Conv(6, 3, padding="same", w_std=S3, b_std=1 / np.sqrt(18)), nets.GELU(),
                       nets.AvgPool(2), nets.Conv(6, 1, w_std=S3, b_std=1 / np.sqrt(18)), nets.LeakyReLU(0.2),
                       nets.Identity(), nets.Flatten(), nets.LayerNorm(axis=-1),
                       nets.Dense(8, w_std=S3, b_std=1 / np.sqrt(72)), nets.Tanh(), nets.Identity(),
                       nets.Dense(2, w_std=S3, b_std=0.0))
    Xc = np.random.default_rng(2).standard_normal((4, 2, 8))
    _close(nets.from_torch(model), want, Xc)

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.lin = nn.Conv2d(1, 4, 3), nn.Linear(4, 1)

        def forward(self, x):
            return self.lin(torch.sin(self.conv(x)).mean((2, 3)))

    want = nets.serial(nets.Conv(4, 3, w_std=S3, b_std=1 / np.sqrt(27)), nets.Sin(), nets.GlobalAvgPool(),
                       nets.Dense(1, w_std=S3, b_std=0.5 / np.sqrt(3)))
    _close(nets.from_torch(Functional()), want, X)


def test_explicit_padding_equal_to_same_needs_the_input_size():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 1))
    with pytest.raises(ValidationError, match=r"Conv2d '0'.*padding=\(1, 1\) with stride=\(2, 2\).*input_shape="):
        nets.from_torch(model)
    net = nets.from_torch(model, input_shape=(1, 7, 7))  # ⌈7/2⌉ = 4 outputs, one zero before: TF's 'same'
    Xo = np.random.default_rng(3).standard_normal((3, 1, 7, 7))
    finite = net.finite(seed=0, in_dim=(1, 7, 7))
    assert empirical.ntk(finite, Xo).shape == (3, 3) and "padding='same'" in repr(net)


class _Cat(nn.Module):
    def forward(self, x):
        return torch.cat([x, x], 1)


class _Gain(nn.Module):
    def __init__(self):
        super().__init__()
        self.gain, self.lin = nn.Parameter(torch.ones(())), nn.Linear(3, 1)

    def forward(self, x):
        return self.lin(self.gain * x)


@pytest.mark.parametrize("model, match", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 1)), r"MaxPool2d '1'.*max pooling"),
    (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)), r"BatchNorm1d '1'.*training mode.*eval"),
    (nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1)), r"Dropout '1'.*training mode"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), nn.Flatten(), nn.Linear(8, 1)), r"Conv2d '0'.*dilation"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), r"padding_mode='reflect'"),
    (nn.Sequential(nn.Linear(3, 4), _Cat(), nn.Linear(8, 1)), r"cat"),
    (_Gain(), r"mul|gain"),
    (nn.Sequential(nn.Linear(3, 4), nn.PReLU(), nn.Linear(4, 1)), r"PReLU '1'.*not a layer"),
], ids=["maxpool", "batchnorm_train", "dropout_train", "dilation", "reflect", "concat", "parameter", "prelu"])
def test_unsupported_modules_refused_by_name_with_the_way_out(model, match):
    with pytest.raises(ValidationError, match=match) as info:
        nets.from_torch(model)
    assert "monte_carlo" in str(info.value)


def test_batchnorm_in_eval_mode_at_its_initial_statistics_is_a_scale():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, eps=0.1), nn.ReLU(), nn.Linear(4, 1)).eval()
    s = 1 / np.sqrt(1.1)
    want = nets.serial(nets.Dense(4, S3, 1 / 3), nets.ABReLU(s, s), nets.ReLU(), nets.Dense(1, S3, 0.5 / np.sqrt(3)))
    _close(nets.from_torch(model), want, np.random.default_rng(4).standard_normal((4, 3)))
    with torch.no_grad():
        model[1].running_var.fill_(2.0)
    with pytest.raises(ValidationError, match="learnt statistics"):
        nets.from_torch(model)


def test_activation_of_a_post_activation_residual_stream_is_flagged():
    class PostAct(nn.Module):  # relu(x + conv(x)) with x a ReLU output: not a Gaussian process
        def __init__(self):
            super().__init__()
            self.stem, self.conv, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), \
                nn.Linear(4 * 36, 1)

        def forward(self, x):
            h = torch.relu(self.stem(x))
            return self.head(torch.relu(h + self.conv(h)).flatten(1))

    with pytest.warns(KernelscopeWarning, match="treats its input.*as Gaussian"):
        nets.from_torch(PostAct())
