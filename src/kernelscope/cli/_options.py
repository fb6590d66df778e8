"""Conventions shared by the subcommands: how a list is given, what a network's defaults are, how a note is said.

- A list option takes its values either comma-separated or repeated, and both mix:
  ``--widths 16,64 --widths 256`` is ``[16, 64, 256]`` (:func:`split_list`, :func:`int_list`).
- ``--depth`` always counts **hidden layers** (each a Dense layer and its activation); the readout layer is not
  counted. ``kernel`` and ``regress`` build the same network from the same defaults (:data:`NETWORK_DEFAULTS`).
- What the user should know but is not an error is one ``note: ...`` line on stderr (:func:`note`); the library's
  warnings reach the user that way too (:func:`notes_for_warnings`), never as a Python warning with file and line.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterable, Iterator

from .._arrays import ValidationError

#: the network of ``kernel`` and ``regress --kernel ntk|nngp``: serial(Dense(w_std, b_std), activation) × depth +
#: Dense(w_std, b_std), depth counting hidden layers
NETWORK_DEFAULTS = {"depth": 3, "w_std": 1.5, "b_std": 0.05, "activation": "relu"}

#: the chapter of the story behind each subcommand name that differs from its chapter key
ALIASES = {"spiral": "spirals"}


def split_list(values: Iterable[str] | str | None, option: str) -> list[str]:
    """The items of a list option given comma-separated, repeated, or both (empty items are dropped)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    items = [item.strip() for v in values for item in str(v).split(",")]
    return [item for item in items if item]


def int_list(values: Iterable[str] | str | None, option: str, *, minimum: int = 1) -> list[int]:
    """:func:`split_list` as integers ``>= minimum``; anything else is a :class:`ValidationError` naming ``option``."""
    items = split_list(values, option)
    try:
        ints = [int(v) for v in items]
    except ValueError:
        raise ValidationError(option, f"integers, comma-separated or repeated (e.g. {option} 16,64 {option} 256)",
                              f"'{','.join(items)}'") from None
    if not ints or min(ints) < minimum:
        raise ValidationError(option, f"integers >= {minimum}", f"'{','.join(items)}'")
    return ints


def note(message: str) -> None:
    """One ``kernelscope: note: ...`` line on stderr."""
    print(f"kernelscope: note: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def notes_for_warnings() -> Iterator[list[str]]:
    """Inside: every warning that the filters let through is shown as one ``note:`` line (its message only, not
    the file and source line of Python's default display). The filters themselves are left as they are. Yields
    the list of the :class:`~kernelscope.DivergenceWarning` messages shown, so the caller can fail the run."""
    from .._arrays import DivergenceWarning

    diverged: list[str] = []

    def show(message, category, *args, **kwargs) -> None:
        if issubclass(category, DivergenceWarning):
            diverged.append(str(message).strip())
        note(str(message).strip())

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield diverged
