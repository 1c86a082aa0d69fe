"""Run a callback right after a module is first imported (the accessors' registration).

Why: ``DataArray.geopix`` and ``GeoDataFrame.geopix`` must exist as soon as both
``geopix_tiles`` and xarray / pandas are imported, in either order, but importing xarray and
pandas up front costs ~0.6 s of a 4 s command-line run that never touches them. A module
already imported gets its callback at once; otherwise a meta-path finder wraps the module's
loader so the callback runs when its import finishes.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from typing import Callable

__all__ = ["when_imported"]

_LOCK = threading.Lock()


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, name: str) -> None:
        self.inner, self.name = inner, name

    def create_module(self, spec):  # noqa: ANN001, ANN201 - importlib protocol
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:  # noqa: ANN001
        self.inner.exec_module(module)
        with _LOCK:  # taken here, when the import really ran, so each callback runs once
            callbacks = _FINDER.pending.pop(self.name, [])
        for cb in callbacks:
            cb()

    def __getattr__(self, name: str):  # noqa: ANN204 - get_resource_reader, is_package, ...
        return getattr(self.inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the loader of a module with pending callbacks; the callbacks stay pending until it runs.

    ``importlib.util.find_spec("xarray")`` (an availability check, as dask and others make)
    also asks this finder and never executes the spec it gets; popping the callbacks there
    lost them, and ``DataArray.geopix`` was missing in the process from then on.
    """

    def __init__(self) -> None:
        self.pending: dict[str, list[Callable[[], None]]] = {}

    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        with _LOCK:
            if name not in self.pending:
                return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None:
            return spec
        spec.loader = _Loader(spec.loader, name)
        return spec


_FINDER = _Finder()


def when_imported(module: str, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once ``module`` (a top-level name) is imported; now if it already is."""
    if module in sys.modules:
        callback()
        return
    with _LOCK:
        _FINDER.pending.setdefault(module, []).append(callback)
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
