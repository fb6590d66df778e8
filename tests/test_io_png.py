"""atomic_savefig's one-drawing tight PNG (kernelscope._io._tight_png) against matplotlib's bbox_inches='tight'."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kernelscope._io import atomic_savefig
from kernelscope.plots import new_figure


def _two_panels(legend_outside: bool):
    fig = new_figure((7, 3))
    axes = fig.subplots(1, 2)
    x = np.linspace(0, 1, 50)
    for i, ax in enumerate(axes):
        ax.plot(x, x ** (i + 1), label=f"x^{i + 1}")
        ax.set_title(f"panel {i}")
        ax.set_xlabel("x")
    fig.tight_layout()
    if legend_outside:  # past the right edge of the canvas
        axes[1].legend(loc="upper left", bbox_to_anchor=(1.05, 1.0))
    return fig


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("legend_outside", [False, True])
def test_tight_png_in_one_drawing_matches_matplotlib(tmp_path, legend_outside):
    fig = _two_panels(legend_outside)
    ours = atomic_savefig(fig, tmp_path / "ours.png")
    fig.savefig(tmp_path / "mpl.png", dpi=110, bbox_inches="tight")
    a, b = _pixels(ours), _pixels(tmp_path / "mpl.png")
    # the same picture: sizes within the rounding of the box to whole pixels, and (cropped to the common size)
    # nearly all pixels equal, the rest off by antialiasing at a sub-pixel shift
    assert abs(a.shape[0] - b.shape[0]) <= 2 and abs(a.shape[1] - b.shape[1]) <= 2
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    assert np.mean(np.abs(a[:h, :w] - b[:h, :w]) > 0) < 0.1
    if legend_outside:  # matplotlib moved the drawing in: the legend is in the file, wider than the canvas
        assert a.shape[1] > fig.get_size_inches()[0] * 110
    # the figure is left as it was: its own canvas and dpi
    assert fig.dpi == 100 and type(fig.canvas).__name__ == "FigureCanvasBase"


def test_other_formats_and_options_go_to_matplotlib(tmp_path):
    fig = _two_panels(False)
    atomic_savefig(fig, tmp_path / "f.svg")
    assert (tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")
    atomic_savefig(fig, tmp_path / "f.png", bbox_inches=None)
    w, h = Image.open(tmp_path / "f.png").size
    assert (w, h) == (770, 330)  # the whole canvas: 7 x 3 inches at 110 dpi
