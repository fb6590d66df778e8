"""Atomic writes: a file is either the old version or the complete new one, never half written."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open()`` would give a new file (mkstemp's 0600 is only for the temp name).

    The umask is read from /proc where it is shown, so no other thread ever sees it changed; elsewhere it is read
    by setting and restoring it.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic(Path(path), lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """NumPy/torch scalars and arrays, tuples and dataclass-free containers -> plain JSON types."""
    try:
        import torch

        if isinstance(obj, torch.Tensor):
            obj = obj.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def atomic_save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    return _atomic(Path(path), lambda f: np.savez(f, **arrays))


def atomic_savefig(fig, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (format from the suffix)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    kwargs.setdefault("dpi", 110)
    kwargs.setdefault("bbox_inches", "tight")
    return _atomic(path, lambda f: fig.savefig(f, format=fmt, **kwargs))


def fmt(value: float, spec: str) -> str:
    """``format(value, spec)`` for the page, where a number that rounds to zero has no sign.

    ``fmt(-0.0004, "+.3f") == "0.000"``, ``fmt(-0.0, ".2e") == "0.00e+00"``, ``fmt(0.25, "+.2f") == "+0.25"``;
    the report's table cells and the chapters' findings both use it, so no page shows "-0.000".
    """
    text = format(value, spec)
    mantissa = re.split("[eE]", text)[0]
    if text[:1] in "+-" and any(c.isdigit() for c in mantissa) and not any(c in "123456789" for c in mantissa):
        return text[1:]
    return text
