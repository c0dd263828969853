"""Files the package reads and writes.

Reading: every path sksplice reads goes through :func:`check_regular_file` (or
:func:`open_regular`, :func:`read_bytes`, :func:`read_text`, :func:`read_json`
on top of it): a directory, a named pipe, a device or a socket is refused with
an error naming the path before anything opens it (a pipe with no writer would
wait forever, ``/dev/zero`` never ends), and a file larger than the cap of its
kind is refused before it is read.  :func:`split_lines` splits text files into
lines at ``\\n`` (or ``\\r\\n``) only, refusing control characters inside a line.

Writing: atomically, with the user's permissions (:func:`atomic_write`).
"""

from __future__ import annotations

import os
import secrets
import stat
import unicodedata
from pathlib import Path

__all__ = [
    "MAX_ARRAY_BYTES",
    "MAX_CHECKPOINT_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_JSON_BYTES",
    "MAX_TEXT_BYTES",
    "RefusedFileError",
    "atomic_write",
    "check_inside",
    "check_regular_file",
    "open_image_file",
    "open_regular",
    "read_bytes",
    "read_json",
    "read_text",
    "split_lines",
    "temporary_name_pattern",
]

_TMP_SUFFIX = ".tmp"

_MiB = 1024 * 1024

#: Largest JSON file read (manifests, summaries, concept lists, model configs).
MAX_JSON_BYTES = 64 * _MiB

#: Largest text file read (vocabularies, ``--texts``, captions).
MAX_TEXT_BYTES = 256 * _MiB

#: Largest array file read (embeddings files, means, shards, dictionary cache entries).
MAX_ARRAY_BYTES = 16 * 1024 * _MiB

#: Largest model checkpoint read.
MAX_CHECKPOINT_BYTES = 64 * 1024 * _MiB

#: Largest image file read (PIL's ``MAX_IMAGE_PIXELS`` also bounds the decoded size).
MAX_IMAGE_BYTES = 1024 * _MiB


class RefusedFileError(ValueError):
    """A path refused before it was opened: not a regular file, or over its size cap."""


def _kind(mode):
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _check_stat(st, path, what, max_bytes):
    if not stat.S_ISREG(st.st_mode):
        raise RefusedFileError(
            f"{what} {_show(path)} is {_kind(st.st_mode)}, not a regular file; it was not "
            "opened: pass the path of a file."
        )
    if max_bytes is not None and st.st_size > max_bytes:
        raise RefusedFileError(
            f"{what} {_show(path)} is {st.st_size} bytes, more than the {max_bytes} bytes "
            f"read for a {what}: pass a smaller file."
        )


def _show(path):
    text = os.fspath(path)
    text = text if isinstance(text, str) else os.fsdecode(text)
    return repr(text if len(text) <= 300 else text[:300] + "...")


def check_regular_file(path, what="file", max_bytes=None):
    """Refuse a path that is not a regular file of at most ``max_bytes``, without opening it.

    A symbolic link is followed (a link to a regular file is accepted).

    Parameters
    ----------
    path : str or path-like
        The path to check.
    what : str, default="file"
        How errors call the file (``"vocabulary file"``, ``"manifest"``).
    max_bytes : int or None, default=None
        The largest size accepted (``None``: no cap).

    Returns
    -------
    st : os.stat_result
        The file's status.

    Raises
    ------
    FileNotFoundError
        The path does not exist (or is a dangling link).
    RefusedFileError
        A ``ValueError``: the path is a directory, a named pipe, a device or a
        socket, or is larger than ``max_bytes``; the message names the path
        (and the cap).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {_show(path)} does not exist.") from None
    except (OSError, ValueError) as e:  # a name too long, a NUL byte, a loop of links
        raise FileNotFoundError(
            f"{what} {_show(path)} cannot be read ({type(e).__name__}: {str(e)[:200]})."
        ) from None
    _check_stat(st, path, what, max_bytes)
    return st


def open_regular(path, what="file", max_bytes=None):
    """Open a regular file for binary reading; anything else is refused before it is opened.

    The path is checked with :func:`check_regular_file`, opened without
    blocking (a file swapped for a named pipe in between cannot make the open
    wait) and checked again on the open descriptor, so the file read is the
    file checked.

    Parameters
    ----------
    path : str or path-like
        The file.
    what : str, default="file"
        How errors call the file.
    max_bytes : int or None, default=None
        The largest size accepted.

    Returns
    -------
    f : file object
        Opened ``"rb"``; close it (``with open_regular(...) as f``).
    """
    check_regular_file(path, what, max_bytes)
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {_show(path)} does not exist.") from None
    try:
        _check_stat(os.fstat(fd), path, what, max_bytes)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path, what="file", max_bytes=MAX_JSON_BYTES):
    """The whole content of a regular file of at most ``max_bytes`` bytes.

    Parameters
    ----------
    path : str or path-like
        The file.
    what : str, default="file"
        How errors call the file.
    max_bytes : int, default=MAX_JSON_BYTES
        The cap; a file that grows past it while read is refused too.

    Returns
    -------
    data : bytes
        The content.
    """
    with open_regular(path, what, max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise RefusedFileError(
            f"{what} {_show(path)} is more than the {max_bytes} bytes read for a {what}: "
            "pass a smaller file."
        )
    return data


def read_text(path, what="file", max_bytes=MAX_TEXT_BYTES, encoding="utf-8"):
    """The decoded content of a regular text file of at most ``max_bytes`` bytes.

    Parameters
    ----------
    path : str or path-like
        The file.
    what : str, default="file"
        How errors call the file.
    max_bytes : int, default=MAX_TEXT_BYTES
        The cap.
    encoding : str, default="utf-8"
        ``"utf-8-sig"`` drops a byte-order mark.

    Returns
    -------
    text : str
        The content; a ``UnicodeDecodeError`` propagates.
    """
    return read_bytes(path, what, max_bytes).decode(encoding)


def read_json(path, what="JSON file", max_bytes=MAX_JSON_BYTES):
    """A parsed JSON file (UTF-8) of at most ``max_bytes`` bytes.

    Parameters
    ----------
    path : str or path-like
        The file.
    what : str, default="JSON file"
        How errors call the file.
    max_bytes : int, default=MAX_JSON_BYTES
        The cap.

    Returns
    -------
    value : object
        The parsed value; ``json.JSONDecodeError``/``UnicodeDecodeError``
        propagate (both are ``ValueError``).
    """
    import json

    return json.loads(read_text(path, what, max_bytes))


def check_inside(folder, path, what="output folder"):
    """Refuse ``path`` unless its real path lies inside ``folder``'s real path.

    Every link on the way is resolved (``os.path.realpath``), so a name in the
    folder that is a symbolic link to a file or folder elsewhere (another
    run's shards, a user's files) is refused before it is read, written or
    deleted.  A path that does not exist yet is resolved as far as it exists.

    Parameters
    ----------
    folder : str or path-like
        The folder (itself may be a link: its target is the boundary).
    path : str or path-like
        A path under ``folder``.
    what : str, default="output folder"
        How errors call the folder.

    Returns
    -------
    path : pathlib.Path
        ``path``, unchanged.

    Raises
    ------
    ValueError
        ``path`` resolves outside ``folder``; the message names the link.
    """
    base = os.path.realpath(folder)
    real = os.path.realpath(path)
    if real != base and os.path.commonpath([base, real]) != base:
        raise ValueError(
            f"{_show(path)} in the {what} {_show(folder)} resolves to {_show(real)}, outside "
            f"the folder (a symbolic link in it points elsewhere); sksplice reads, writes and "
            "deletes only inside its folder: remove the link, or choose another folder."
        )
    return Path(path)


def open_image_file(path):
    """Decode an image file as RGB, upright (its EXIF orientation applied).

    Parameters
    ----------
    path : str or path-like
        A regular file of at most :data:`MAX_IMAGE_BYTES`
        (anything else is refused before it is opened).

    Returns
    -------
    image : PIL.Image.Image
        The fully decoded RGB image (truncation shows here).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    with open_regular(path, "image file", MAX_IMAGE_BYTES) as f:
        try:
            im = Image.open(f)
        except UnidentifiedImageError:  # PIL would name the descriptor, not the file
            raise UnidentifiedImageError(
                f"cannot identify image file {os.fspath(path)!r}") from None
        with im:
            im.load()
            return ImageOps.exif_transpose(im).convert("RGB")


def _bad_character(line):
    for ch in line:
        if ch != "\t" and unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return ch
    return None


def split_lines(text, what="file"):
    """Split text into lines at ``\\n`` (or ``\\r\\n``) only, refusing control characters.

    Unlike ``str.splitlines``, a form feed, a vertical tab, the separators
    ``\\x1c``-``\\x1e``, ``\\x85``, U+2028 or U+2029 never start a new line: a
    line holding one, or any other control character (NUL, ``\\r`` alone...;
    a tab is allowed), is refused with an error naming its number, so one
    line never silently becomes several entries or carries invisible bytes.

    Parameters
    ----------
    text : str
        The file's content.
    what : str, default="file"
        How errors call the file (``"vocabulary file 'v.txt'"``).

    Returns
    -------
    lines : list of str
        The lines, without their ends (a final newline adds no empty line).
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for number, line in enumerate(lines, start=1):
        if line.endswith("\r"):
            line = line[:-1]
        bad = _bad_character(line)
        if bad is not None:
            raise ValueError(
                f"line {number} of {what} holds the control character U+{ord(bad):04X} "
                f"({unicodedata.name(bad, 'control')}): a line ends at a newline only, and "
                "control characters are not text; remove it from the file."
            )
        out.append(line)
    return out


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
        When it is not a ``.npz`` archive, or holds pickled objects; a
        :class:`RefusedFileError` when the path is not a regular file (a
        directory, a pipe, a device: never opened) or is over ``MAX_ARRAY_BYTES``.
    """
    import zipfile

    import numpy as np

    try:
        with open_regular(path, what, MAX_ARRAY_BYTES) as f:
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file: one array
                raise ValueError("it holds one array (a .npy file), not an archive")  # noqa: TRY004
            with loaded as npz:
                return {key: npz[key] for key in npz.files}
    except RefusedFileError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(
            f"{what} {_show(path)} is not a readable .npz archive without pickled objects "
            f"({type(exc).__name__}: {str(exc)[:200]})."
        ) from None
