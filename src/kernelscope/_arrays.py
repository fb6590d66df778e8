"""Array in, array out: validation, dtype/device handling and the one place error messages are phrased.

Every public function of kernelscope validates its inputs here, before any work, so that a user gets one kind
of message everywhere::

    ValueError: A: expected a 2-D array (n_rows, n_cols), got shape (3,). Reshape a single row with A[None, :].

Results come back as the kind that went in: NumPy (or lists) in -> NumPy out; a torch tensor in -> a tensor on
the same device out (see :class:`ArrayKind`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "ValidationError",
    "MemoryBudgetError",
    "KernelscopeWarning",
    "DivergenceWarning",
    "ArrayKind",
    "as_numpy",
    "as_tensor",
    "check_positive",
    "check_nonnegative",
    "check_finite_number",
    "check_int",
    "check_choice",
    "check_same_rows",
    "check_memory",
    "check_magnitude",
    "memory_budget_bytes",
    "format_bytes",
    "as_generator",
]


class ValidationError(ValueError):
    """Bad input to a public function. Message: ``<argument>: expected <what>, got <what came>. <way out>``."""

    def __init__(self, name: str, expected: str, got: str, fix: str | None = None):
        self.argument, self.expected, self.got, self.fix = name, expected, got, fix
        msg = f"{name}: expected {expected}, got {got}."
        if fix:
            msg += f" {fix}"
        super().__init__(msg)


class MemoryBudgetError(MemoryError):
    """Raised *before* allocating something that would not fit the memory budget; names the bytes needed."""


class KernelscopeWarning(UserWarning):
    """Numerical situations a user would want to know about (singular systems, non-convergence...)."""


class DivergenceWarning(KernelscopeWarning):
    """Training diverged, or steps too large broke what its result claims: the numbers describe a failed run (a
    command-line run that sees one exits with status 1)."""


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _address_space_left() -> float:
    """Bytes this process may still map under its address-space limit (``ulimit -v``, RLIMIT_AS): the limit less
    the virtual size now (/proc/self/statm); inf without a limit or where neither can be read."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY or limit < 0:
            return math.inf
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
        return max(0.0, float(limit - size))
    except (ImportError, OSError, ValueError):
        return math.inf


def _cgroup_memory_left() -> float:
    """Bytes the process's cgroup (a container's memory limit) may still charge: ``memory.max − memory.current``
    (cgroup v2) or ``limit_in_bytes − usage_in_bytes`` (v1); inf without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as f:
                text = f.read().strip()
            if text == "max":
                return math.inf
            with open(usage_file) as f:
                usage = int(f.read().strip())
            limit = int(text)
            if limit >= 1 << 60:  # cgroup v1 says "no limit" with a huge number
                return math.inf
            return max(0.0, float(limit - usage))
        except (OSError, ValueError):
            continue
    return math.inf


def memory_budget_bytes(device: Any = None) -> int:
    """Memory a single kernelscope allocation may take: half of the memory available now - on ``device`` when it
    is a CUDA device (half of its free memory), else in RAM.

    "Available" is the least of the machine's available memory (psutil), what the address-space limit still
    allows (``ulimit -v``: a request past it fails in the allocator, whatever the machine has free) and what the
    cgroup's memory limit still allows (a container: past it the kernel kills the process).
    """
    if device is not None and torch.device(device).type == "cuda":
        return int(0.5 * torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        import psutil

        available = float(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is a dependency, but be robust
        available = 8.0 * 1024**3
    return int(0.5 * min(available, _address_space_left(), _cgroup_memory_left()))


def check_memory(n_bytes: float, what: str, way_out: str, budget: int | None = None, *, device: Any = None) -> None:
    """Refuse up front an allocation of ``n_bytes`` that exceeds ``budget`` (default: :func:`memory_budget_bytes`
    of ``device``, None for RAM)."""
    budget = memory_budget_bytes(device) if budget is None else int(budget)
    if n_bytes > budget:
        raise MemoryBudgetError(
            f"{what} needs {format_bytes(n_bytes)} but the memory budget is {format_bytes(budget)}. {way_out}"
        )


#: the largest |x| whose square is finite in float64 (divided by √d for d features in check_magnitude)
_SQUARABLE = math.sqrt(np.finfo(np.float64).max)


def check_magnitude(x: Any, name: str, *, features: int | None = None, fix: str | None = None) -> None:
    """Refuse entries so large that inner products of rows overflow float64: ``max |x| ≤ √(float max / d)``
    (d = ``features``, default the size of the last axis), i.e. every ``‖x‖²`` and ``x·x'`` is finite.

    Kernels square their inputs (``‖x − x'‖²``, ``x·x'``); beyond this limit they would return inf − inf = NaN.
    ``fix``: the way out named in the message (default: scale the inputs).
    """
    if isinstance(x, torch.Tensor):
        if x.numel() == 0 or not x.is_floating_point():
            return
        lo, hi = _extremes(x.detach())
    else:
        arr = np.asarray(x)
        if arr.size == 0 or arr.dtype.kind != "f":
            return
        lo, hi = _extremes(arr)
    big = max(-lo, hi)  # NaN (a NaN entry) passes here: the finiteness checks name it
    d = max(1, int(features if features is not None else (x.shape[-1] if len(x.shape) else 1)))
    limit = _SQUARABLE / math.sqrt(d)
    if big > limit:
        raise ValidationError(name, f"entries whose squares, summed over {d}, are finite in float64 (|x| <= "
                              f"{limit:.3g})", f"max |x| = {big:.3g}",
                              fix or "Scale the inputs first (standardise the features): a kernel of such inputs "
                              "would be inf − inf = NaN.")


@dataclass(frozen=True)
class ArrayKind:
    """Remembers what kind of array came in so the result can go back out as the same kind."""

    is_torch: bool
    device: torch.device | None = None

    @staticmethod
    def of(*xs: Any) -> ArrayKind:
        for x in xs:
            if isinstance(x, torch.Tensor):
                return ArrayKind(True, x.device)
        return ArrayKind(False, None)

    def wrap(self, value: Any) -> Any:
        """Convert a NumPy array / tensor result to the remembered kind (scalars pass through)."""
        if value is None or isinstance(value, (float, int, str, bool)):
            return value
        if self.is_torch:
            if isinstance(value, torch.Tensor):
                return value.to(self.device)
            return torch.as_tensor(np.asarray(value), device=self.device)
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        return np.asarray(value)


def _to_numpy_raw(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise ValidationError(name, "an array-like of numbers", f"{type(x).__name__} ({exc})") from None


def _check_numeric(arr: np.ndarray, name: str, original: Any) -> None:
    if arr.dtype == object or arr.dtype.kind in "USV" or arr.dtype.kind == "M":
        raise ValidationError(name, "numeric data (int or float)",
                              f"{type(original).__name__} holding {arr.dtype} data",
                              "Convert strings/objects to numbers first.")
    if arr.dtype.kind == "c":
        raise ValidationError(name, "real numbers", "complex dtype " + str(arr.dtype))


def _check_shape(arr: np.ndarray, name: str, ndim: int | Sequence[int] | None, min_rows: int,
                 shape_hint: str | None) -> None:
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            hint = f" {shape_hint}" if shape_hint else ""
            fix = "Reshape a single row with x[None, :] or a column with x[:, None]." if 2 in allowed else None
            raise ValidationError(name, f"a {want} array{hint}", f"shape {tuple(arr.shape)}", fix)
    if arr.ndim >= 1 and arr.shape[0] < min_rows:
        raise ValidationError(name, f"at least {min_rows} row(s)", f"shape {tuple(arr.shape)} (empty)")
    if arr.size == 0 and min_rows > 0:
        raise ValidationError(name, "a non-empty array", f"shape {tuple(arr.shape)}")


def _extremes(x: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """The smallest and largest entry of a non-empty float array (NaN if one is NaN): one pass over it, and no
    temporary of its size (``isfinite(x).all()`` and ``abs(x).max()`` cost 5–15× more on large inputs)."""
    if isinstance(x, torch.Tensor):
        lo, hi = torch.aminmax(x)
        return float(lo), float(hi)
    return float(x.min()), float(x.max())


def _all_finite(x: np.ndarray | torch.Tensor) -> bool:
    """Whether every entry of a float array is finite (empty: True)."""
    if x.size == 0 if isinstance(x, np.ndarray) else x.numel() == 0:
        return True
    lo, hi = _extremes(x)
    return math.isfinite(lo) and math.isfinite(hi)


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind == "f" and not _all_finite(arr):
        bad = np.argwhere(~np.isfinite(arr))[0]
        what = "NaN" if np.isnan(arr[tuple(bad)]) else "inf"
        raise ValidationError(name, "finite values", f"{what} at index {tuple(int(i) for i in bad)}",
                              "Remove or impute non-finite entries first.")


def as_numpy(x: Any, name: str, *, ndim: int | Sequence[int] | None = None, min_rows: int = 1,
             dtype: Any = np.float64, finite: bool = True, shape_hint: str | None = None) -> np.ndarray:
    """Validate ``x`` and return it as a NumPy array of ``dtype`` (float64 by default).

    Raises :class:`ValidationError` (a ``ValueError``) naming ``name`` for non-numeric data, a wrong number of
    dimensions, an empty array, or NaN/inf when ``finite``.
    """
    if x is None:
        raise ValidationError(name, "an array", "None")
    arr = _to_numpy_raw(x, name)
    _check_numeric(arr, name, x)
    _check_shape(arr, name, ndim, min_rows, shape_hint)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if finite:
        _check_finite(arr, name)
    return arr


def as_tensor(x: Any, name: str, *, ndim: int | Sequence[int] | None = None, min_rows: int = 1,
              dtype: torch.dtype | None = torch.float64, device: torch.device | str | None = None,
              finite: bool = True, shape_hint: str | None = None) -> torch.Tensor:
    """Validate ``x`` and return a torch tensor (float64 by default), on ``x``'s device if it is a tensor."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.is_complex():
            raise ValidationError(name, "real numbers", f"complex dtype {t.dtype}")
        if t.dtype == torch.bool:
            t = t.to(torch.float64 if dtype is None else dtype)
        _check_shape_t(t, name, ndim, min_rows, shape_hint)
        if dtype is not None:
            t = t.to(dtype)
        if device is not None:
            t = t.to(device)
        if finite and t.is_floating_point() and not _all_finite(t):
            _check_finite(t.cpu().numpy(), name)
        return t
    arr = as_numpy(x, name, ndim=ndim, min_rows=min_rows, dtype=None, finite=False, shape_hint=shape_hint)
    t = torch.as_tensor(arr.astype(np.float64) if arr.dtype.kind in "biu" else arr)
    if dtype is not None:
        t = t.to(dtype)
    if finite and t.is_floating_point():
        _check_finite(t.numpy(), name)
    return t.to(device) if device is not None else t


def _check_shape_t(t: torch.Tensor, name: str, ndim, min_rows: int, shape_hint) -> None:
    # Reuse the NumPy message logic on a shape-only stand-in (no copy of the data).
    _check_shape(np.empty(tuple(t.shape), dtype=np.uint8), name, ndim, min_rows, shape_hint)


def check_same_rows(a: Any, b: Any, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValidationError(name_b, f"{a.shape[0]} rows (as many as {name_a})", f"{b.shape[0]} rows")


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(name, "a number", repr(value)) from None
    if not math.isfinite(v) or (v < 0 if allow_zero else v <= 0):
        raise ValidationError(name, "a non-negative number" if allow_zero else "a positive number", repr(value))
    return v


def check_nonnegative(value: Any, name: str) -> float:
    return check_positive(value, name, allow_zero=True)


def check_finite_number(value: Any, name: str) -> float:
    """A real number of either sign; NaN and ±inf are refused."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(name, "a number", repr(value)) from None
    if not math.isfinite(v):
        raise ValidationError(name, "a finite number", repr(value))
    return v


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValidationError(name, "an integer", repr(value))
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValidationError(name, f"an integer >= {minimum}", repr(value))
    if maximum is not None and v > maximum:
        raise ValidationError(name, f"an integer <= {maximum}", repr(value))
    return v


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValidationError(name, "one of " + ", ".join(repr(c) for c in choices), repr(value))
    return value


def as_generator(seed: int | torch.Generator | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` from a seed (or the generator itself); no hidden global state."""
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = 0
    g = torch.Generator(device=device)
    g.manual_seed(check_int(seed, "seed", minimum=0))
    return g


def warn(message: str, category: type[KernelscopeWarning] = KernelscopeWarning) -> None:
    warnings.warn(message, category, stacklevel=3)
