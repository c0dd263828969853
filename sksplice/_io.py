"""Files the package writes: atomically, with the user's permissions."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

__all__ = ["atomic_write", "temporary_name_pattern"]

_TMP_SUFFIX = ".tmp"


def temporary_name_pattern(name):
    """A regular expression matching the temporary files :func:`atomic_write` makes for ``name``.

    Parameters
    ----------
    name : str
        The final file name (no folder), e.g. ``"manifest.json"``.

    Returns
    -------
    pattern : str
        Matches ``".<name>.<random letters and digits>.tmp"`` (the names of
        this and earlier versions), and nothing a user is likely to own, so a
        cleanup removes only what an interrupted writer left.
    """
    import re

    return rf"\.{re.escape(name)}\.[A-Za-z0-9_]{{1,64}}\.tmp"


def _open_temporary(folder, name):
    """Create a new temporary file; the kernel applies the process umask to 0o666."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(8)}{_TMP_SUFFIX}"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue
    raise FileExistsError(  # pragma: no cover
        f"could not create a temporary file in {str(folder)!r}")


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it.

    An interrupted or failing ``write`` leaves neither ``path`` half-written nor
    the temporary file behind (``os.replace`` is atomic on one file system).
    A new file gets the permissions the user's umask gives any new file
    (``0o666 & ~umask``, as ``open(path, "w")`` would); a replaced file keeps
    its permission bits.

    Parameters
    ----------
    path : str or path-like
        The file to (re)place; its folder is created if needed.
    write : callable
        Called with a binary file object.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        keep_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        keep_mode = None
    fd, tmp = _open_temporary(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_mode is not None:
            try:
                os.chmod(tmp, keep_mode)
            except OSError:  # pragma: no cover - e.g. a file system without modes
                pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable (best effort; not every OS allows it)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def read_npz(path, what="file"):
    """Every array of a ``.npz`` file, read without unpickling anything.

    The one place the package reads ``.npz`` files a user hands it (a saved
    :class:`~sksplice.ConceptDictionary`), so checks on what may be read apply
    to all of them.

    Parameters
    ----------
    path : str or path-like
        The file.
    what : str, default="file"
        What the file should be, for the error messages (e.g. ``"dictionary
        file"``).

    Returns
    -------
    arrays : dict of str to ndarray
        The arrays, by name, fully read (the file is closed).

    Raises
    ------
    FileNotFoundError
        When there is no such file.
    ValueError
        When it is not a ``.npz`` archive, or holds pickled objects.
    """
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise ValueError(f"{what} {str(path)!r} is not a regular file; pass a .npz file.")
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file: one array
            raise ValueError("it holds one array (a .npy file), not an archive")  # noqa: TRY004
        with loaded as npz:
            return {key: npz[key] for key in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(
            f"{what} {str(path)!r} is not a readable .npz archive without pickled objects "
            f"({type(exc).__name__}: {str(exc)[:200]})."
        ) from None
