"""The report and the library as a reader meets them (issue 24): the page's layout, figures whose text can be read
and whose labels carry no raw subscripts, the prose naming models rather than result keys, and objects that print
as something useful."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

# a subscript written as plain text ("Θ_T", "f_net") outside $...$ mathtext: matplotlib would print the underscore
RAW_SUBSCRIPT = re.compile(r"[A-Za-zΘθλσ‖∞)]_[A-Za-z0-9∞{(]")


def _texts(fig):
    """Every visible text of a figure: titles, axis labels, tick labels, legend entries and free text."""
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _check_readable(fig, min_points: float = 8.0):
    for t in _texts(fig):
        text = t.get_text()
        assert t.get_fontsize() >= min_points, f"{text!r} is {t.get_fontsize()} pt"
        plain = re.sub(r"\$[^$]*\$", "", text)  # mathtext sets its own subscripts
        assert not RAW_SUBSCRIPT.search(plain), f"raw subscript in {text!r}"


# ---------------------------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------------------------
def test_page_numbers_chapters_once_and_lets_figures_be_wider_than_text():
    from kernelscope.report import render_report
    from kernelscope.story import Chapter, ChapterResult, Figure

    chs = [Chapter("a", 1, "1. Linear systems", "<p>x</p>", run=lambda c: None),
           Chapter("b", 2, "2. Kernels", "<p>y</p>", run=lambda c: None)]
    res = {"a": ChapterResult(figures=[Figure("figures/a.png", "cap")])}
    html = render_report(chs, res, {})
    css = html[html.index("<style>"):html.index("</style>")]
    # the titles carry their numbers: the contents list adds none ("1. 1. Linear systems")
    assert re.search(r"nav ol\{[^}]*list-style:none", css)
    assert "<li><a href='#a'>1. Linear systems</a></li>" in html
    # text in a column of 1100 px, figures up to 1500 px (a wide multi-panel figure is not squeezed)
    assert "section>:not(figure){max-width:1100px" in css and "section>figure{max-width:1500px}" in css
    assert "figure img{max-width:100%;height:auto" in css


# ---------------------------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------------------------
def _digits_result():
    from kernelscope.experiments.nets import DigitsResult

    acc = {"rbf": 1 - 6 / 797}
    for act, errs in (("ReLU", (5, 5, 5)), ("Erf", (6, 5, 7))):
        for which, shift in (("nngp", 0), ("ntk", 2)):
            for d, e in zip((1, 2, 3), errs):
                acc[f"{act}-{which}-{d}"] = 1 - (e + shift) / 797
    return DigitsResult(acc, {k: 0.1 for k in acc}, [1, 2, 3], ["ReLU", "Erf"], 1000, 797, 1e-3, 0.01)


def test_digits_figure_counts_misclassified_images():
    """All models lie within a few images of each other: the axis counts images, each curve still visible."""
    from kernelscope.plots.nets import plot_digits_accuracy

    ax = plot_digits_accuracy(_digits_result())
    assert "misclassified" in ax.get_ylabel() and "797" in ax.get_ylabel()
    lo, hi = ax.get_ylim()
    assert lo < 0 and hi < 15  # an axis of a few images, not 0.90-1.00
    curves = [ln for ln in ax.lines if not ln.get_label().startswith("_") and "RBF" not in ln.get_label()]
    xs = [tuple(np.round(ln.get_xdata(), 3)) for ln in curves]
    assert len(set(xs)) == len(curves) == 4  # shifted sideways: equal counts do not hide one another
    np.testing.assert_array_equal(curves[0].get_ydata(), [5, 5, 5])
    _check_readable(ax.figure)


def _regime_table():
    from kernelscope.experiments.regimes import RegimeRow, RegimeTable

    rows = [RegimeRow("NNGP kernel regression", math.inf, 1.0, 0.990, alignment_0=0.382, alignment_T=0.382),
            RegimeRow("NTK kernel regression", math.inf, 1.0, 0.989, alignment_0=0.386, alignment_T=0.386)]
    for w, acc, ch, wc, a0, aT in ((16, 0.867, 0.88, 2.39, 0.363, 0.389), (256, 0.963, 0.835, 0.888, 0.386, 0.392),
                                    (4096, 0.962, 0.0518, 0.196, 0.386, 0.385)):
        rows.append(RegimeRow(f"finite net, width {w}", float(w), acc, acc, ch, wc, a0, aT))
    return RegimeTable(rows, {"steps": 1000})


def test_regimes_figure_gives_accuracy_and_alignment_axes_of_their_own():
    """The text's key result (alignment 0.363 -> 0.389 at width 16, 0.386 -> 0.385 at 4096) must be visible:
    alignment on its own zoomed axis, not on the 0-1 axis of the accuracies."""
    from kernelscope.plots.spirals import plot_regimes

    axes = plot_regimes(_regime_table())
    assert len(axes) == 3
    lo, hi = axes[2].get_ylim()
    assert lo > 0.3 and hi < 0.45 and "alignment" in axes[2].get_ylabel()
    lo, hi = axes[1].get_ylim()
    assert lo > 0.8 and hi <= 1.02 and "accuracy" in axes[1].get_ylabel()
    assert len(axes[2].texts) == 3  # an arrow per width, from Θ₀ to Θ_T
    _check_readable(axes[0].figure)


def test_step_sizes_figure_tells_neighbouring_factors_apart_and_labels_its_axes():
    from matplotlib.colors import to_rgb

    from kernelscope.experiments.learning import step_sizes
    from kernelscope.plots.learning import plot_step_sizes

    axes = plot_step_sizes(step_sizes(steps=30))
    markers = [ln for ln in axes[0].lines if ln.get_label().startswith("η")]
    colors = [np.array(to_rgb(ln.get_color())) for ln in markers]
    closest = min(np.abs(a - b).sum() for i, a in enumerate(colors) for b in colors[i + 1:])
    assert closest > 0.3  # 0.9 and 0.99 are no longer two shades of one blue
    assert axes[1].get_xlabel() and axes[1].get_ylabel()
    assert any("0.99" in ln.get_label() for ln in axes[1].lines)  # the bouncing run the caption describes
    _check_readable(axes[0].figure)


def test_plot_labels_have_no_raw_subscripts():
    """Every label string of the plotting modules is either free of `x_i`-style subscripts or mathtext."""
    import importlib
    import inspect
    import pkgutil

    from kernelscope import plots

    names = [m.name for m in pkgutil.iter_modules(plots.__path__)]  # every plotting module, new ones included
    modules = [plots, *(importlib.import_module(f"kernelscope.plots.{name}") for name in names)]
    for module in modules:
        source = inspect.getsource(module)
        for m in re.finditer(r"(?:label|title|xlabel|ylabel|suptitle|text)\((?:[^()]|\([^()]*\))*\)", source):
            call = m.group(0)
            for literal in re.findall(r"""[rf]*"([^"\n]*)\"""", call):
                plain = re.sub(r"\$[^$]*\$", "", literal)
                plain = re.sub(r"\{[^}]*\}", "", plain)  # f-string fields are code, not text
                assert not RAW_SUBSCRIPT.search(plain), f"{module.__name__}: {literal!r}"


# ---------------------------------------------------------------------------------------------------------------
# prose and printing
# ---------------------------------------------------------------------------------------------------------------
def test_tied_models_are_all_named_in_words():
    from kernelscope.chapters.ch30_nets import _best_models

    keys = [f"ReLU-nngp-{d}" for d in (1, 2, 3, 4, 5)] + ["Erf-ntk-1", "Erf-ntk-2"]
    text = _best_models(keys, [1, 2, 3, 4, 5])
    assert text.startswith("7 models") and "ReLU NNGP (1–5 hidden layers)" in text and "Erf NTK (1, 2 hidden" in text
    assert "-nngp-" not in text and _best_models(["Erf-ntk-3"], [1, 3]) == "Erf NTK, 3 hidden layers"


def test_regime_table_prints_as_a_table():
    text = str(_regime_table())
    lines = text.splitlines()
    assert lines[0].startswith("Where the kernel picture stops") and "1000 gradient-descent steps" in lines[0]
    assert lines[1].split()[:2] == ["model", "width"] and set(lines[2]) <= {"-", " "}
    nngp = next(ln for ln in lines if ln.startswith("NNGP"))
    assert "∞" in nngp and "99.0%" in nngp and "—" in nngp  # no NaN, no dataclass repr
    assert "RegimeRow(" not in text and len(lines) == 3 + 5


def test_a_finite_network_prints_what_it_is():
    from kernelscope import nets

    net = nets.serial(nets.Dense(512, w_std=1.5, b_std=0.05), nets.ReLU(), nets.Dense(1, w_std=1.5, b_std=0.05))
    lazy = repr(net.finite())
    assert "Dense(512" in lazy and "ReLU()" in lazy and "in_dim" in lazy and lazy != "LazyNetwork()"
    built = repr(net.finite(width=64, in_dim=3))
    assert "in=3, out=1" in built and "Linear(in_features=3, out_features=64" in built


def test_nngp_true_is_refused_for_a_kernel_that_is_not_a_network():
    import kernelscope as ks
    from kernelscope import nets
    from kernelscope.regression import MLPKernel

    X = np.random.default_rng(0).normal(size=(8, 2))
    y = X[:, 0]
    for kernel in ("rbf", ks.kernels.RBF(), MLPKernel(1)):
        with pytest.raises(ValueError, match=r"^nngp: expected False unless the kernel is a kernelscope\.nets"):
            ks.KernelRegressor(kernel, nngp=True).fit(X, y)
    net = nets.serial(nets.Dense(1), nets.ReLU(), nets.Dense(1))
    a = ks.KernelRegressor(net, nngp=True).fit(X, y).predict(X)
    b = ks.KernelRegressor(MLPKernel(1, 1.0, 0.0, nngp=True)).fit(X, y).predict(X)
    np.testing.assert_allclose(a, b, rtol=1e-10)
