"""MNIST-1D: the data set against the ``mnist1d`` package that defines it, the experiment's pieces against dense
kernels and hand-made fits, the invariance that pooling buys, and the chapter end to end."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import kernelscope as ks
from kernelscope import data
from kernelscope._arrays import ValidationError
from kernelscope.experiments import mnist1d as E


@pytest.fixture(scope="module")
def small():
    return data.mnist1d(60, 40)


class TestData:
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_equals_the_packages_data_set(self, shuffle):
        package = pytest.importorskip("mnist1d.data")
        state, py_state = np.random.get_state(), random.getstate()
        try:  # the package seeds NumPy's and Python's global generators: put them back afterwards
            args = package.get_dataset_args()
            args.shuffle_seq = shuffle
            ref = package.make_dataset(args)
        finally:
            np.random.set_state(state)
            random.setstate(py_state)
        X, y, Xt, yt = data.mnist1d(shuffle_positions=shuffle)
        np.testing.assert_allclose(X, ref["x"], rtol=0, atol=1e-13)
        np.testing.assert_allclose(Xt, ref["x_test"], rtol=0, atol=1e-13)
        np.testing.assert_array_equal(y, ref["y"])
        np.testing.assert_array_equal(yt, ref["y_test"])

    def test_the_papers_split_and_no_global_state(self):
        before = np.random.get_state()[1].copy()
        X, y, Xt, yt = data.mnist1d()
        assert np.array_equal(np.random.get_state()[1], before)
        assert X.shape == (4000, 40) and Xt.shape == (1000, 40) and y.dtype == np.int64
        assert set(np.unique(np.concatenate([y, yt]))) == set(range(10))
        assert np.bincount(np.concatenate([y, yt])).tolist() == [500] * 10  # 500 signals per digit in all
        both = np.concatenate([X, Xt])
        assert abs(both.mean()) < 1e-12 and abs(both.std() - 1) < 1e-12  # standardised together
        a = data.mnist1d(100, 10)
        np.testing.assert_array_equal(a[0], X[:100])
        np.testing.assert_array_equal(a[2], Xt[:10])
        assert not np.array_equal(data.mnist1d(10, 10, seed=1)[0], X[:10])
        with pytest.raises(ValidationError, match="n_train: expected an integer <= 4000"):
            data.mnist1d(5000)


class TestExperiment:
    def test_panels_equal_the_dense_kernels_and_resume(self, small):
        X, y, Xt, yt = small
        net = E.mnist1d_networks()["CNN + Flatten"]
        saved, computed = {}, []

        def panels(name, compute):
            if name not in saved:
                computed.append(name)
                saved[name] = compute()
            return saved[name]

        K = E.kernel_panels(net, X, Xt, block=25, panels=panels)  # 25 does not divide 60
        dense, cross = net.kernel(X), net.kernel(Xt, X)
        for kind in ("nngp", "ntk"):
            np.testing.assert_allclose(K[f"train_{kind}"], getattr(dense, kind), rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(K[f"test_{kind}"], getattr(cross, kind), rtol=1e-13, atol=1e-15)
        assert computed == ["train-0-25", "train-25-50", "train-50-60", "test-0-25", "test-25-40"]
        again = E.kernel_panels(net, X, Xt, block=25, panels=panels)  # everything saved: nothing computed
        assert len(computed) == 5 and np.array_equal(again["train_ntk"], K["train_ntk"])

    def test_classifiers_are_the_estimator_on_the_leading_blocks(self, small):
        X, y, Xt, yt = small
        net = E.mnist1d_networks()["MLP"]
        K = E.kernel_panels(net, X, Xt)
        res = E.classify_architecture("MLP", K, y, yt, (20, 60))
        for i, n in enumerate((20, 60)):
            for kind, nngp in (("NNGP", True), ("NTK", False)):
                Kn = getattr(net.kernel(X[:n]), kind.lower())
                ridge = E.RELATIVE_RIDGE * np.mean(np.diag(Kn))
                acc = ks.KernelClassifier(net, ridge=ridge, nngp=nngp).fit(X[:n], y[:n]).score(Xt, yt)
                assert res.accuracy[kind][i] == pytest.approx(acc, abs=1e-12)
        assert set(res.temperature) == {"NNGP", "NTK"} and 0 <= res.calibration_error["NTK"] <= 1

    def test_pooling_is_invariant_to_circular_shifts(self, small):
        X = small[2][:2]
        nets_ = E.mnist1d_networks()
        out = E.shift_experiment(nets_, X)
        for kind in ("NNGP", "NTK"):
            np.testing.assert_allclose(out.ratio[f"CNN + GlobalAvgPool {kind}"], 1.0, rtol=1e-12)
            flat = np.asarray(out.ratio[f"CNN + Flatten {kind}"])
            assert flat[0] == 1.0 and flat[1:].max() < 0.99
        # Flatten with circular convolutions is invariant to shifting *both* signals (not one of them)
        flat = nets_["CNN + Flatten"]
        a, b = flat.kernel(X[:1], X[1:]).ntk, flat.kernel(np.roll(X[:1], 7, 1), np.roll(X[1:], 7, 1)).ntk
        np.testing.assert_allclose(a, b, rtol=1e-12)

    def test_a_cnn_classifier_on_the_rows(self, small):
        X, y, Xt, yt = small
        cnn = E.mnist1d_networks()["CNN + GlobalAvgPool"]
        clf = ks.KernelClassifier(cnn, ridge=1e-3).fit(X, y)
        K = cnn.kernel(X)
        pre = ks.KernelClassifier("precomputed", ridge=1e-3).fit(K.ntk, y)
        np.testing.assert_array_equal(clf.predict(Xt), pre.predict(cnn.kernel(Xt, X).ntk))
        assert clf.score(Xt, yt) > 0.3  # ten classes: chance is 0.1


def test_chapter_end_to_end(tmp_path):
    from kernelscope.tour import run_tour

    res = run_tour(tmp_path, only=["mnist1d"], quick=True, progress=False)
    assert res.done == ["mnist1d"]
    chapter = json.loads((tmp_path / "results.json").read_text())["chapters"]["mnist1d"]
    acc = chapter["numbers"]["accuracy"]
    assert set(acc) == {"MLP", "CNN + Flatten", "CNN + GlobalAvgPool"}
    assert chapter["numbers"]["shift_min_ratio"]["CNN + GlobalAvgPool NTK"] == pytest.approx(1.0, abs=1e-12)
    assert any("Pooling is worth data" in f for f in chapter["findings"])
    for name in ("learning_curves", "pooling"):
        assert (tmp_path / "figures" / "quick-seed0" / f"mnist1d_{name}.png").read_bytes()[:4] == b"\x89PNG"
    steps = tmp_path / "steps" / "mnist1d-quick-seed0"
    assert not list(steps.glob("kernels-*"))  # the panels are deleted once the classifiers are saved
    assert {p.stem for p in steps.glob("*.json")} == {"mlp", "cnnflatten", "cnnglobalavgpool", "shift"}
