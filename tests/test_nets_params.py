"""nets descriptions as scikit-learn parameters (nets/params.py) and declared input shapes (nets/shape.py): the
references are networks built directly with the values set, and the kernels of the same inputs in (N, C, L)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone

from kernelscope import nets
from kernelscope._arrays import ValidationError


def cnn(w=1.4, b=0.1, **kw):
    return nets.serial(nets.Conv(8, 3, padding="circular", w_std=w, b_std=b), nets.ReLU(),
                       nets.Conv(8, 3, padding="circular", w_std=w, b_std=b), nets.Erf(), nets.GlobalAvgPool(),
                       nets.Dense(1, w, b), **kw)


X = np.random.default_rng(0).normal(size=(7, 12))


class TestParameters:
    def test_get_params_names_every_layer_argument(self):
        net = cnn(input_shape=(1, 12))
        shallow = net.get_params(deep=False)
        assert set(shallow) == {"layers", "input_shape"} and len(shallow["layers"]) == 6
        deep = net.get_params()
        assert deep["layers__0__kernel_size"] == 3 and deep["layers__0__padding"] == "circular"
        assert deep["layers__5__out"] == 1 and deep["layers__3"] is net.layers[3]
        assert deep["w_std"] == 1.4 and deep["b_std"] == 0.1  # shared by the three weight layers
        assert nets.Dense(3, 2.0).get_params() == {"out": 3, "w_std": 2.0, "b_std": 0.0, "parameterization": "ntk"}
        assert nets.GlobalAvgPool().get_params() == {} and nets.LeakyReLU(0.2).get_params() == {"slope": 0.2}

    def test_set_params_equals_the_network_built_with_the_values(self):
        net = cnn().set_params(w_std=2.0)
        np.testing.assert_array_equal(net.kernel(X.reshape(7, 1, 12)).ntk, cnn(w=2.0).kernel(X.reshape(7, 1, 12)).ntk)
        net.set_params(layers__5__b_std=0.3, layers__0__w_std=1.0)
        assert net.get_params()["w_std"] is None and net.get_params()["b_std"] is None  # no longer shared
        assert (net.layers[0].w_std, net.layers[2].w_std, net.layers[5].b_std) == (1.0, 2.0, 0.3)
        net.set_params(w_std=None)  # None (what get_params gives when the values differ) changes nothing
        assert net.layers[0].w_std == 1.0
        net.set_params(layers__3=nets.ReLU())  # a layer replaced
        assert isinstance(net.layers[3], nets.ReLU) and len(net.layers) == 6

    def test_a_layers_own_value_given_with_the_shared_one_wins(self):
        net = cnn().set_params(w_std=2.0, layers__0__w_std=0.5)
        assert [layer.w_std for layer in net.dense_layers()] == [0.5, 2.0, 2.0]

    def test_set_params_validates_like_the_constructor(self):
        with pytest.raises(ValidationError, match="w_std: expected a positive number"):
            cnn().set_params(layers__0__w_std=-1.0)
        with pytest.raises(ValidationError, match="depth: expected one of the parameters of Serial: layers, "):
            cnn().set_params(depth=3)

    def test_clone_is_a_deep_copy_with_the_same_kernel(self):
        net = cnn(input_shape=(1, 12))
        copy = clone(net)
        assert copy is not net and copy.layers[0] is not net.layers[0] and repr(copy) == repr(net)
        copy.set_params(w_std=3.0)
        assert net.layers[0].w_std == 1.4  # the original is untouched
        np.testing.assert_array_equal(clone(net).kernel(X).nngp, net.kernel(X).nngp)
        back = pickle.loads(pickle.dumps(net))
        assert back.get_params()["layers__0__w_std"] == 1.4 and repr(back) == repr(net)

    def test_nested_networks_share_out_to_all_weight_layers(self):
        block = nets.serial(nets.Dense(8, 1.0), nets.ReLU(), nets.Dense(8, 1.0))
        net = nets.serial(nets.Dense(8, 1.0), nets.FanOut(2), nets.parallel(block, nets.Identity()),
                          nets.FanInSum(), nets.Dense(1, 1.0))
        net.set_params(w_std=1.7)
        assert {layer.w_std for layer in net.dense_layers()} == {1.7}
        assert net.get_params()["layers__2__layers__0__layers__2__w_std"] == 1.7


class TestInputShape:
    def test_rows_equal_the_kernel_on_positions(self):
        plain, shaped, first = cnn(), cnn(input_shape=(1, 12)), nets.serial(nets.Reshape((1, 12)), cnn())
        ref = plain.kernel(X.reshape(7, 1, 12), X[:3].reshape(3, 1, 12))
        for net in (shaped, first):
            for x1, x2 in ((X, X[:3]), (X.reshape(7, 1, 12), X[:3].reshape(3, 1, 12))):
                k = net.kernel(x1, x2)
                np.testing.assert_array_equal(k.ntk, ref.ntk)
                np.testing.assert_array_equal(k.nngp, ref.nngp)
        np.testing.assert_array_equal(shaped.kernel(X, diag=True).ntk, plain.kernel(X.reshape(7, 1, 12), diag=True).ntk)
        t = shaped.kernel(torch.as_tensor(X))  # a tensor in, a tensor out
        assert isinstance(t.ntk, torch.Tensor) and t.ntk.shape == (7, 7)
        assert isinstance(shaped.kernel(X.tolist()).ntk, np.ndarray)

    def test_two_channels_follow_torchs_order(self):
        net = nets.serial(nets.Conv(4, 3), nets.ReLU(), nets.Flatten(), nets.Dense(1), input_shape=(2, 6))
        ref = nets.serial(nets.Conv(4, 3), nets.ReLU(), nets.Flatten(), nets.Dense(1))
        np.testing.assert_array_equal(net.kernel(X).ntk, ref.kernel(X.reshape(7, 2, 6)).ntk)

    def test_finite_network_takes_rows(self):
        net = cnn(input_shape=(1, 12))
        a = net.finite(seed=3)(torch.as_tensor(X))
        b = cnn().finite(seed=3)(torch.as_tensor(X).reshape(7, 1, 12))
        assert torch.equal(a, b)
        assert net.finite(seed=3, in_dim=12)(torch.as_tensor(X)).shape == (7, 1)

    def test_wrong_shapes_are_refused_with_the_way_out(self):
        net = cnn(input_shape=(1, 12))
        with pytest.raises(ValidationError, match=r"x1: expected inputs of shape \(n_samples, 12\) or "):
            net.kernel(X[:, :10])
        with pytest.raises(ValidationError, match="Reshape: expected to be the first layer"):
            nets.serial(nets.Dense(12), nets.Reshape((1, 12)), nets.Conv(2, 3), nets.Flatten(), nets.Dense(1)
                        ).kernel(X)
        with pytest.raises(ValidationError, match=r"Declare the per-example shape \(serial\(\.\.\., input_shape"):
            cnn().kernel(X)
        with pytest.raises(ValidationError, match="shape: expected a per-example shape"):
            nets.Reshape((1, 2, 3, 4))
