"""A run's destinations as one transaction: all published on success, nothing half-written otherwise.

The engine writes the raster under a hidden temporary name and the polygons as part files in
the run folder. Leaving the ``with`` block:

* **success** - the vector file is assembled under a temporary name, the raster is finished
  (and converted to COG), then the vector file is renamed into place and the journal removed:
  the slow, failure-prone steps come before the first rename, so a full disk leaves neither;
* **resumable stop** (Ctrl-C, or a remote server that stopped answering, as ``resumable``
  decides) - the raster is closed and every partial file and the journal stay, hidden, for
  ``--resume``;
* **any other error** - the partial raster and the journal are removed.

Nothing is caught: the error still propagates after the cleanup.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..core.journal import RunJournal
from .raster_sink import RasterSink
from .vector_sink import VectorSink

__all__ = ["RunOutputs"]


class RunOutputs:
    """``with RunOutputs(...) as outputs:`` around the streaming run; see the module docstring."""

    def __init__(self, journal: RunJournal, raster: RasterSink | None = None, vectors: VectorSink | None = None,
                 out: Path | None = None, layer: str | None = None, *, resume: bool = False,
                 resumable: Callable[[BaseException], bool] = lambda exc: isinstance(exc, KeyboardInterrupt)) -> None:
        if out is not None and vectors is None:
            raise ValueError("a vector destination needs a VectorSink")
        self.journal = journal
        self.raster = raster
        self.vectors = vectors
        self.out = Path(out) if out is not None else None
        self.layer = layer or (self.out.stem if self.out is not None else None)
        self.resume = resume
        self.resumable = resumable

    @property
    def _vector_tmp(self) -> Path:
        return self.journal.workdir / f"result{self.out.suffix.lower()}"

    def __enter__(self) -> "RunOutputs":
        self.journal.workdir.mkdir(parents=True, exist_ok=True)
        if self.raster is not None:
            self.raster.open(resume=self.resume)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self._commit()
        elif self.resumable(exc):
            if self.raster is not None:
                self.raster.close()
        else:
            self._discard()
        return False

    def _discard(self) -> None:
        if self.raster is not None:
            self.raster.discard()
        self.journal.remove()

    def _commit(self) -> None:
        try:
            if self.out is not None:
                tmp = self._vector_tmp
                if tmp.exists():
                    tmp.unlink()
                self.vectors.write(tmp, self.layer)
            if self.raster is not None:
                self.raster.finalize()
            if self.out is not None:
                os.replace(self._vector_tmp, self.out)
        except BaseException:
            self._discard()
            raise
        self.journal.remove()
