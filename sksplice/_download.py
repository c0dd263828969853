"""Cached, digest-checked downloads of the reference data files (vocabularies, means), by pooch.

Every file lives in a registry (:data:`sksplice.vocabularies.VOCABULARIES`,
:data:`sksplice.means.MEANS`) with its path under the data root, its upstream
address, its size and a pinned SHA-256 digest.  :func:`fetch` returns the
local copy in the cache directory, downloading it on first use with
`pooch <https://www.fatiando.org/pooch>`_:

* the cache directory is ``cache_dir``, else ``$SKSPLICE_CACHE``, else the
  platform's user cache directory (``platformdirs.user_cache_dir("sksplice")``);
* the download base is ``$SKSPLICE_DATA_URL`` when set (a mirror, or a local
  server in tests), else the registry's upstream address (the SpLiCE
  repository's raw files);
* pooch streams a download to a temporary file beside its target, checks the
  pinned digest, and only then moves it into place: a failed, interrupted or
  corrupt download never leaves a file that looks valid.  A download is
  stopped as soon as it grows past the file's registered size (or
  :data:`MAX_BYTES`), before more is written, and when it has not finished
  within :data:`DEADLINE` seconds, however the server paces its bytes (a
  server that sends a byte now and then never trips a per-read timeout);
  with ``progress=True`` a progress bar shows it on stderr;
* a file already in the cache whose digest differs is never deleted (it may
  be the user's own): it is kept, moved aside to ``<name>.<digest>.orig`` when
  a fresh copy is downloaded, and offline the error says what differs and
  how to proceed;
* with ``SKSPLICE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` (or ``offline=True``)
  nothing touches the network: a missing file is a ``FileNotFoundError``
  saying which file, where it was looked for and how to provide it;
* downloaded files get the permissions of any new file under the user's umask.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from pathlib import Path

from ._io import check_regular_file, open_regular
from .exceptions import DownloadError

__all__ = [
    "DEFAULT_DATA_URL",
    "MAX_BYTES",
    "DownloadError",
    "data_url",
    "fetch",
    "file_sha256",
    "get_cache_dir",
    "is_offline",
    "source_url",
]

#: Upstream root of the SpLiCE reference data (``vocab/``, ``means/``).
DEFAULT_DATA_URL = "https://raw.githubusercontent.com/AI4LIFE-GROUP/SpLiCE/main/data/"

#: Seconds to wait for the server before giving up on a download.
TIMEOUT = 60

#: Seconds a whole download may take, however the server paces its bytes.
DEADLINE = 600

#: Largest download accepted when a file has no registered size (bytes).
MAX_BYTES = 64 * 1024 * 1024

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
        True when nothing may be downloaded.

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
        The base address.
    """
    url = os.environ.get("SKSPLICE_DATA_URL", "").strip() or DEFAULT_DATA_URL
    return url if url.endswith("/") else url + "/"


def source_url(relpath, url=None):
    """Where :func:`fetch` downloads ``relpath`` from.

    Parameters
    ----------
    relpath : str
        The file's path under the download base (a registry's ``"path"``).
    url : str, default=None
        The upstream address (a registry's ``"url"``).

    Returns
    -------
    url : str
        ``url``, unless it is ``None`` or ``$SKSPLICE_DATA_URL`` is set: then
        ``<data_url()>/<relpath>``.
    """
    if url is None or os.environ.get("SKSPLICE_DATA_URL", "").strip():
        return data_url() + relpath
    return url


def file_sha256(path, chunk_size=1 << 20):
    """SHA-256 hex digest of a file, read in chunks.

    Parameters
    ----------
    path : str or path-like
        The file.
    chunk_size : int, default=1 MiB
        Bytes read at once.

    Returns
    -------
    digest : str
        64 hexadecimal digits.
    """
    h = hashlib.sha256()
    with open_regular(path, "file") as f:  # a pipe or a device is refused, never waited on
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def fetch(relpath, sha256, *, cache_dir=None, offline=None, what="data file", progress=False,
          url=None, size=None):
    """Local path of a registered reference file, downloading it on first use.

    Parameters
    ----------
    relpath : str
        Path under the data root, e.g. ``"vocab/laion.txt"``; the file is kept
        at ``<cache_dir>/<relpath>``.
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
    url : str, default=None
        The upstream address (the registry's ``"url"``); ``None`` or a set
        ``$SKSPLICE_DATA_URL`` use ``<data_url()>/<relpath>``.
    size : int, default=None
        The file's size in bytes: a download is stopped as soon as it grows
        past it (``None``: past :data:`MAX_BYTES`).

    Returns
    -------
    path : pathlib.Path
        The verified local file.

    Raises
    ------
    FileNotFoundError
        Offline and the file is not in the cache, or the cached file's digest
        differs (it is kept; the message says how to proceed).
    DownloadError
        The server failed, the download was too large, or the downloaded bytes
        do not have the pinned digest (that download is deleted).
    """
    target = get_cache_dir(cache_dir) / relpath
    url = source_url(relpath, url)
    mismatch = None
    if os.path.lexists(target):  # a folder, a pipe or a device there is refused by name
        check_regular_file(target, f"{what}: the cached file")
    if target.is_file():
        digest = file_sha256(target)
        if digest == sha256:
            return target
        mismatch = digest
    if is_offline(offline):
        if mismatch is not None:
            raise FileNotFoundError(
                f"{what}: the file at {target} is not the registered {relpath}: its SHA-256 "
                f"digest is {mismatch[:12]}..., the pinned one is {sha256[:12]}... (size "
                f"{target.stat().st_size} bytes). It was kept. If it is your own list, pass "
                f"its path instead of the name (e.g. load_vocabulary({str(target)!r})); to use "
                f"the registered file, move yours aside and copy {relpath} from {url} to "
                f"{target}, or allow downloads (downloads are off: {_offline_reason()})."
            )
        raise FileNotFoundError(
            f"{what}: {relpath} is needed but it is not in the cache (looked for {target}), and "
            f"downloads are off ({_offline_reason()}). Provide it: copy the file {relpath} "
            f"from {url} to {target} (or set SKSPLICE_CACHE to a folder holding {relpath}), "
            "or allow downloads by unsetting SKSPLICE_OFFLINE and HF_HUB_OFFLINE."
        )
    if mismatch is not None:
        aside = target.with_name(f"{target.name}.{mismatch[:12]}.orig")
        os.replace(target, aside)
        warnings.warn(
            f"{what}: the file at {target} had SHA-256 {mismatch[:12]}..., not the pinned "
            f"{sha256[:12]}...; it was kept as {aside} and the registered file is downloaded. "
            f"To use your file, pass its path ({str(aside)!r}) instead of the name.",
            UserWarning, stacklevel=3,
        )
    _download(url, target, sha256, what=what, progress=progress,
              max_bytes=size if size is not None else MAX_BYTES)
    return target


class _Capped:
    """A binary file wrapper that refuses to grow past ``limit`` bytes."""

    def __init__(self, f, limit, url):
        self.f, self.limit, self.url, self.written = f, limit, url, 0

    def write(self, block):
        self.written += len(block)
        if self.written > self.limit:
            raise DownloadError(
                f"the download from {self.url} is larger than the {self.limit} bytes expected; "
                "it was stopped and deleted. Check SKSPLICE_DATA_URL points at the SpLiCE data "
                "files."
            )
        return self.f.write(block)

    def flush(self):
        self.f.flush()


def _deadline_error(url, deadline, received):
    return DownloadError(
        f"the download from {url} did not finish within its {deadline:g} s deadline "
        f"({received} bytes received); it was stopped and deleted. The server is too slow or "
        "stalled: retry later, use a mirror (SKSPLICE_DATA_URL), or place the file in the "
        "cache yourself."
    )


def _capped_downloader(max_bytes, progress, what="data file"):
    """A pooch downloader: streamed, capped in size and bounded by :data:`DEADLINE` overall.

    Each read returns what has arrived (``read1``), so the deadline is checked
    after every few bytes of a server that trickles; the socket's timeout is
    the time left, so a silent server trips it too.
    """
    import requests
    import urllib3
    from tqdm.auto import tqdm

    deadline = float(DEADLINE)

    def download(url, output_file, pooch_instance, check_only=False):
        end = time.monotonic() + deadline
        wait = min(TIMEOUT, deadline)
        received = 0
        with requests.get(url, stream=True, timeout=(wait, wait)) as response:
            response.raise_for_status()
            if check_only:  # pragma: no cover - pooch's availability check
                return True
            total = response.headers.get("content-length")
            with open(output_file, "w+b") as f, tqdm(
                total=int(total) if total and total.isdigit() else None, unit="B",
                unit_scale=True, desc=f"downloading {what}", disable=not progress,
            ) as bar:
                capped = _Capped(f, max_bytes, url)
                while True:
                    left = end - time.monotonic()
                    if left <= 0:
                        raise _deadline_error(url, deadline, received)
                    conn = getattr(response.raw, "connection", None)
                    sock = getattr(conn, "sock", None)
                    if sock is not None:
                        sock.settimeout(min(wait, left))
                    try:
                        block = response.raw.read1(1 << 16, decode_content=True)
                    except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
                        if time.monotonic() >= end:
                            raise _deadline_error(url, deadline, received) from None
                        raise requests.ConnectionError("the server stopped sending") from None
                    except urllib3.exceptions.HTTPError as e:
                        raise requests.ConnectionError(str(e)[:200]) from None
                    if not block:
                        break
                    received += len(block)
                    capped.write(block)
                    bar.update(len(block))
                f.flush()
                os.fsync(f.fileno())
        return None

    return download


def _umask():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # pragma: no cover - non-Linux fallback
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def _download(url, target, sha256, *, what, progress, max_bytes):
    """Download ``url`` to ``target`` with pooch, verifying the digest; errors are DownloadError."""
    import pooch
    import requests

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        pooch.retrieve(
            url, known_hash=f"sha256:{sha256}", fname=target.name, path=target.parent,
            downloader=_capped_downloader(max_bytes, progress, what),
        )
    except requests.HTTPError as e:
        code = e.response.status_code if e.response is not None else "?"
        reason = e.response.reason if e.response is not None else e
        raise DownloadError(
            f"could not download {what} from {url}: the server answered HTTP {code} "
            f"({reason}). Check the address (SKSPLICE_DATA_URL="
            f"{os.environ.get('SKSPLICE_DATA_URL', '<unset>')}), retry later, or place the "
            f"file at {target} yourself."
        ) from None
    except requests.RequestException as e:
        raise DownloadError(
            f"could not download {what} from {url}: {type(e).__name__}. Check the network "
            f"connection, or place the file at {target} yourself (then set "
            "SKSPLICE_OFFLINE=1 to stay offline)."
        ) from None
    except ValueError as e:  # pooch's digest mismatch
        if "hash" not in str(e).lower():
            raise
        raise DownloadError(
            f"the download of {what} from {url} is corrupt or was changed upstream: its "
            f"SHA-256 digest is not the pinned {sha256}. The bad copy was deleted; retry, or "
            "check SKSPLICE_DATA_URL points at the SpLiCE data files."
        ) from None
    finally:
        logger.setLevel(level)
    os.chmod(target, 0o666 & ~_umask())
