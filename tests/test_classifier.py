"""KernelClassifier: scikit-learn's own estimator checks, the regressor on centred one-hot targets as the reference,
calibrated probabilities against a brute-force leave-one-out temperature, and networks (a CNN on rows, its w_std in
a grid search) against fits written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

import kernelscope as ks
from kernelscope import data, kernels, nets
from kernelscope._arrays import ValidationError
from kernelscope.regression import KernelRegressor, fit_temperature

KernelClassifier = ks.KernelClassifier


def _expected_failures(estimator):
    if estimator.probability:
        # The temperature is fitted on leave-one-out outputs: a point counted twice is not left out with its copy,
        # so weight 2 and a duplicate give (slightly) different probabilities, by design.
        out = {"check_sample_weight_equivalence_on_dense_data": "leave-one-out differs for duplicated points"}
        if estimator.kernel == "precomputed":  # this check fits raw features, ignoring the pairwise tag
            out["check_decision_proba_consistency"] = "fits (n, 2) features where a kernel matrix is expected"
        return out
    return {}


@parametrize_with_checks([KernelClassifier(), KernelClassifier(kernel="laplace", ridge=1e-3, probability=True),
                          KernelClassifier(kernel="precomputed", ridge=1e-3, probability=True)],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def three_spirals():
    X, y = data.spirals(30, classes=3, noise=0.2, seed=0)
    Xt, yt = data.spirals(20, classes=3, noise=0.2, seed=1)
    return X, y, Xt, yt


def cnn(w_std=1.4):
    return nets.serial(nets.Conv(8, 3, padding="circular", w_std=w_std, b_std=0.1), nets.ReLU(),
                       nets.GlobalAvgPool(), nets.Dense(1, w_std, 0.1), input_shape=(1, 10))


def signals(n, seed):
    """Ten-point signals: a bump at a random place, its sign the class (a translation-invariant task)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = 0.3 * rng.standard_normal((n, 10))
    X[np.arange(n), rng.integers(0, 10, n)] += np.where(y == 1, 2.0, -2.0)
    return X, y


class TestIsTheRegressorOnOneHotTargets:
    @pytest.mark.parametrize("kernel,kw", [("rbf", {"kernel_params": {"gamma": 3.0}}), (cnn(), {}),
                                           (cnn(), {"nngp": True})], ids=["rbf", "cnn-ntk", "cnn-nngp"])
    def test_outputs_and_classes(self, kernel, kw):
        X, y = data.spirals(15, classes=3, seed=0) if isinstance(kernel, str) else signals(40, 0)
        if not isinstance(kernel, str):
            y = y + 2 * (X.sum(1) > 0)  # four classes
        Xt = X[::3] + 0.05
        clf = KernelClassifier(kernel, ridge=1e-3, **kw).fit(X, y)
        reg = KernelRegressor(kernel, ridge=1e-3, **kw).fit(X, data.one_hot_centred(np.searchsorted(clf.classes_, y)))
        F = reg.predict(Xt)
        np.testing.assert_allclose(clf.decision_function(Xt), F, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(clf.predict(Xt), clf.classes_[F.argmax(1)])
        mean, std = clf.decision_function(Xt, return_std=True)
        np.testing.assert_allclose(std, reg.predict(Xt, return_std=True)[1], rtol=1e-12)

    def test_string_labels_and_two_classes(self):
        X, y = signals(40, 1)
        labels = np.array(["down", "up"])[y]
        clf = KernelClassifier(cnn(), ridge=1e-3).fit(X, labels)
        reg = KernelRegressor(cnn(), ridge=1e-3).fit(X, data.one_hot_centred(y))
        F = reg.predict(X[:8])
        d, s = clf.decision_function(X[:8], return_std=True)
        np.testing.assert_allclose(d, F[:, 1] - F[:, 0], rtol=1e-12, atol=1e-14)  # positive: classes_[1]
        np.testing.assert_allclose(s, 2 * reg.predict(X[:8], return_std=True)[1][:, 0], rtol=1e-12)
        assert list(clf.classes_) == ["down", "up"] and list(clf.predict(X[:8])) == list(labels[np.where(d > 0, 1, 0)])

    def test_tensor_in_tensor_out(self, three_spirals):
        X, y, Xt, _ = three_spirals
        clf = KernelClassifier("rbf", ridge=1e-2, probability=True).fit(X, y)
        for method in (clf.decision_function, clf.predict_proba):
            out = method(torch.as_tensor(Xt))
            assert isinstance(out, torch.Tensor)
            np.testing.assert_allclose(out.numpy(), method(Xt), rtol=1e-13)

    def test_precomputed_equals_the_kernel_and_cross_validates(self, three_spirals):
        X, y, Xt, yt = three_spirals
        k = kernels.RBF(lengthscale=0.3)
        pre = KernelClassifier("precomputed", ridge=1e-2, probability=True).fit(k(X), y)
        direct = KernelClassifier(k, ridge=1e-2, probability=True).fit(X, y)
        np.testing.assert_allclose(pre.decision_function(k(Xt, X)), direct.decision_function(Xt), rtol=1e-12)
        np.testing.assert_allclose(pre.predict_proba(k(Xt, X)), direct.predict_proba(Xt), rtol=1e-10)
        folds = KFold(3, shuffle=True, random_state=0)  # the pairwise tag: folds cut rows and columns of K
        a = cross_val_score(KernelClassifier("precomputed", ridge=1e-2), k(X), y, cv=folds)
        b = cross_val_score(KernelClassifier(k, ridge=1e-2), X, y, cv=folds)
        np.testing.assert_allclose(a, b)
        with pytest.raises(ValidationError, match="return_std"):
            pre.decision_function(k(Xt, X), return_std=True)


class TestProbabilities:
    def test_rows_sum_to_one_and_agree_with_predict(self, three_spirals):
        X, y, Xt, _ = three_spirals
        clf = KernelClassifier("rbf", ridge=1e-2, kernel_params={"gamma": 5.0}, probability=True).fit(X, y)
        P = clf.predict_proba(Xt)
        assert P.shape == (len(Xt), 3) and np.all(P >= 0)
        np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-14)
        np.testing.assert_array_equal(clf.classes_[P.argmax(1)], clf.predict(Xt))
        np.testing.assert_allclose(np.exp(clf.predict_log_proba(Xt)), P, rtol=1e-12)

    def test_temperature_minimises_the_brute_force_leave_one_out_cross_entropy(self, three_spirals):
        X, y, _, _ = three_spirals
        params = {"kernel": "rbf", "ridge": 0.1, "kernel_params": {"gamma": 1.0}}  # leave-one-out makes mistakes
        clf = KernelClassifier(**params, probability=True).fit(X, y)
        Y = data.one_hot_centred(y)
        loo = np.array([KernelRegressor(**params).fit(np.delete(X, i, 0), np.delete(Y, i, 0)).predict(X[i:i + 1])[0]
                        for i in range(len(y))])  # each point scored by the model fitted without it
        np.testing.assert_allclose(clf.regressor_.leave_one_out(), loo, rtol=1e-9, atol=1e-11)

        def ce(T):
            return -np.mean(log_softmax(loo / T, axis=1)[np.arange(len(y)), y])

        grid = np.geomspace(clf.temperature_ / 3, clf.temperature_ * 3, 301)
        best = grid[np.argmin([ce(T) for T in grid])]
        assert clf.temperature_ == pytest.approx(best, rel=0.02)
        assert ce(clf.temperature_) <= min(ce(T) for T in grid) + 1e-9

    def test_fit_temperature_edges(self):
        F = np.array([[1.0, -1.0], [-1.0, 1.0], [0.5, -0.5]])
        low = 1e-6 * F.std(ddof=1)
        assert fit_temperature(F, [0, 1, 0]) == pytest.approx(low)  # separated perfectly: T at its lower bound
        assert fit_temperature(np.zeros((3, 2)), [0, 1, 0]) == 1.0  # no information: any T; 1 is returned
        kept = F[[0, 2]]  # weight 0 leaves the one mistake out
        assert fit_temperature(F, [0, 0, 0], sample_weight=[1.0, 0.0, 1.0]) == pytest.approx(1e-6 * kept.std(ddof=1))
        T = fit_temperature(F, [0, 0, 0])  # one mistake: a finite temperature
        assert 0.1 < T < 10

    def test_weighted_leave_one_out_is_the_brute_force_one(self, three_spirals):
        X, y, _, _ = three_spirals
        w = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
        reg = KernelRegressor("rbf", ridge=0.1).fit(X, y.astype(float), sample_weight=w)
        loo = [KernelRegressor("rbf", ridge=0.1).fit(np.delete(X, i, 0), np.delete(y, i).astype(float),
                                                     sample_weight=np.delete(w, i)).predict(X[i:i + 1])[0]
               for i in range(len(y))]
        np.testing.assert_allclose(reg.leave_one_out(), loo, rtol=1e-9, atol=1e-11)

    def test_asked_for_in_advance(self, three_spirals):
        X, y, Xt, _ = three_spirals
        clf = KernelClassifier("rbf", ridge=1e-2).fit(X, y)
        assert not hasattr(clf, "predict_proba")
        with pytest.raises(AttributeError, match="has no attribute 'predict_proba'") as info:
            clf.predict_proba(Xt)
        assert "probability=True" in str(info.value.__cause__)
        with pytest.raises(ValidationError, match="probability: expected ridge > 0 and solver 'cholesky'"):
            KernelClassifier("rbf", ridge=0.0, probability=True).fit(X, y)
        with pytest.raises(ValidationError, match="probability: expected ridge > 0"):
            KernelClassifier("rbf", ridge=1e-2, solver="cg", probability=True).fit(X, y)
        with pytest.raises(ValueError, match="Unknown label type"):
            KernelClassifier().fit(X, y + 0.5)


class TestNetworksAsEstimators:
    def test_grid_search_over_w_std_of_a_cnn(self):
        X, y = signals(48, 2)
        grid = [0.8, 1.4, 2.5]
        folds = KFold(3, shuffle=True, random_state=0)
        search = GridSearchCV(KernelClassifier(cnn(), ridge=1e-4, nngp=True), {"kernel__w_std": grid}, cv=folds)
        search.fit(X, y)
        by_hand = []  # the same folds, each network built with its w_std
        for w in grid:
            scores = [KernelClassifier(cnn(w), ridge=1e-4, nngp=True).fit(X[tr], y[tr]).score(X[te], y[te])
                      for tr, te in folds.split(X)]
            by_hand.append(np.mean(scores))
        np.testing.assert_allclose(search.cv_results_["mean_test_score"], by_hand)
        assert search.best_params_ == {"kernel__w_std": grid[int(np.argmax(by_hand))]}
        assert search.best_estimator_.kernel.layers[0].w_std == search.best_params_["kernel__w_std"]

    def test_optimize_reaches_a_networks_w_std_and_b_std(self):
        X, y = data.regression_1d(15, seed=0)
        net = nets.serial(nets.Dense(8, 1.0, 0.2), nets.ReLU(), nets.Dense(1, 1.0, 0.2))
        kern = ks.regression.NetworkKernel(net, nngp=True)
        assert kern.hyperparameters(1) == {"net__w_std": 1.0, "net__b_std": 0.2}
        model = KernelRegressor(net, ridge=0.05, nngp=True, optimize=True).fit(X, y)
        found = model.kernel_.net
        assert found is not net and net.layers[0].w_std == 1.0  # the estimator's kernel is left as given
        # the evidence of the optimum is at least that of its neighbours, each network built by hand
        w, b = found.layers[0].w_std, found.layers[0].b_std
        lml = model.log_marginal_likelihood()
        for dw, db in ((1.05, 1), (0.95, 1), (1, 1.05), (1, 0.95)):
            other = nets.serial(nets.Dense(8, w * dw, b * db), nets.ReLU(), nets.Dense(1, w * dw, b * db))
            fit = KernelRegressor(other, ridge=model.ridge_, nngp=True).fit(X, y)
            assert lml >= fit.log_marginal_likelihood() - 1e-6

    def test_per_layer_hyperparameters_when_the_layers_differ(self):
        net = nets.serial(nets.Dense(8, 1.0, 0.0), nets.ReLU(), nets.Dense(1, 2.0, 0.3))
        assert ks.regression.NetworkKernel(net).hyperparameters(3) == {
            "net__layers__0__w_std": 1.0, "net__layers__2__w_std": 2.0, "net__layers__2__b_std": 0.3}
