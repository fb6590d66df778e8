"""The API reference of kernelscope, generated from the package itself: a Sphinx extension and the public-name check.

- :func:`public_modules` walks the package (its public modules: no leading underscore; ``chapters`` and ``cli``
  hold the story's text and the command line, documented elsewhere) and :func:`canonical_names` gives each public
  object one home: the shortest public module whose ``__all__`` names it (``kernelscope.dynamics.train``, not
  also ``kernelscope.dynamics.train.train``).
- :func:`undocumented` lists the public functions and classes without a docstring of their own: ``make docs`` and
  ``tests/test_docs.py`` fail while it is not empty (constants are listed by name, a docstring is not required).
- As a Sphinx extension (``docs/conf.py``) it writes one page per public module with its own names, the
  command-line reference (each subcommand's ``--help``) and the gallery of a tour's figures into
  ``docs/_generated/`` before Sphinx reads the sources.

Docstrings here are plain text with formulas in Unicode (``‖K − cΘ‖``, ``|a_i K(x, x_i)|``), which
reStructuredText reads as markup (``|...|`` substitutions, ``*`` emphasis, ``name_`` links). A docstring whose
reST would not parse cleanly is shown as written, in a literal block, instead of being garbled (and instead of a
warning that ``-W`` would make an error); :data:`LITERAL` counts them.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import os
import pkgutil
import shutil
import sys
from pathlib import Path

PACKAGE = "kernelscope"
#: subpackages that are not library API: the story's text (chapters) and the command line (its own page)
NOT_API = ("chapters", "cli")
#: docstrings shown as written because their reST would not parse: (object name, first problem)
LITERAL: list[tuple[str, str]] = []


def public_modules(package: str = PACKAGE) -> list[str]:
    """The package and its public modules, depth first in file order."""
    root = importlib.import_module(package)
    names = [package]

    def walk(pkg) -> None:
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("_") or (pkg is root and info.name in NOT_API):
                continue
            name = f"{pkg.__name__}.{info.name}"
            module = importlib.import_module(name)
            names.append(name)
            if info.ispkg:
                walk(module)

    walk(root)
    return names


def _exports(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    return [n for n in getattr(module, "__all__", []) if not inspect.ismodule(getattr(module, n))]


def canonical_names(modules: list[str] | None = None) -> dict[str, list[str]]:
    """module -> the public names documented on its page: each object once, in the shortest public module (then
    the first in walk order) whose ``__all__`` names it."""
    modules = public_modules() if modules is None else modules
    home: dict[int, tuple[int, int, str]] = {}
    for order, m in enumerate(modules):
        module = importlib.import_module(m)
        for n in _exports(m):
            key = (m.count("."), order, m)
            obj_id = id(getattr(module, n))
            if obj_id not in home or key < home[obj_id]:
                home[obj_id] = key
    pages: dict[str, list[str]] = {}
    for m in modules:
        module = importlib.import_module(m)
        pages[m] = [n for n in _exports(m) if home[id(getattr(module, n))][2] == m]
    return pages


def _is_code(obj) -> bool:
    """A function or class of the package (a type alias such as ``Callable[..., X]`` is a constant here)."""
    return (inspect.isclass(obj) or inspect.isroutine(obj) or callable(obj)) and getattr(
        obj, "__module__", "").split(".")[0] not in ("typing", "collections")


def _own_docstring(obj) -> str:
    doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else ""
    if inspect.isclass(obj) and doc.startswith(obj.__name__ + "("):
        return ""  # the signature a dataclass writes for itself is not documentation
    return doc.strip()


def undocumented(pages: dict[str, list[str]] | None = None) -> list[str]:
    """``module.name`` of every public function or class without a docstring of its own."""
    pages = canonical_names() if pages is None else pages
    missing = []
    for m, names in pages.items():
        module = importlib.import_module(m)
        if not (module.__doc__ or "").strip():
            missing.append(f"{m} (the module)")
        for n in names:
            obj = getattr(module, n)
            if _is_code(obj) and not _own_docstring(obj):
                missing.append(f"{m}.{n}")
    return missing


# ---------------------------------------------------------------------------------------------------------------
# pages
# ---------------------------------------------------------------------------------------------------------------
def _title(text: str, mark: str = "=") -> str:
    return f"{text}\n{mark * len(text)}\n"


def _module_page(module_name: str, names: list[str], taken: set[str]) -> str:
    """The page of one module; ``taken``: the full names of the objects documented anywhere (a module named like
    one, ``kernelscope.dynamics.train`` beside the function ``dynamics.train``, is then not an index entry)."""
    module = importlib.import_module(module_name)
    no_index = "   :no-index:\n" if module_name in taken else ""
    parts = [_title(module_name), f".. automodule:: {module_name}\n   :no-members:\n{no_index}"]
    for n in names:
        obj = getattr(module, n)
        if inspect.isclass(obj) and _is_code(obj):
            parts.append(f".. autoclass:: {module_name}.{n}\n   :members:\n")
        elif _is_code(obj):
            parts.append(f".. autofunction:: {module_name}.{n}\n")
        else:
            parts.append(f".. autodata:: {module_name}.{n}\n   :no-value:\n")
    return "\n".join(parts)


def write_api(out: Path) -> list[str]:
    """``out/api/<module>.rst`` for each public module with names of its own, and ``out/api/index.rst``."""
    pages = canonical_names()
    api = out / "api"
    api.mkdir(parents=True, exist_ok=True)
    shown = [m for m, names in pages.items() if names or m.count(".") <= 1]
    taken = {f"{m}.{n}" for m, names in pages.items() for n in names}
    for m in shown:
        (api / f"{m}.rst").write_text(_module_page(m, pages[m], taken))
    toc = "\n".join(f"   {m}" for m in shown)
    (api / "index.rst").write_text(
        _title("API reference")
        + "\nEvery public module of kernelscope, in the order of the package (the story's order is in "
          ":doc:`../../index`). Each object is documented once, in the module it is imported from; names a module "
          "re-exports from a submodule are documented with the module.\n\n"
        + f".. toctree::\n   :maxdepth: 1\n\n{toc}\n")
    return shown


def write_cli(out: Path) -> None:
    """``out/cli.rst``: ``kernelscope --help`` and each subcommand's ``--help``, as the command prints them."""
    from kernelscope.cli import app, main

    def help_of(args: list[str]) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
            main([*args, "--help"])
        return buf.getvalue().rstrip()

    import typer.main

    commands = [c for c in typer.main.get_command(app).commands.values() if not c.hidden]
    parts = [_title("Command line"),
             "Every chapter of the story has its own subcommand; ``kernelscope tour`` runs them all into one "
             "report. A list option takes its values comma-separated or repeated (``--widths 16,64 --widths 256``); "
             "``--depth`` counts hidden layers; warnings are ``note:`` lines; bad input is one line on stderr and "
             "exit status 2.\n",
             ".. code-block:: text\n\n" + "\n".join("   " + ln for ln in help_of([]).splitlines()) + "\n"]
    for c in commands:  # in the order of `kernelscope --help`: the story's
        text = help_of([c.name])
        parts.append(_title(f"kernelscope {c.name}", "-"))
        parts.append(".. code-block:: text\n\n" + "\n".join("   " + ln for ln in text.splitlines()) + "\n")
    (out / "cli.rst").write_text("\n".join(parts))


def write_gallery(out: Path, tour: Path | None) -> int:
    """``out/gallery.rst`` with the figures of a tour folder (copied to ``out/gallery/``), chapter by chapter,
    with their captions; without a tour, a page that says how to make one. Returns the number of figures."""
    from kernelscope.tour import chapters

    gallery = out / "gallery"
    shutil.rmtree(gallery, ignore_errors=True)
    gallery.mkdir(parents=True)
    parts = [_title("Gallery"),
             "The figures of ``kernelscope tour``, chapter by chapter, with the captions of its report "
             "(``tour-out/index.html`` after ``make demo``, where the text and tables around them are).\n"]
    count = 0
    steps = tour / "steps" if tour is not None else None
    for ch in chapters():
        saved = []
        if steps is not None and steps.is_dir():
            for p in sorted(steps.glob(f"{ch.key}-*.json"), key=lambda p: (p.name.startswith(f"{ch.key}-quick"),
                                                                           p.name)):
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    d = json.loads(p.read_text())
                    if d.get("key") == ch.key and "result" in d:
                        saved = d["result"].get("figures", [])
                        break
        figures = [f for f in saved if (tour / f["file"]).is_file()]
        if not figures:
            continue
        parts.append(_title(ch.title, "-"))
        for f in figures:
            src = tour / f["file"]
            name = f"{ch.key}-{src.name}"
            shutil.copyfile(src, gallery / name)
            caption = " ".join(f["caption"].split()).replace("*", "\\*").replace("|", "\\|").replace("_", "\\_")
            parts.append(f".. figure:: gallery/{name}\n\n   {caption}\n")  # wide figures shrink to the page
            count += 1
    if not count:
        parts.append(".. note::\n\n   No tour output was found for this build. ``make demo`` (or "
                     "``kernelscope tour --quick --out tour-out``) writes one; ``make docs`` then shows its figures "
                     "here.\n")
    (out / "gallery.rst").write_text("\n".join(parts))
    return count


# ---------------------------------------------------------------------------------------------------------------
# the Sphinx extension
# ---------------------------------------------------------------------------------------------------------------
def _generate(app) -> None:
    out = Path(app.srcdir) / "_generated"
    shutil.rmtree(out / "api", ignore_errors=True)
    out.mkdir(exist_ok=True)
    missing = undocumented()
    if missing:  # a warning: `-W` (make docs, the test) fails the build on it, with this list
        from sphinx.util import logging

        logging.getLogger(__name__).warning(
            "public names without a docstring (write one, or take the name out of __all__): %s", ", ".join(missing))
    write_api(out)
    write_cli(out)
    tour = os.environ.get("KERNELSCOPE_TOUR") or app.config.kernelscope_tour
    write_gallery(out, Path(tour) if tour and Path(tour).is_dir() else None)
    LITERAL.clear()


def _skip_foreign(app, what, name, obj, skip, options):
    """Members a class inherits from scikit-learn and torch (their docstrings link into their own manuals)."""
    module = getattr(obj, "__module__", None) or ""
    if module.split(".")[0] in ("sklearn", "torch", "typing", "builtins"):
        return True
    return None


def _rst_problems(text: str, env=None) -> list[str]:
    """Warnings and errors reStructuredText reports for ``text`` (roles and directives of Sphinx are known here:
    this runs while Sphinx reads a page)."""
    from docutils import nodes
    from docutils.core import publish_doctree

    settings = {"report_level": 5, "halt_level": 5, "warning_stream": io.StringIO(), "file_insertion_enabled": False,
                "env": env}
    doc = publish_doctree(text, settings_overrides=settings)
    problems = [m.astext().splitlines()[0] for m in doc.findall(nodes.system_message) if m["level"] >= 2]
    # an undefined |substitution| or a dangling name_ link leaves a `problematic` node (its message is only logged)
    return problems + [f"problematic markup: {p.astext()!r}" for p in doc.findall(nodes.problematic)]


def _literal_when_broken(app, what, name, obj, options, lines) -> None:
    if not lines:
        return
    problems = _rst_problems("\n".join(lines), app.env)
    if not problems:
        return
    original = inspect.getdoc(obj) or ""
    LITERAL.append((name, problems[0]))
    lines[:] = ["::", ""] + ["   " + ln for ln in original.splitlines()] + [""]


def _report_literal(app, exception) -> None:
    if exception is None and LITERAL:
        from sphinx.util import logging

        logging.getLogger(__name__).info("kernelscope_api: %d docstring(s) shown as written (their reST would not "
                                         "parse), e.g. %s", len(LITERAL), ", ".join(n for n, _ in LITERAL[:5]))


def setup(app):
    app.add_config_value("kernelscope_tour", "", "env")
    app.connect("builder-inited", _generate)
    app.connect("autodoc-skip-member", _skip_foreign)
    app.connect("autodoc-process-docstring", _literal_when_broken, priority=900)  # after napoleon's conversion
    app.connect("build-finished", _report_literal)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":  # python docs/_ext/kernelscope_api.py: list the undocumented public names
    missing = undocumented()
    print("\n".join(missing) if missing else "every public function and class has a docstring")
    sys.exit(1 if missing else 0)
