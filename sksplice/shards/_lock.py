"""One writer per output folder: an advisory lock the OS releases when the process ends."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..exceptions import FolderInUseError

__all__ = ["folder_lock"]


def _try_lock(fd):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


@contextlib.contextmanager
def folder_lock(out, name=".sksplice.lock"):
    """Hold ``out/name`` locked while the block runs, or fail at once.

    The lock is advisory (``flock``), so a killed run never leaves a stale
    lock behind: the OS releases it with the process.  The lock file itself
    stays (an empty, hidden file); removing it would race with a waiting run.

    Parameters
    ----------
    out : str or path
        The folder (created if needed).
    name : str, default=".sksplice.lock"
        The lock file's name.

    Yields
    ------
    path : Path
        The lock file.

    Raises
    ------
    FolderInUseError
        If another process holds the lock.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _try_lock(fd):
            raise FolderInUseError(
                f"another sksplice run is writing to {str(out)!r} (it holds {str(path)!r}); "
                "wait for it to finish, then rerun to resume, or choose another output "
                "folder."
            )
        yield path
    finally:
        os.close(fd)  # releases the lock
