"""Cached, digest-checked downloads of the reference data files (vocabularies, means).

Every file lives in a registry (:data:`sksplice.vocabularies.VOCABULARIES`,
:data:`sksplice.means.MEANS`) with its path under the data root, its upstream
address and a pinned SHA-256 digest.  :func:`fetch` returns the local copy in
the cache directory, downloading it on first use:

* the cache directory is ``cache_dir``, else ``$SKSPLICE_CACHE``, else the
  platform's user cache directory (``platformdirs.user_cache_dir("sksplice")``);
* the download base is ``$SKSPLICE_DATA_URL`` when set (a mirror, or a local
  server in tests), else the SpLiCE repository's raw-file address;
* a download is streamed to a temporary file beside its target, checked
  against the pinned digest, and only then moved into place with
  ``os.replace``: a failed, interrupted or corrupt download never leaves a
  file that looks valid;
* with ``SKSPLICE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` (or ``offline=True``)
  nothing touches the network: a missing file is a ``FileNotFoundError``
  saying which file, where it was looked for and how to provide it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .exceptions import DownloadError

__all__ = [
    "DEFAULT_DATA_URL",
    "DownloadError",
    "data_url",
    "fetch",
    "file_sha256",
    "get_cache_dir",
    "is_offline",
]

#: Upstream root of the SpLiCE reference data (``vocab/``, ``means/``).
DEFAULT_DATA_URL = "https://raw.githubusercontent.com/AI4LIFE-GROUP/SpLiCE/main/data/"

#: Seconds to wait for the server before giving up on a download.
TIMEOUT = 60

_TRUE = {"1", "true", "yes", "on"}


def is_offline(offline=None):
    """Whether network access is disabled.

    Parameters
    ----------
    offline : bool or None, default=None
        An explicit choice; ``None`` reads the environment: offline when
        ``SKSPLICE_OFFLINE`` or ``HF_HUB_OFFLINE`` is ``1``/``true``/``yes``/``on``.

    Returns
    -------
    offline : bool

    Examples
    --------
    >>> from sksplice._download import is_offline
    >>> is_offline(True)
    True
    """
    if offline is not None:
        return bool(offline)
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE
        for var in ("SKSPLICE_OFFLINE", "HF_HUB_OFFLINE")
    )


def _offline_reason():
    for var in ("SKSPLICE_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var]}"
    return "offline=True"


def get_cache_dir(cache_dir=None):
    """The folder where sksplice keeps vocabularies, means and concept dictionaries.

    Parameters
    ----------
    cache_dir : str or path-like, default=None
        An explicit folder; ``None`` uses ``$SKSPLICE_CACHE`` when set, else
        the platform's user cache directory (e.g. ``~/.cache/sksplice`` on
        Linux).

    Returns
    -------
    path : pathlib.Path
        The folder (not created here).

    Examples
    --------
    >>> from sksplice.concepts import get_cache_dir
    >>> str(get_cache_dir("/tmp/my-cache"))
    '/tmp/my-cache'
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("SKSPLICE_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("sksplice"))


def data_url():
    """The download base address, ending in ``/``.

    ``$SKSPLICE_DATA_URL`` when set (a mirror, or a local server), else
    :data:`DEFAULT_DATA_URL`.

    Returns
    -------
    url : str
    """
    url = os.environ.get("SKSPLICE_DATA_URL", "").strip() or DEFAULT_DATA_URL
    return url if url.endswith("/") else url + "/"


def file_sha256(path, chunk_size=1 << 20):
    """SHA-256 hex digest of a file, read in chunks.

    Parameters
    ----------
    path : str or path-like
    chunk_size : int, default=1 MiB

    Returns
    -------
    digest : str
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def fetch(relpath, sha256, *, cache_dir=None, offline=None, what="data file", progress=False):
    """Local path of a registered reference file, downloading it on first use.

    Parameters
    ----------
    relpath : str
        Path under the data root, e.g. ``"vocab/laion.txt"``; the file is kept
        at ``<cache_dir>/<relpath>`` and downloaded from
        ``<data_url()>/<relpath>``.
    sha256 : str
        The pinned digest the file must have.
    cache_dir : str or path-like, default=None
        See :func:`get_cache_dir`.
    offline : bool or None, default=None
        See :func:`is_offline`.
    what : str, default="data file"
        How error messages call the file (e.g. ``"vocabulary 'laion'"``).
    progress : bool, default=False
        Show a download progress bar.

    Returns
    -------
    path : pathlib.Path
        The verified local file.

    Raises
    ------
    FileNotFoundError
        Offline and the file is not in the cache.
    DownloadError
        The server failed or the downloaded bytes do not have the pinned
        digest (the bad copy is deleted).
    """
    target = get_cache_dir(cache_dir) / relpath
    url = data_url() + relpath
    stale = False
    if target.is_file():
        if file_sha256(target) == sha256:
            return target
        stale = True  # corrupt or truncated copy: never used, replaced below
        target.unlink()
    if is_offline(offline):
        state = (
            f"the cached copy at {target} is corrupt (its SHA-256 digest is not the pinned "
            f"{sha256[:12]}...)" if stale else f"it is not in the cache (looked for {target})"
        )
        raise FileNotFoundError(
            f"{what}: {relpath} is needed but {state}, and downloads are off "
            f"({_offline_reason()}). Provide it: copy the file {relpath} from {url} to "
            f"{target} (or set SKSPLICE_CACHE to a folder holding {relpath}), or allow "
            "downloads by unsetting SKSPLICE_OFFLINE and HF_HUB_OFFLINE."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    _download(url, target, sha256, what=what, progress=progress)
    return target


def _download(url, target, sha256, *, what, progress):
    """Stream ``url`` into ``target`` atomically, verifying its digest."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=TIMEOUT)
            except urllib.error.HTTPError as e:
                raise DownloadError(
                    f"could not download {what} from {url}: the server answered HTTP "
                    f"{e.code} ({e.reason}). Check the address (SKSPLICE_DATA_URL="
                    f"{os.environ.get('SKSPLICE_DATA_URL', '<unset>')}), retry later, or "
                    f"place the file at {target} yourself."
                ) from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise DownloadError(
                    f"could not download {what} from {url}: {reason}. Check the network "
                    f"connection, or place the file at {target} yourself (then set "
                    "SKSPLICE_OFFLINE=1 to stay offline)."
                ) from None
            with response:
                total = response.headers.get("Content-Length")
                bar = None
                if progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                               desc=target.name)
                try:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        h.update(block)
                        if bar is not None:
                            bar.update(len(block))
                finally:
                    if bar is not None:
                        bar.close()
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if digest != sha256:
            raise DownloadError(
                f"the download of {what} from {url} is corrupt or was changed upstream: its "
                f"SHA-256 digest is {digest}, expected {sha256}. The bad copy was deleted; "
                "retry, or check SKSPLICE_DATA_URL points at the SpLiCE data files."
            )
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
