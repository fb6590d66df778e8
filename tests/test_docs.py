"""The API reference (docs/): every public function and class has a docstring, and Sphinx builds the reference
with warnings as errors (skipped, saying how to enable it, where Sphinx is not installed: `pip install -e .[docs]`)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def _api():
    spec = importlib.util.spec_from_file_location("kernelscope_api", ROOT / "docs" / "_ext" / "kernelscope_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_function_and_class_has_a_docstring():
    api = _api()
    assert api.undocumented() == [], "write a docstring for these (or take them out of __all__)"


def test_each_public_object_is_documented_once_in_the_shortest_module():
    api = _api()
    pages = api.canonical_names()
    assert "KernelRegressor" in pages["kernelscope"] and "KernelRegressor" not in pages["kernelscope.regression"]
    assert "train" in pages["kernelscope.dynamics"] and "train" not in pages["kernelscope.dynamics.train"]
    assert "chapters" not in " ".join(pages) and "kernelscope.cli" not in pages
    seen: dict[int, str] = {}
    import importlib

    for m, names in pages.items():
        module = importlib.import_module(m)
        for n in names:
            assert id(getattr(module, n)) not in seen, f"{m}.{n} also on {seen[id(getattr(module, n))]}"
            seen[id(getattr(module, n))] = f"{m}.{n}"


def test_gallery_from_a_tour_folder(tmp_path):
    """The gallery takes each chapter's figures and captions from a tour's saved steps, and says how to make a tour
    when there is none."""
    api = _api()
    tour = tmp_path / "tour"
    (tour / "steps").mkdir(parents=True)
    (tour / "figures").mkdir()
    (tour / "figures" / "linsys_line.png").write_bytes(b"\x89PNG fake")
    (tour / "steps" / "linsys-quick-seed0.json").write_text(json.dumps(
        {"key": "linsys", "result": {"figures": [{"file": "figures/linsys_line.png", "caption": "x*|y| a_i"},
                                                 {"file": "figures/missing.png", "caption": "gone"}]}}))
    out = tmp_path / "gen"
    assert api.write_gallery(out, tour) == 1
    text = (out / "gallery.rst").read_text()
    assert "gallery/linsys-linsys_line.png" in text and r"x\*\|y\| a\_i" in text and "gone" not in text
    assert (out / "gallery" / "linsys-linsys_line.png").is_file()
    assert api.write_gallery(tmp_path / "none", None) == 0
    assert "make demo" in (tmp_path / "none" / "gallery.rst").read_text()


def test_sphinx_builds_the_reference_without_warnings(tmp_path):
    """`make docs` without the gallery's figures: the reference itself, warnings as errors (about 20 s of CPU)."""
    if importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("furo") is None:
        if IN_CI:
            pytest.fail("CI=true but Sphinx is missing: `make test` installs .[test,docs]", pytrace=False)
        pytest.skip("Sphinx not installed: `pip install -e .[docs]` (make test does) to build the API reference")
    env = {**os.environ, "KERNELSCOPE_TOUR": str(tmp_path / "no-tour"), "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html",
                          "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    html = (tmp_path / "html" / "_generated" / "api" / "kernelscope.linsys.html").read_text()
    assert "least_norm" in html and "power_iteration" in html
    cli = (tmp_path / "html" / "_generated" / "cli.html").read_text()
    assert "kernelscope spirals" in cli and "--widths" in cli
