"""Shared fixtures."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def quick_tour(tmp_path_factory):
    """The whole story in --quick mode, run once per test session: (output folder, TourResult)."""
    from kernelscope.tour import run_tour

    out = tmp_path_factory.mktemp("tour")
    return out, run_tour(out, quick=True, progress=False)


try:  # CI replays the same examples on every run (no flaky reds); locally hypothesis keeps exploring
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        settings.load_profile("ci")
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    pass
