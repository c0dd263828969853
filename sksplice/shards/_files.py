"""Listing and reading image files: each real file once, with bounded work."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .._defaults import IMAGE_EXTENSIONS
from .._io import open_image_file
from ..exceptions import BadImageError

__all__ = ["MAX_DEPTH", "list_image_files", "load_image", "read_images"]

#: Deepest folder level :func:`list_image_files` descends to below its root.
MAX_DEPTH = 64


def _identity(st):
    return (st.st_dev, st.st_ino)


def list_image_files(root, *, exclude=(), max_depth=MAX_DEPTH):
    """Every image file under ``root``, with its class from the sub-folder name.

    Folders and files whose names start with ``"."`` are skipped; files are
    recognised by their extension (``sksplice._defaults.IMAGE_EXTENSIONS``,
    any case).  The class of an image is the name of the first-level
    sub-folder it lies in (as torchvision's ``ImageFolder``), ``""`` for
    images directly in ``root``.

    Symbolic links are followed, but every real folder is read once and every
    real file is listed once (under its first path, shallowest first, then in sorted order), so link
    loops neither hang the walk nor duplicate images.  Only regular files are
    listed (a named pipe called ``x.png`` would block a reader).  Folders in
    ``exclude`` (e.g. an output folder placed inside ``root``) and folders
    deeper than ``max_depth`` are not read.

    Parameters
    ----------
    root : str or path
        The folder to walk (recursively, in sorted order).
    exclude : sequence of str or path, default=()
        Folders never read (compared as real paths).
    max_depth : int, default=64
        Deepest sub-folder level read.

    Returns
    -------
    images : list of str
        Paths relative to ``root``, with ``/`` separators, sorted.
    classes : list of str
        The class of each image (``""`` when it is not in a sub-folder).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "cat").mkdir(); (d / "cat" / "a.jpg").touch(); (d / "b.PNG").touch()
    >>> (d / "notes.txt").touch()
    >>> list_image_files(d)
    (['b.PNG', 'cat/a.jpg'], ['', 'cat'])
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {str(root)!r} does not exist or is not a folder; pass a "
            "folder of images (sub-folders name the classes)."
        )
    skip = set()
    for folder in exclude:
        try:
            skip.add(_identity(os.stat(folder)))
        except OSError:
            pass  # not there yet: nothing of it can be listed
    seen_dirs, seen_files, found = set(), set(), []
    # breadth-first, sorted: the first path of a real file is its shortest, smallest one
    level = [("", os.fspath(root))]
    depth = 0
    while level and depth <= max_depth:
        following = []
        for rel_dir, folder in level:
            try:
                ident = _identity(os.stat(folder))
            except OSError:
                continue  # a dangling link or a folder we may not read
            if ident in seen_dirs or ident in skip:
                continue
            seen_dirs.add(ident)
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    is_dir = entry.is_dir()  # follows links
                except OSError:
                    continue
                if is_dir:
                    following.append((rel, entry.path))
                    continue
                if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                try:
                    st = os.stat(entry.path)  # follows links; dangling ones are skipped
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue  # a pipe or device would block or never end when read
                if _identity(st) in seen_files:
                    continue
                seen_files.add(_identity(st))
                found.append(rel)
        level = following
        depth += 1
    found.sort()
    classes = [rel.split("/", 1)[0] if "/" in rel else "" for rel in found]
    return found, classes


def load_image(path):
    """Open an image file fully decoded as RGB (truncation shows here).

    Parameters
    ----------
    path : str or path
        The image file.

    Returns
    -------
    image : PIL.Image.Image
        The decoded RGB image.
    """
    return open_image_file(path)


def read_images(paths, strict=False):
    """Open image files, skipping (or, with ``strict``, refusing) unreadable ones.

    Parameters
    ----------
    paths : sequence of str or path
        Image files.
    strict : bool, default=False
        Raise :class:`~sksplice.exceptions.BadImageError` on the first
        unreadable file instead of skipping it.

    Returns
    -------
    images : list of PIL.Image.Image
        The images that could be read.
    ok : list of int
        Positions in ``paths`` of ``images``.
    bad : list of (int, str)
        Positions of the files that could not be read, with the error.
    """
    images, ok, bad = [], [], []
    for i, p in enumerate(paths):
        try:
            images.append(load_image(p))
        except MemoryError:
            raise
        except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, ...
            msg = f"{type(exc).__name__}: {exc}".strip()
            if strict:
                raise BadImageError(
                    f"cannot read image {str(p)!r} ({msg}); remove or fix the file, or "
                    "drop --strict/strict=True to skip unreadable images."
                ) from exc
            bad.append((i, msg))
            continue
        ok.append(i)
    return images, ok, bad
