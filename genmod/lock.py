"""One writer per run folder.

Two ``genmod run --resume`` of one folder at once would both train and overwrite each other's
checkpoints, config and metrics. The writer holds an advisory lock (``flock``) on
``RUN_DIR/.genmod.lock`` holding its PID; a second writer is refused naming that PID. The
operating system drops the lock when the process ends, however it ends, so a killed run never
leaves its folder locked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from genmod.errors import ConfigError

FILENAME = ".genmod.lock"


@contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the ``with`` block (a no-op where ``flock`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"{folder} is being written by another genmod process (PID {holder}): wait for it to "
                "finish or stop it, or write to another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_stale_temporaries(folder: Path) -> list[str]:
    """Remove the hidden temporary files a killed write left (``.checkpoint.pt.XXXX.tmp``);
    only called while holding the folder's lock, so no live writer owns them."""
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return [p.name for p in stale]
