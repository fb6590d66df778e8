"""Reading matrices and vectors from files for the command line: .npy, .csv/.txt, Matrix Market .mtx."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._arrays import ValidationError

SUFFIXES = (".npy", ".csv", ".txt", ".tsv", ".mtx")


def read_array(path: str | Path, name: str, *, allow_sparse: bool = False):
    """Load an array from ``path``; a :class:`~kernelscope._arrays.ValidationError` for
    missing, unreadable or unsupported files."""
    p = Path(path)
    if not p.exists():
        raise ValidationError(name, "an existing file", f"{p}, which does not exist")
    if p.is_dir():
        raise ValidationError(f"{name}", "a file", f"the folder {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix in (".csv", ".txt", ".tsv"):
            delim = "," if suffix == ".csv" else None
            with open(p) as f:
                first = f.readline()
            if suffix == ".txt" and "," in first:
                delim = ","
            arr = np.loadtxt(p, delimiter=delim, ndmin=1, dtype=np.float64)
            if arr.ndim == 1 and first.count(",") + 1 > 1 and delim == ",":
                arr = arr[None, :]  # one line of several numbers: a 1×n matrix
        elif suffix == ".mtx":
            import scipy.io

            arr = scipy.io.mmread(p)
            if hasattr(arr, "tocsr"):
                arr = arr.tocsr() if allow_sparse else arr.toarray()
        else:
            raise ValidationError(name, "a file of type " + ", ".join(SUFFIXES), f"'{p.suffix}' ({p})")
    except ValidationError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise ValidationError(name, "a readable numeric file", f"{p}, which could not be read ("
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return arr
