"""Outputs appear whole or not at all: write under a hidden temporary name, rename on success.

``os.replace`` within one folder is atomic, so a reader (or a crashed run) never sees half a
file at the destination; on any error the temporary file is removed.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

__all__ = ["replacing"]


@contextlib.contextmanager
def replacing(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield ``.NAME.partial<suffix>`` next to ``path``; rename it to ``path`` when the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial{path.suffix.lower() if suffix is None else suffix}")
    if tmp.exists():
        tmp.unlink()
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
