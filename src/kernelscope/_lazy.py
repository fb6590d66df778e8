"""Packages that import their modules on first use: ``import kernelscope.nets.finite`` (what training needs) does
not load the infinite-width engine, and ``import kernelscope`` stays light.

A package lists its public names and the module each one lives in; :func:`exports` gives it the module-level
``__getattr__`` and ``__dir__`` of PEP 562 that import that module when the name is first read."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, str], submodules: Iterable[str] = ()
            ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps a public name to the module (relative to the
    package, ``''`` for a module outside it given absolutely with a leading ``'kernelscope.'``) that defines it;
    ``submodules`` are public modules of the package, imported when first read."""
    submodules = tuple(submodules)
    public = sorted({*names, *submodules})

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name in names:
            where = names[name]
            module = where if where.startswith("kernelscope.") else f"{package}.{where}"
            return getattr(importlib.import_module(module), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return public

    return __getattr__, __dir__
