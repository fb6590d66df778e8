"""Reading matrices, vectors and tables from files for the command line: .npy, .csv/.txt/.tsv, Matrix Market .mtx.

One reader, :func:`read_array`; :func:`read_table` is the same file read as a 2-D table of finite numbers (rows =
samples). Text files may start with one header line (column names). Every failure is one
:class:`~kernelscope._arrays.ValidationError` naming the argument.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .._arrays import ValidationError

SUFFIXES = (".npy", ".csv", ".txt", ".tsv", ".mtx")


def _is_header(line: str, delim: str | None) -> bool:
    """A header line names the columns: none of its fields is a number (``x1,x2,y``). A line with some numbers
    (``1,2,x``) or only numbers (``1,2`` above rows of three) is a malformed row of data, reported as such."""
    for field in line.strip().split(delim):
        try:
            float(field)
            return False
        except ValueError:
            continue
    return bool(line.strip())


def _load_text(p: Path, suffix: str) -> np.ndarray:
    """Numbers of a text file (``,`` for .csv, and for .txt whose first line has one; whitespace otherwise); one
    header line (no field a number, :func:`_is_header`) is skipped."""
    with open(p) as f:
        first = f.readline()
    delim = "," if suffix == ".csv" or (suffix == ".txt" and "," in first) else None
    with warnings.catch_warnings():  # an empty file is an empty array here, reported by the caller in one line
        warnings.simplefilter("ignore", UserWarning)
        try:
            arr = np.loadtxt(p, delimiter=delim, ndmin=1, dtype=np.float64)
        except ValueError:
            if not _is_header(first, delim):  # a bad first row is data, not a header: report it
                raise
            arr = np.loadtxt(p, delimiter=delim, ndmin=1, dtype=np.float64, skiprows=1)
            if arr.size == 0:  # nothing but a line that is not numbers: the first error is the one to report
                raise
            with open(p) as f:
                f.readline()
                first = f.readline()
    if arr.ndim == 1 and delim == "," and first.count(",") > 0:
        arr = arr[None, :]  # one line of several numbers: a 1×n matrix
    return arr


def read_array(path: str | Path, name: str, *, allow_sparse: bool = False):
    """Load an array from ``path`` (``name`` is the argument it came from, for messages); a
    :class:`~kernelscope._arrays.ValidationError` for missing, unreadable or unsupported files.

    ``.npy`` as saved; text files as 1-D (one column) or 2-D float arrays; ``.mtx`` dense, or a CSR matrix with
    ``allow_sparse``.
    """
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
            arr = _load_text(p, suffix)
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


def read_table(path: str | Path, name: str) -> np.ndarray:
    """:func:`read_array` as a non-empty 2-D float64 table of finite numbers, rows = samples (a single column
    becomes shape (N, 1))."""
    arr = np.asarray(read_array(path, name))
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.size == 0:
        raise ValidationError(f"{name}", "a non-empty 2-D table (rows = samples)", f"shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValidationError(f"{name}", "numbers", f"dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        r, c = np.argwhere(~np.isfinite(arr))[0]
        raise ValidationError(name, "finite numbers", f"a non-finite value at row {r}, column {c}")
    return arr
