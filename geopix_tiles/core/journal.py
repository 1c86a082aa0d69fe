"""The run journal: what an interrupted run had finished, so ``--resume`` can continue.

A run's scratch space is one hidden folder next to its output. The journal inside it is
rewritten atomically (write, fsync, rename) only after the raster and the vector parts it
describes are safely on disk, so after a kill at any instant it points at a consistent
state. It also records a fingerprint of the run's inputs and options: resuming with
different ones would silently mix two results, so it is refused.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import replacing

VERSION = 1


#: fingerprint keys as the user knows them
_OPTION_NAMES = {"scene": "scene", "scene_size": "scene file (size)", "scene_mtime": "scene file (modified)",
                 "remote": "remote scene (size/ETag)", "bands": "--bands", "prompts": "--prompt", "model": "--model",
                 "tile": "--tile", "overlap": "--overlap", "threshold": "--threshold", "min_area": "--min-area",
                 "simplify": "--simplify", "cog": "--cog", "vectorize": "outputs", "out": "--out",
                 "raster": "--raster", "skip_bad_tiles": "--skip-bad-tiles", "panel_width": "panel width"}


class RunJournal:
    def __init__(self, workdir: str | os.PathLike) -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / "journal.json"
        self.state_path = self.workdir / "vector_state.npz"

    def exists(self) -> bool:
        return self.path.exists()

    def load(self, fingerprint: dict) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"the resume journal {self.path} is unreadable ({exc}); rerun with --overwrite") from None
        now = json.loads(json.dumps(fingerprint))
        before = data.get("fingerprint") or {}
        if data.get("version") != VERSION or before != now:
            changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            what = (f"its {', '.join(_OPTION_NAMES.get(k, k) for k in changed[:3])} "
                    f"differ{'s' if len(changed) == 1 else ''} from this command's"
                    if changed and data.get("version") == VERSION else "it was written by another version")
            raise InputError(
                f"the interrupted run next to this output cannot be resumed: {what}; "
                "rerun with exactly the same arguments plus --resume, or use --overwrite to start again"
            )
        return data

    def save(self, data: dict, fingerprint: dict) -> None:
        data = {**data, "version": VERSION, "fingerprint": fingerprint}
        with replacing(self.path) as tmp, open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())

    def save_state(self, arrays: dict[str, np.ndarray]) -> None:
        with replacing(self.state_path) as tmp:
            np.savez(tmp, **arrays)

    def load_state(self) -> dict[str, np.ndarray]:
        with np.load(self.state_path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class RunLock:
    """One run per destination: a hidden lock file next to it that holds the owner's pid.

    A second run to the same output would otherwise start by deleting the first one's journal
    and partial files. The lock of a process that no longer exists (killed, power loss) is
    taken over, so ``--resume`` after a crash never needs a manual cleanup.
    """

    def __init__(self, path: Path, destination: Path) -> None:
        self.path = Path(path)
        self.destination = destination
        self.owned = False

    def acquire(self) -> None:
        from ..errors import OutputError  # noqa: PLC0415

        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._owner()
                if pid is not None and _alive(pid):
                    raise OutputError(f"another geopix-tiles run (pid {pid}) is writing '{self.destination}'; wait "
                                      "for it to finish or choose another output") from None
                try:  # a stale lock: its process is gone
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.owned = True
            return
        raise OutputError(f"could not lock '{self.destination}' for writing; remove {self.path} if no run is active")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.owned:
            self.owned = False
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
