"""Results to files: atomic writes (a file is either the old version or the complete new one, never half written,
and gets the mode ``open()`` would give it under the umask) and the JSON forms of results.

- :func:`to_jsonable` - the readable, lossy form of a report's numbers (NaN becomes ``null``, arrays lists);
- :func:`to_json` / :func:`from_json` - the lossless form of a checkpoint: a dataclass, with its nested
  dataclasses, NumPy arrays and torch tensors, comes back as the same dataclass.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import importlib
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(path) as tmp:`` write the file ``tmp`` by any means (a writer that wants a file name);
    on leaving the block it replaces ``path`` at once, with the umask's mode. On an error ``path`` is untouched.

    ``tmp`` is a hidden name beside ``path`` that ends in the same suffix (writers choose the format by it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: the names :func:`atomic_path` gives its temporary files: ``.<name>.<8 random characters>.tmp<suffix>``
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^./]+)?$")


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` left under ``folder`` (recursively) when its process was
    killed before it could clean up (SIGKILL, a power cut). Only for a folder no other process writes into now
    (the tour holds its folder's lock). Returns the paths removed."""
    removed = []
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if _TEMPORARY.match(name):
                p = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "kernelscope") -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``folder/.lock`` (``fcntl.flock``) for the block, so that two runs never
    write into one folder at once. The lock file says who holds it (pid, command); the operating system releases
    the lock when the holder exits, however it exits (a stale file never blocks). Raises
    :class:`FolderInUseError` naming the other run's pid when the folder is taken. Where ``fcntl`` does not exist
    (Windows) the block runs unlocked."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield folder / ".lock"
        return
    path = folder / ".lock"
    f = open(path, "a+")  # not truncated before the lock is ours: the holder's note stays readable
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise FolderInUseError(f"{folder} is in use by another {what} run ({holder}): wait for it to finish, "
                                   "or write into another folder.") from None
        except OSError as exc:  # a file system without locks (some network mounts): run, and say so
            import warnings

            warnings.warn(f"{folder}: could not lock the folder ({exc}); another run into it would not be "
                          "stopped.", stacklevel=3)
            yield path
            return
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}: {' '.join(sys.argv) or 'python'}\n")
        f.flush()
        yield path
    finally:
        f.close()  # releases the lock


class FolderInUseError(OSError):
    """The folder is locked by another run (:func:`folder_lock`)."""


def _atomic(path: str | os.PathLike, write) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """NumPy/torch scalars and arrays, tuples, dataclasses and containers -> plain JSON types (the readable form of
    a report: NaN -> ``null``, ±inf -> ``"inf"``/``"-inf"``, a dataclass -> the dict of its fields)."""
    try:
        import torch

        if isinstance(obj, torch.Tensor):
            obj = obj.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
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


# ---------------------------------------------------------------------------------------------------------------
# Lossless JSON: what goes in comes back
# ---------------------------------------------------------------------------------------------------------------
# Tags of the values plain JSON cannot tell apart; floats keep NaN and ±inf (``json`` writes NaN, Infinity).
_DATACLASS, _NDARRAY, _TENSOR, _TUPLE, _ITEMS = "__dataclass__", "__ndarray__", "__tensor__", "__tuple__", "__items__"


#: arrays with more entries than this are written as base64 of their bytes (little-endian), not as nested lists:
#: a kernel matrix of 4000×1000 float64 is 43 MB so, against about 80 MB of decimal text that is slow to parse
_BINARY_ABOVE = 4096


def _array_json(tag: str, a: np.ndarray, dtype: str) -> dict[str, Any]:
    if a.size > _BINARY_ABOVE:
        data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        return {tag: base64.b64encode(data).decode("ascii"), "encoding": "base64", "dtype": dtype,
                "shape": list(a.shape)}
    return {tag: a.tolist(), "dtype": dtype, "shape": list(a.shape)}


def _array_from_json(data: dict[str, Any], tag: str) -> np.ndarray:
    """The NumPy array of a tagged array form (a tensor's base64 form has a dtype NumPy shares)."""
    dtype = np.dtype(data["dtype"])
    if data.get("encoding") == "base64":
        raw = np.frombuffer(base64.b64decode(data[tag]), dtype=dtype.newbyteorder("<"))
        return raw.astype(dtype).reshape(data["shape"])
    return np.array(data[tag], dtype=dtype).reshape(data["shape"])


def to_json(obj: Any) -> Any:
    """The lossless JSON form of a result, built from the dataclass fields: :func:`from_json` gives back ``obj``.

    A dataclass becomes the dict of its fields tagged with its class (``"module:QualName"``); a NumPy array or a
    torch tensor its nested list with dtype and shape (large ones, above 4096 entries, the base64 of their bytes:
    exact, and a few times smaller and faster than decimal text); a tuple and a dict whose keys are not all
    strings are tagged so that they come back as such; NumPy scalars become Python numbers. Anything else that
    JSON cannot hold (a torch module, a function) is refused with a ``TypeError`` naming its type.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        return {_DATACLASS: f"{cls.__module__}:{cls.__qualname__}",
                **{f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"to_json: a NumPy array of dtype {obj.dtype} has no JSON form")
        return _array_json(_NDARRAY, obj, str(obj.dtype))
    if _is_tensor(obj):
        t = obj.detach().cpu()
        name = str(t.dtype).removeprefix("torch.")
        if t.numel() > _BINARY_ABOVE and name in ("float16", "float32", "float64"):  # dtypes NumPy shares
            return _array_json(_TENSOR, t.numpy(), name)
        return {_TENSOR: t.tolist(), "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {_TUPLE: [to_json(v) for v in obj]}
    if isinstance(obj, list):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: to_json(v) for k, v in obj.items()}
        return {_ITEMS: [[to_json(k), to_json(v)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"to_json: a {type(obj).__module__}.{type(obj).__qualname__} has no JSON form")


def from_json(data: Any) -> Any:
    """The value whose :func:`to_json` form is ``data`` (also after ``json.dumps``/``json.loads``).

    Raises ``ValueError`` for a tag that names no dataclass, ``TypeError`` when the saved fields no longer fit the
    class (it changed since it was saved).
    """
    if isinstance(data, list):
        return [from_json(v) for v in data]
    if not isinstance(data, dict):
        return data
    if _DATACLASS in data:
        cls = _dataclass_named(data[_DATACLASS])
        values = {k: from_json(v) for k, v in data.items() if k != _DATACLASS}
        init = {f.name for f in dataclasses.fields(cls) if f.init}
        obj = cls(**{k: v for k, v in values.items() if k in init})
        for k, v in values.items():
            if k not in init:
                object.__setattr__(obj, k, v)  # a field outside __init__ (init=False)
        return obj
    if _NDARRAY in data:
        return _array_from_json(data, _NDARRAY)
    if _TENSOR in data:
        import torch

        if data.get("encoding") == "base64":
            return torch.from_numpy(_array_from_json(data, _TENSOR).copy())
        return torch.tensor(data[_TENSOR], dtype=getattr(torch, data["dtype"])).reshape(data["shape"])
    if _TUPLE in data:
        return tuple(from_json(v) for v in data[_TUPLE])
    if _ITEMS in data:
        return {from_json(k): from_json(v) for k, v in data[_ITEMS]}
    return {k: from_json(v) for k, v in data.items()}


def _is_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only where torch was imported
    return torch is not None and isinstance(obj, torch.Tensor)


def _dataclass_named(name: Any) -> type:
    module, _, qualname = str(name).partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        obj = None
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise ValueError(f"from_json: {name!r} names no dataclass")
    return obj


def atomic_save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    return _atomic(path, lambda f: np.savez(f, **arrays))


def atomic_savefig(fig, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (format from the suffix); ``dpi`` 110 and ``bbox_inches='tight'`` unless
    given.

    A PNG with ``bbox_inches='tight'`` (and no other option) is drawn once: :func:`_tight_png` crops the drawing
    to the figure's tight box, where matplotlib lays the whole figure out a second time to measure it first (the
    tour's figures: a quarter less time). A PNG is compressed at zlib's level 1: encoding took about a tenth of
    that time at the default level 6, for files about 8% larger.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    kwargs.setdefault("dpi", 110)
    kwargs.setdefault("bbox_inches", "tight")
    if fmt == "png":
        kwargs.setdefault("pil_kwargs", {"compress_level": 1})
        if kwargs["bbox_inches"] == "tight" and set(kwargs) <= {"dpi", "bbox_inches", "pil_kwargs", "pad_inches"}:
            return _atomic(path, lambda f: _tight_png(fig, f, **kwargs))
    return _atomic(path, lambda f: fig.savefig(f, format=fmt, **kwargs))


def _tight_png(fig, f, *, dpi: float, bbox_inches: str, pil_kwargs: dict, pad_inches: float | None = None
               ) -> None:
    """``fig.savefig(f, format='png', bbox_inches='tight')`` in one drawing: draw the figure at its own size, find
    its tight box with the same renderer (the text is measured already) and crop the pixels to it, with the padding
    (cut short where the box comes within it of the canvas' edge). A figure whose tight box reaches beyond its
    canvas (a legend past the edge) is saved by matplotlib instead, which moves the drawing in."""
    from matplotlib import rcParams
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    pad = rcParams["savefig.pad_inches"] if pad_inches is None else pad_inches
    canvas, dpi_before = fig.canvas, fig.dpi
    try:
        fig.dpi = dpi
        agg = FigureCanvasAgg(fig)  # what savefig switches to for a PNG; put back below
        agg.draw()
        box = fig.get_tightbbox(agg.get_renderer())  # inches
        width, height = (int(v) for v in fig.bbox.size)  # the canvas in pixels, as Agg truncates it
        inside = box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width / dpi and box.y1 <= height / dpi
        if inside:  # the box and its padding, the padding cut short at the canvas' edges
            image = Image.frombuffer("RGBA", (width, height), agg.buffer_rgba(), "raw", "RGBA", 0, 1)
            image = image.crop((max(0, math.floor((box.x0 - pad) * dpi)),
                                max(0, math.floor(height - (box.y1 + pad) * dpi)),
                                min(width, math.ceil((box.x1 + pad) * dpi)),
                                min(height, math.ceil(height - (box.y0 - pad) * dpi))))
    finally:
        fig.dpi = dpi_before
        fig.set_canvas(canvas)
    if inside:
        image.save(f, format="png", dpi=(dpi, dpi), **pil_kwargs)
    else:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight", pad_inches=pad, pil_kwargs=pil_kwargs)


def atomic_save_animation(animation, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a matplotlib animation atomically: ``animation.save(tmp, **kwargs)`` (``writer=``, ``dpi=``...), then
    the finished file replaces ``path`` with the umask's mode."""
    with atomic_path(path) as tmp:
        animation.save(str(tmp), **kwargs)
    return Path(path)


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
