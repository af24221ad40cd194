"""Atomic file writes: a temp file in the target's folder, fsync, then rename.

A process killed at any instant leaves either the old file or the new one, never half of one: a
rename within one file system is atomic, and the data is flushed to disk before it (the folder
after it), so a power cut keeps one whole version too. A kill can leave a ``.NAME.*.tmp`` beside
the target; nothing reads it, and ``remove_stale_temps`` clears it on the next run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(file)`` on a temp file, then move it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide run files from collaborators
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # makes the rename itself durable
    finally:
        os.close(folder)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch  # here: the CLI's config checks should not wait for torch

    write_atomic(path, lambda f: torch.save(obj, f))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete temp files a killed writer left in ``folder``; returns what went."""
    stale = sorted(Path(folder).glob(".*.tmp")) if Path(folder).is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale
