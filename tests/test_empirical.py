"""kernelscope.empirical: every NTK method against a direct per-example-gradient Jacobian product (1e-10 relative,
float64), on MLPs with/without biases, a residual model with a shared layer, multi-output and sequence models;
'structured' for CNNs (stride, padding, padding modes, dilation, groups, shared convs) against 'jacobian'; the
kernel contract; NNGP against explicit features and the infinite-width limit; linearize against finite differences;
clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from contract import check_kernel_contract
from kernelscope import _arrays, empirical, nets
from kernelscope._arrays import ValidationError
from kernelscope._model import forward_profile
from kernelscope.dynamics import mlp

F64 = dict(dtype=torch.float64)  # float64 explicitly: no global default dtype change
METHODS = ["jacobian", "ntvp", "structured", "auto"]


def reference_ntk(model, x1, x2):
    """Θ[n, m, o, q] = Σ_p ∂f_o(x1_n)/∂w_p ∂f_q(x2_m)/∂w_p, one autograd.grad call per example and output."""
    ps = [p for p in model.parameters() if p.requires_grad]

    def J(x):
        rows = []
        for xi in x:
            out = model(xi[None]).reshape(-1)
            rows.append(torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(out[o], ps,
                                                                                            retain_graph=True)])
                                     for o in range(out.numel())]))
        return torch.stack(rows)  # (n, O, P)

    return torch.einsum("nop,mqp->nmoq", J(x1), J(x2))


class Residual(nn.Module):
    """Not a Sequential: a skip connection and one Linear used twice (shared weights), two outputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.inp, self.shared, self.out = nn.Linear(3, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        h = h + torch.relu(self.shared(h))
        h = h + torch.tanh(self.shared(h))
        return self.out(h)


class Sequence(nn.Module):
    """Linear layers applied at every position of (N, T, d) inputs, then a mean over positions: U = T uses."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x))).mean(dim=1)  # (N, 1)


class InplaceReLU(nn.Sequential):
    def __init__(self):
        torch.manual_seed(3)
        super().__init__(nn.Linear(3, 7), nn.ReLU(inplace=True), nn.Linear(7, 1))


class WithScalarParam(nn.Module):
    """A trainable parameter outside nn.Linear: 'structured' must refuse it, the others handle it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.lin, self.gain = nn.Linear(3, 4), nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return self.gain * torch.tanh(self.lin(x)).sum(1)  # (N,)


def _models():
    torch.manual_seed(0)
    with_bias = nn.Sequential(nn.Linear(3, 7), nn.ReLU(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 1))
    no_bias = nn.Sequential(nn.Linear(3, 7, bias=False), nn.GELU(), nn.Linear(7, 1, bias=False))
    multi = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 3))
    frozen = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1))
    frozen[0].weight.requires_grad_(False)  # only some parameters trainable
    models = {"mlp_bias": with_bias, "mlp_no_bias": no_bias, "residual_shared": Residual(), "multi_output": multi,
              "frozen_weight": frozen, "inplace_relu": InplaceReLU(), "ntk_mlp": mlp(3, 8, depth=3, b_std=0.3)}
    return {k: m.double() for k, m in models.items()}


MODELS = _models()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", METHODS)
def test_every_method_matches_direct_jacobian_product(name, method):
    model = MODELS[name]
    g = torch.Generator().manual_seed(5)
    x1, x2 = torch.randn(5, 3, generator=g, **F64), torch.randn(4, 3, generator=g, **F64)
    R = reference_ntk(model, x1, x2)  # (5, 4, O, O)
    K = empirical.ntk(model, x1, x2, method=method, chunk_size=2)  # chunks smaller than the batch
    want = R[:, :, 0, 0] if R.shape[-1] == 1 else R
    assert K.shape == want.shape
    assert float((K - want).norm() / want.norm()) < 1e-10
    Kt = empirical.ntk(model, x1, x2, method=method, trace=True)
    tr = torch.diagonal(R, dim1=2, dim2=3).sum(-1)
    assert Kt.shape == (5, 4) and float((Kt - tr).norm() / tr.norm()) < 1e-10


@pytest.mark.parametrize("method", METHODS)
def test_sequence_model_with_repeated_uses(method):
    model = Sequence().double()
    g = torch.Generator().manual_seed(6)
    x1, x2 = torch.randn(4, 7, 3, generator=g, **F64), torch.randn(3, 7, 3, generator=g, **F64)
    R = reference_ntk(model, x1, x2)[:, :, 0, 0]
    K = empirical.ntk(model, x1, x2, method=method)
    assert float((K - R).norm() / R.norm()) < 1e-10


def test_parameter_of_the_models_own_forward_gets_its_jacobian_in_structured():
    """'gain' is used by the model's forward itself: 'structured' factorises the Linear and takes the model's
    per-example gradients for 'gain' alone."""
    model = WithScalarParam().double()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(7), **F64)
    R = reference_ntk(model, x, x)[:, :, 0, 0]
    the_plan = empirical.capture.plan(model, x, empirical.trainable_parameters(model))
    assert the_plan.fallback == {"": ("gain",)} and [g.weight for g in the_plan.groups] == ["lin.weight"]
    for method in METHODS:
        K = empirical.ntk(model, x, method=method)
        assert float((K - R).norm() / R.norm()) < 1e-10


def test_kernel_contract_and_array_kinds():
    model = MODELS["mlp_bias"]
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((9, 3)), rng.standard_normal((4, 3))
    check_kernel_contract(lambda A, B=None: empirical.ntk(model, A, B), X, Y,
                          blocks=lambda A, B: np.vstack([empirical.ntk(model, A[i:i + 3], B) for i in range(0, 9, 3)]))
    assert isinstance(empirical.ntk(model, X), np.ndarray)
    assert isinstance(empirical.ntk(model, torch.as_tensor(X)), torch.Tensor)
    assert isinstance(empirical.ntk(model, X.tolist()), np.ndarray)


def test_empirical_ntk_converges_to_infinite_width_ntk():
    """nets' finite networks: relative error falls roughly like m^(-1/2) (Monte Carlo over m units)."""
    X = np.random.default_rng(1).standard_normal((8, 4))
    net = nets.serial(nets.Dense(16, w_std=1.2, b_std=0.1), nets.ReLU(), nets.Dense(1, w_std=1.2, b_std=0.1))
    K_inf = net.kernel(X).ntk
    err = {m: np.mean([np.linalg.norm(empirical.ntk(net.finite(seed=s, width=m), X) - K_inf) / np.linalg.norm(K_inf)
                       for s in range(4)]) for m in (32, 2048)}
    assert err[2048] < 0.06
    assert err[2048] < err[32] / 4  # 64x the width: about 8x smaller in theory


def test_nngp_is_readout_feature_kernel_and_converges():
    X = np.random.default_rng(2).standard_normal((6, 3))
    model = mlp(3, 50, depth=2, w_std=1.3, b_std=0.2, seed=0)
    with torch.no_grad():
        phi = model[1](model[0](torch.as_tensor(X))).numpy()  # (6, 50) features entering the readout
    want = 1.3**2 * phi @ phi.T / 50 + 0.2**2
    np.testing.assert_allclose(empirical.nngp(model, X, w_std=1.3, b_std=0.2), want, rtol=1e-12)
    net = nets.serial(nets.Dense(8, w_std=1.3, b_std=0.2), nets.ReLU(), nets.Dense(1, w_std=1.3, b_std=0.2))
    K = net.kernel(X).nngp
    wide = empirical.nngp(net.finite(seed=3, width=8192), X, w_std=1.3, b_std=0.2)
    assert np.linalg.norm(wide - K) / np.linalg.norm(K) < 0.08
    with pytest.raises(ValueError, match="layer"):
        empirical.nngp(model, X, layer="nope")


def test_linearized_model_composes_with_torch_func_transforms():
    """The linearised model is a model like any other: its eNTK by every method (ntvp runs it under
    torch.func.jvp and vjp), and vmap and jvp over it, give what the plain calls give."""
    from torch.func import jvp, vmap

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    lin = empirical.linearize(model)
    with torch.no_grad():
        for p in lin.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(7, 3, **F64)
    ref = empirical.ntk(lin, x, method="jacobian")
    for method in ("ntvp", "structured", "auto"):
        torch.testing.assert_close(empirical.ntk(lin, x, method=method), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(vmap(lambda xi: lin(xi[None])[0])(x), lin(x), rtol=1e-12, atol=1e-14)
    v = torch.randn_like(x)
    h = 1e-6
    _, tangent = jvp(lin, (x,), (v,))
    torch.testing.assert_close(tangent, (lin(x + h * v) - lin(x - h * v)) / (2 * h), rtol=1e-6, atol=1e-8)


def test_linearize_first_order_and_trainable():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 10), nn.Tanh(), nn.Linear(10, 2)).double()
    x = torch.randn(6, 3, **F64)
    lin = empirical.linearize(model)
    torch.testing.assert_close(lin(x), model(x), rtol=0, atol=1e-14)  # equal at w = w₀
    dirs = [torch.randn_like(p) for p in lin.params]
    w0 = [p.detach().clone() for p in model.parameters()]
    gaps = []
    for h in (1e-2, 1e-3):
        with torch.no_grad():
            for p, w, d in zip(lin.params, w0, dirs):
                p.copy_(w + h * d)
            moved = empirical.linearize(model)  # the net itself at w₀ + h·d
            for p, w, d in zip(moved.base.parameters(), w0, dirs):
                p.copy_(w + h * d)
            gaps.append(float((moved.base(x) - lin(x)).abs().max()))
            # f_lin(w₀ + h d) − f(w₀) equals the directional derivative, checked by central differences
            for p, w, d in zip(moved.base.parameters(), w0, dirs):
                p.copy_(w - h * d)
            f_minus = moved.base(x)
            for p, w, d in zip(moved.base.parameters(), w0, dirs):
                p.copy_(w + h * d)
            central = (moved.base(x) - f_minus) / 2
            torch.testing.assert_close(lin(x) - model(x), central, rtol=0, atol=50 * h**3)
    assert gaps[1] < gaps[0] / 50  # second order: 10x smaller step, 100x smaller gap
    # trainable with any optimiser; the caller's model is untouched
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2)
    y = torch.randn(6, 2, **F64)
    before = float(((lin(x) - y) ** 2).sum().detach())
    for _ in range(50):
        opt.zero_grad()
        loss = ((lin(x) - y) ** 2).sum()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < before
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w0))


def test_clear_errors():
    x = np.zeros((3, 3))
    frozen = nn.Linear(3, 1).double().requires_grad_(False)
    with pytest.raises(ValidationError, match="trainable parameters"):
        empirical.ntk(frozen, x)
    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).double()
    with pytest.raises(ValidationError, match="fixed function.*eval"):
        empirical.ntk(bn, x)
    bn.eval()
    before = bn[1].running_mean.clone()
    K = empirical.ntk(bn, np.random.default_rng(0).standard_normal((3, 3)))
    assert K.shape == (3, 3) and torch.equal(bn[1].running_mean, before)

    class Cube(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)

        def forward(self, x):
            return self.lin(x).reshape(-1, 2, 2)

    with pytest.raises(ValidationError, match="model output"):
        empirical.ntk(Cube().double(), x)
    with pytest.raises(ValidationError, match="method"):
        empirical.ntk(MODELS["mlp_bias"], x, method="fast")
    with pytest.raises(ValidationError, match="x2"):
        empirical.ntk(MODELS["mlp_bias"], x, np.zeros((2, 4)))
    with pytest.raises(ValidationError, match="x1.*NaN"):
        empirical.ntk(MODELS["mlp_bias"], np.full((2, 3), np.nan))
    with pytest.raises(ValidationError, match="model"):
        empirical.ntk("not a model", x)


# ---------------------------------------------------------------------------------------------------------------
# 'structured' for nn.Conv2d
# ---------------------------------------------------------------------------------------------------------------

class ConvAndLinear(nn.Module):
    """Not a Sequential: a conv branch (one Conv2d used twice, shared weights) beside a Linear on the raw pixels,
    and a conv with a 2×2 output (position-pair form) before the two-output readout."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(11)
        self.conv, self.shared = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.squeeze = nn.Conv2d(3, 16, 5)  # 6×6 -> 2×2: L = 4 output positions
        self.skip, self.out = nn.Linear(72, 64), nn.Linear(64, 2)

    def forward(self, x):
        h = torch.tanh(self.conv(x))
        h = h + torch.relu(self.shared(h))
        h = torch.tanh(self.shared(h))
        z = self.squeeze(h).flatten(1) + self.skip(x.flatten(1))
        return self.out(torch.tanh(z))


def _cnns():
    torch.manual_seed(10)
    models = {
        "bias": (nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.Tanh(), nn.Flatten(),
                               nn.Linear(3 * 2 * 2, 1)), (2, 6, 6)),
        "no_bias_stride_pad": (nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False), nn.GELU(),
                                             nn.Conv2d(4, 3, 2, stride=(2, 1), padding=(1, 0), bias=False),
                                             nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(3 * 3 * 3, 1, bias=False)),
                               (2, 7, 7)),
        "dilation_multi": (nn.Sequential(nn.Conv2d(2, 4, 3, dilation=2, padding=2), nn.Tanh(),
                                         nn.Conv2d(4, 3, (2, 3), dilation=(1, 2), padding="same"), nn.Tanh(),
                                         nn.Flatten(), nn.Linear(3 * 36, 3)), (2, 6, 6)),
        "groups_reflect": (nn.Sequential(nn.Conv2d(4, 6, 3, groups=2, padding=1, padding_mode="reflect"), nn.Tanh(),
                                         nn.Conv2d(6, 3, 3, stride=2, padding=1, padding_mode="circular"),
                                         nn.Flatten(), nn.Linear(3 * 9, 2)), (4, 5, 5)),
        "conv_and_linear": (ConvAndLinear(), (2, 6, 6)),
    }
    return {k: (m.double(), shape) for k, (m, shape) in models.items()}


CNNS = _cnns()


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # the asymmetric 'same' on purpose
@pytest.mark.parametrize("name", list(CNNS))
def test_structured_cnn_matches_jacobian(name):
    model, shape = CNNS[name]
    g = torch.Generator().manual_seed(12)
    x1, x2 = torch.randn(5, *shape, generator=g, **F64), torch.randn(4, *shape, generator=g, **F64)
    assert empirical.resolve_method(model, "auto") == "structured"
    for trace in (False, True):
        want = empirical.ntk(model, x1, x2, method="jacobian", trace=trace)
        K = empirical.ntk(model, x1, x2, method="structured", trace=trace, chunk_size=2)
        assert K.shape == want.shape
        assert float((K - want).norm() / want.norm()) < 1e-10
    Kxx = empirical.ntk(model, x1, method="structured")  # x2 = None: the features of x1 are reused
    assert float((Kxx - empirical.ntk(model, x1, method="jacobian")).norm() / Kxx.norm()) < 1e-10


def test_structured_cnn_features_against_direct_product_and_both_conv_forms(monkeypatch):
    model, shape = CNNS["conv_and_linear"]
    g = torch.Generator().manual_seed(13)
    x1, x2 = torch.randn(3, *shape, generator=g, **F64), torch.randn(2, *shape, generator=g, **F64)
    kinds = [type(f).__name__ for f in empirical.layer_features(model, x1, 2)]
    # conv: weight and bias gradients, shared conv: weight gradient, squeeze: position pairs, two Linear
    assert kinds == ["GradientFeatures"] * 3 + ["LinearFeatures"] * 3
    R = reference_ntk(model, x1, x2)
    assert float((empirical.ntk(model, x1, x2, method="structured") - R).norm() / R.norm()) < 1e-10
    # features of x2 too big for the budget: recomputed per block of rows, same kernel
    params = empirical.trainable_parameters(model)
    the_plan, prof = empirical.capture.plan(model, x1, params), forward_profile(model, x1, params)
    need = {keep: empirical.memory.structured_bytes(the_plan, prof, 3, 2, 2, 8, False, 2, keep)(1) for keep in (0, 1)}
    assert need[True] > need[False]
    monkeypatch.setattr(_arrays, "memory_budget_bytes", lambda device=None: int(need[False] + 1))
    fp = empirical.footprint(model, x1, x2, method="structured")
    assert not fp.keep and fp.chunk_size == 1
    K = empirical.ntk(model, x1, x2, method="structured")
    assert float((K - R).norm() / R.norm()) < 1e-10


def test_structured_cnn_frozen_weight_and_numpy():
    torch.manual_seed(14)
    model = nn.Sequential(nn.Conv2d(1, 3, 2), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 9, 1)).double()
    model[0].weight.requires_grad_(False)  # only the conv bias is trainable there
    X = np.random.default_rng(3).standard_normal((4, 1, 4, 4))
    K = empirical.ntk(model, X, method="structured")
    assert isinstance(K, np.ndarray)
    np.testing.assert_allclose(K, empirical.ntk(model, X, method="jacobian"), rtol=1e-10)


class WeightStandardised(nn.Conv2d):  # its weight is used by its own forward, its bias by F.conv2d
    def forward(self, x):
        return self._conv_forward(x, self.weight / self.weight.norm(), self.bias)


LAYERS = {  # layer -> (parameters that factorise, module -> parameters from its per-example gradients)
    "batchnorm_affine": (lambda: nn.BatchNorm2d(2), set(), {"layer": ("layer.weight", "layer.bias")}),
    "layernorm": (lambda: nn.LayerNorm([2, 4, 4]), set(), {"layer": ("layer.weight", "layer.bias")}),
    "conv1d": (lambda: nn.Conv1d(2, 2, 3, padding=1, dilation=1, groups=2), {"layer.weight", "layer.bias"}, {}),
    "conv2d_subclass": (lambda: WeightStandardised(2, 2, 1), {"layer.bias"}, {"layer": ("layer.weight",)}),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_structured_factorises_what_it_can_and_differentiates_the_rest_per_module(name):
    """Weights of F.linear/conv1d/conv2d calls factorise; the other parameters get the per-example gradients of
    the smallest module holding their uses; every method gives the direct Jacobian product."""
    make, factored, fallback = LAYERS[name]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(15)
            self.conv, self.layer, self.out = nn.Conv2d(1, 2, 3), make(), nn.Linear(2 * 4 * 4, 1)

        def forward(self, x):
            h = self.conv(x)
            h = self.layer(h.flatten(2)).reshape(h.shape) if isinstance(self.layer, nn.Conv1d) else self.layer(h)
            return self.out(torch.tanh(h).flatten(1))

    model = Net().double().eval()
    with torch.no_grad():  # affine parameters away from their initial 1 and 0
        for p in model.layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(17), **F64))
    x = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(16), **F64)
    the_plan = empirical.capture.plan(model, x, empirical.trainable_parameters(model))
    assert the_plan.factored == factored | {"conv.weight", "conv.bias", "out.weight", "out.bias"}
    assert the_plan.fallback == fallback
    R = reference_ntk(model, x, x)[:, :, 0, 0]
    for method in ("structured", "auto"):
        K = empirical.ntk(model, x, method=method, chunk_size=2)
        assert float((K - R).norm() / R.norm()) < 1e-10


def test_nets_finite_cnn_factorises_its_scaled_convolutions():
    """The library's own NTK-parameterised convolution scales the output of F.conv2d and adds its bias outside:
    the weight factorises, the bias comes from the conv module's per-example gradients."""
    cnn = nets.serial(nets.Conv(4, 3, padding="same", b_std=0.2), nets.ReLU(), nets.Conv(4, 3, stride=2),
                      nets.ReLU(), nets.Flatten(), nets.Dense(3, b_std=0.1))
    model = cnn.finite(seed=0, in_dim=(2, 6, 6))
    x = torch.randn(4, 2, 6, 6, generator=torch.Generator().manual_seed(18), **F64)
    the_plan = empirical.capture.plan(model, x, empirical.trainable_parameters(model))
    assert {g.weight for g in the_plan.groups} == {"body.0.weight", "body.2.weight", "body.5.linear.weight"}
    assert the_plan.fallback == {"body.0": ("body.0.bias",), "body.2": ("body.2.bias",)}
    R = reference_ntk(model, x, x)
    for trace in (False, True):
        K = empirical.ntk(model, x, trace=trace)
        want = torch.diagonal(R, dim1=2, dim2=3).sum(-1) if trace else R
        assert float((K - want).norm() / want.norm()) < 1e-10


def test_structured_conv_that_sees_one_example_at_a_time():
    class Unbatched(nn.Module):  # the conv sees one (C, H, W) image at a time: the model's own Jacobian
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 2)

        def forward(self, x):
            return torch.stack([self.conv(xi).sum() for xi in x])

    model = Unbatched().double()
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(19), **F64)
    the_plan = empirical.capture.plan(model, x, empirical.trainable_parameters(model))
    assert not the_plan.groups and the_plan.fallback == {"": ("conv.weight", "conv.bias")}
    R = reference_ntk(model, x, x)[:, :, 0, 0]
    K = empirical.ntk(model, x, method="structured")
    assert float((K - R).norm() / R.norm()) < 1e-10


# ------------------------------------------------------------------------------------------------------------
# Clear messages and integer inputs (issue 17)
# ------------------------------------------------------------------------------------------------------------
def test_dropout_in_training_mode_is_refused_with_the_fix():
    m = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValidationError, match=r"Dropout.*model\.eval\(\)"):
        empirical.ntk(m, x)
    m.eval()
    assert empirical.ntk(m, x).shape == (4, 4)


def test_wrong_input_width_names_the_expected_width():
    m = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    with pytest.raises(ValidationError, match=r"x1: expected .*3 features.*got examples of shape \(5,\)"):
        empirical.ntk(m, torch.randn(4, 5, dtype=torch.float64))
    with pytest.raises(ValidationError, match=r"x2: expected examples of shape \(3,\)"):
        empirical.ntk(m, torch.randn(4, 3, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64))


@pytest.mark.parametrize("method", ["auto", "jacobian", "ntvp"])
def test_embedding_model_takes_integer_inputs(method):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Tanh(),
                            torch.nn.Linear(12, 1)).double()
    x = torch.randint(0, 10, (5, 3))
    K = empirical.ntk(m, x, method=method)
    J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(m(x[i:i + 1]).sum(), m.parameters())])
                     for i in range(5)])  # (5, P): per-example parameter gradients
    torch.testing.assert_close(K, J @ J.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(empirical.ntk(m, x.numpy(), method=method), (J @ J.T).numpy(), rtol=1e-12)
