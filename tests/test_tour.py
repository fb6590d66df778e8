"""The tour runner: chapter discovery, resume after interruption, --force, atomic outputs, the report page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernelscope import tour as T
from kernelscope.report import format_cell, render_report


def _fake_chapter(key, calls, fail=False, pieces=3, interrupt_at=None):
    def run(ctx):
        import matplotlib.pyplot as plt

        done = []
        for i in ctx.track(range(pieces), "pieces"):
            if interrupt_at is not None and i == interrupt_at:
                raise KeyboardInterrupt
            done.append(ctx.checkpoint(f"piece{i}", lambda i=i: (calls.append((key, i)), {"i": i})[1])["i"])
        if fail:
            raise RuntimeError("boom")
        fig, ax = plt.subplots()
        ax.plot(done)
        figure = ctx.savefig(fig, "curve.png", "a curve")
        return T.ChapterResult(numbers={"sum": sum(done)}, figures=[figure],
                               tables=[T.Table("t", ["a", "b"], [[1, 2.5]])], findings=["it works"])

    return T.Chapter(key=key, order=1, title=f"Chapter {key}", intro="<p>intro</p>", run=run)


@pytest.fixture
def fake_chapters(monkeypatch):
    calls: list = []
    registry = {"a": _fake_chapter("a", calls), "b": _fake_chapter("b", calls)}
    monkeypatch.setattr(T, "chapters", lambda: list(registry.values()))
    return registry, calls


def test_discovers_the_story_chapters_in_order():
    chs = T.chapters()
    keys = [c.key for c in chs]
    assert keys[0] == "linsys"
    assert [c.order for c in chs] == sorted(c.order for c in chs)
    assert len(set(keys)) == len(keys)


def test_run_writes_report_and_resumes(tmp_path, fake_chapters):
    registry, calls = fake_chapters
    res = T.run_tour(tmp_path, progress=False)
    assert res.ok and res.done == ["a", "b"]
    assert (tmp_path / "index.html").exists() and (tmp_path / "figures" / "a_curve.png").exists()
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["chapters"]["a"]["numbers"] == {"sum": 3}
    n_calls = len(calls)
    res2 = T.run_tour(tmp_path, progress=False)  # nothing is redone
    assert res2.skipped == ["a", "b"] and res2.done == [] and len(calls) == n_calls
    res3 = T.run_tour(tmp_path, progress=False, force=True, only=["b"])
    assert res3.done == ["b"] and len(calls) == n_calls + 3


def test_interrupted_chapter_resumes_from_checkpoints(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(T, "chapters", lambda: [_fake_chapter("a", calls, interrupt_at=2)])
    with pytest.raises(KeyboardInterrupt):
        T.run_tour(tmp_path, progress=False)
    assert calls == [("a", 0), ("a", 1)]
    assert not (tmp_path / "steps" / "a.json").exists()
    monkeypatch.setattr(T, "chapters", lambda: [_fake_chapter("a", calls)])
    res = T.run_tour(tmp_path, progress=False)
    assert res.done == ["a"] and calls == [("a", 0), ("a", 1), ("a", 2)]  # pieces 0, 1 were not redone


def test_a_failing_chapter_does_not_lose_the_others(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(T, "chapters", lambda: [_fake_chapter("a", calls, fail=True), _fake_chapter("b", calls)])
    res = T.run_tour(tmp_path, progress=False)
    assert not res.ok and "boom" in res.failed["a"] and res.done == ["b"]
    html = (tmp_path / "index.html").read_text()
    assert "This chapter failed" in html and "Chapter b" in html
    assert (tmp_path / "steps" / "a.error.txt").read_text().count("RuntimeError") >= 1


def test_quick_and_full_results_are_kept_apart(tmp_path, fake_chapters):
    T.run_tour(tmp_path, quick=True, progress=False)
    res = T.run_tour(tmp_path, quick=False, progress=False)
    assert res.done == ["a", "b"]


def test_unknown_chapter_is_a_clear_error(tmp_path, fake_chapters):
    with pytest.raises(ValueError, match="^only: expected chapter keys among a, b, got zzz"):
        T.run_tour(tmp_path, only=["zzz"], progress=False)


def test_report_escapes_and_formats():
    assert format_cell(0.000012345) == "1.234e-05" and format_cell(3) == "3" and format_cell(True) == "yes"
    ch = T.Chapter("x", 1, "X <title>", "<p>i</p>", run=lambda c: None)
    res = T.ChapterResult(tables=[T.Table("<t>", ["a"], [["<b>"]])])
    html = render_report([ch], {"x": res}, {})
    assert "X &lt;title&gt;" in html and "&lt;b&gt;" in html and "<b>" not in html


def test_linsys_chapter_end_to_end(tmp_path):
    res = T.run_tour(tmp_path, only=["linsys"], quick=True, progress=False)
    assert res.ok
    nums = json.loads((tmp_path / "results.json").read_text())["chapters"]["linsys"]["numbers"]
    assert nums["line"]["distance"] == pytest.approx(12 / 5, rel=1e-14)
    assert nums["line"]["x"] == pytest.approx([36 / 25, 48 / 25], rel=1e-14)
    assert nums["rank4"]["dims"] == {"row": 4, "null": 4, "col": 4, "left_null": 4}
    assert nums["rank4"]["kind_in"] == "least_norm" and nums["rank4"]["kind_out"] == "least_squares"
    assert nums["power_iteration"]["eigenvalue"] == pytest.approx(10.0, rel=1e-10)
    for f in json.loads((tmp_path / "results.json").read_text())["chapters"]["linsys"]["figures"]:
        assert (tmp_path / f).stat().st_size > 5000
