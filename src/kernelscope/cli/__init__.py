"""The ``kernelscope`` command.

Every module of this package that defines ``register(app: typer.Typer)`` adds its subcommands; the command
discovers them, so each chapter brings its own subcommand without touching the others.

Exit statuses, each with one line on stderr and never a traceback:

- 2: bad input (unreadable file, bad shape, NaN, a bad option value: the library's own
  :class:`~kernelscope._arrays.ValidationError`, ``<argument>: expected <what>, got <what came>.``), a memory need
  refused up front (``MemoryBudgetError``) or an allocation that failed anyway, a folder in use by another run;
- 1: the run finished but failed: training diverged (a :class:`~kernelscope.DivergenceWarning`), or a command's
  own check (a chapter of the tour) failed;
- 130: Ctrl-C; 143: SIGTERM (the tour). Inside :func:`resumable` (a command that saves its finished pieces in a
  folder) the line says how to resume: run the same command again.

Warnings (the library's :class:`~kernelscope.KernelscopeWarning` and any other) print as ``kernelscope: note: ...``
lines, without Python's file and line.

Conventions shared by every subcommand (:mod:`kernelscope.cli._options`): a list option takes its values
comma-separated or repeated (``--widths 16,64 --widths 256``); ``--depth`` counts hidden layers; a subcommand is
named like its chapter of the story (``kernelscope spirals``; ``spiral`` is accepted too).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

try:  # typer >= 0.20 vendors click as typer._click; older versions use click itself
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover
    from click import exceptions as _cx

app = typer.Typer(
    name="kernelscope",
    help="From linear systems to neural networks, through kernels. Run `kernelscope tour --out DIR` for the story.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"kernelscope {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                       help="Print the version and exit.")) -> None:
    """From linear systems to neural networks, through kernels."""


#: modules in the order of the story's chapters (solve, regress/kernel, lazy/pathkernel, spiral, tour); a module
#: not listed comes after them, by name.
STORY_ORDER = ("linsys", "regress", "kernel", "dynamics", "spiral", "tour")


def _register_all() -> None:
    pkg = sys.modules[__name__]
    rank = {name: i for i, name in enumerate(STORY_ORDER)}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: (rank.get(i.name, len(rank)), i.name)):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        reg = getattr(mod, "register", None)
        if callable(reg):
            reg(app)


_register_all()


class Interrupted(BaseException):
    """Ctrl-C inside :func:`resumable`: carries the folder where the command's finished pieces are saved.

    Not a KeyboardInterrupt (typer would turn that into a bare exit code 130 and lose the folder) and, like it,
    not an Exception, so no ``except Exception`` on the way swallows it.
    """

    def __init__(self, saved_in: str | Path, signum: int | None = None):
        super().__init__(str(saved_in))
        self.saved_in = Path(saved_in)
        self.signum = signum


@contextmanager
def resumable(saved_in: str | Path) -> Iterator[None]:
    """Around the part of a command that checkpoints into ``saved_in``: Ctrl-C (or a SIGTERM the command turned
    into an interrupt, as the tour does) there makes :func:`main` say that running the same command again resumes
    from the pieces saved in that folder."""
    try:
        yield
    except KeyboardInterrupt as exc:
        raise Interrupted(saved_in, getattr(exc, "signum", None)) from None


def interrupted(argv: list[str] | None = None, saved_in: str | Path | None = None, signum: int | None = None
                ) -> None:
    """Ctrl-C: exit with status 130 (a signal ``signum``: 128 + signum), no traceback; say how to resume when the
    command saved finished pieces."""
    what = "interrupted" if signum is None else f"stopped by signal {signum}"
    if saved_in is None:
        print(f"kernelscope: {what}", file=sys.stderr)
    else:
        command = shlex.join(["kernelscope", *(sys.argv[1:] if argv is None else argv)])
        print(f"kernelscope: {what}: run the same command again to resume (finished pieces are saved in "
              f"{saved_in}):\n  {command}", file=sys.stderr)
    sys.exit(130 if signum is None else 128 + signum)


_CTRL_C = 130  # what typer returns (standalone_mode=False) for a KeyboardInterrupt inside a command

#: torch's messages for an allocation that failed (CPU and CUDA), and the size they name
_ALLOCATION_FAILED = re.compile(r"can't allocate memory|out of memory|Cannot allocate memory", re.IGNORECASE)
_TRIED = re.compile(r"tried to allocate (\d+) bytes|Tried to allocate ([\d.]+ [KMGT]?i?B)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _allocation_message(exc: BaseException) -> str:
    """One line for an allocation that failed in torch (a size no up-front check caught)."""
    from .._arrays import format_bytes

    found = _TRIED.search(str(exc))
    size = ""
    if found:
        size = f" of {format_bytes(int(found.group(1)))}" if found.group(1) else f" of {found.group(2)}"
    return (f"out of memory: an allocation{size} failed. Use smaller sizes (fewer points, a smaller width, fewer "
            "steps).")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    from ._options import notes_for_warnings

    try:
        with notes_for_warnings() as diverged:  # the library's warnings reach the user as `note:` lines
            rv = app(args=argv, prog_name="kernelscope", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        interrupted(argv, exc.saved_in, exc.signum)
    except _cx.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(0)
    except _cx.ClickException as exc:
        exc.show()
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort) as exc:
        interrupted(argv, signum=getattr(exc, "signum", None))
    except (ValueError, OSError, MemoryError) as exc:  # ValidationError is a ValueError
        print(f"kernelscope: error: {_first_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as exc:  # torch's allocator raises no MemoryError: one line, as a refusal up front would
        if not _ALLOCATION_FAILED.search(str(exc)):
            raise
        print(f"kernelscope: error: {_allocation_message(exc)}", file=sys.stderr)
        sys.exit(2)
    if rv == _CTRL_C:
        interrupted(argv)
    if diverged and rv in (0, None):
        print("kernelscope: error: the run diverged (see the note above): the numbers it wrote describe a failed "
              "run. Use a smaller --lr.", file=sys.stderr)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
