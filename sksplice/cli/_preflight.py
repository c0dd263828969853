"""Before a run loads anything: every file it needs that is not on this machine, at once.

A first run on a new machine may lack the vocabulary, the reference image
mean and the model's weights.  Offline, each would be its own error on its own
run; here they are listed together, each with where it goes and where it comes
from.  Online, a download base that cannot be reached stops the run at once
(one short connection attempt per host) instead of after the download
libraries' retries.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from ._resolve import CLIError

__all__ = ["PROBE_TIMEOUT", "check_files"]

#: Seconds one connection attempt to a download host may take.
PROBE_TIMEOUT = 5.0


def _hub_url():
    """The Hugging Face Hub address (``$HF_ENDPOINT`` first), where open_clip tags come from."""
    endpoint = os.environ.get("HF_ENDPOINT", "").strip()
    if endpoint:
        return endpoint
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a dependency of open_clip
        return "https://huggingface.co"
    return constants.ENDPOINT


def _mean_key(args, encoder):
    """The registry key of the mean ``--mean`` selects, or None (a file, none, no tag)."""
    from ..means import MEANS

    choice = args.mean
    if choice.lower() == "none":
        return None
    if choice.lower() != "auto":
        return choice if choice in MEANS else None
    if encoder is None:
        return None
    if args.checkpoint is not None:
        return f"{encoder.model_name}:{args.pretrained}" if args.pretrained else None
    if getattr(encoder, "pretrained", None) is None:
        return None
    return f"{encoder.model_name}:{encoder.pretrained}"


def _dictionary_cached(args, encoder, cache):
    """Whether the concept dictionary is already cached (then no text encoding is needed)."""
    from ..concepts import dictionary_cache_key
    from ..vocabularies import load_vocabulary

    if getattr(encoder, "checkpoint", None) is None and getattr(
            encoder, "pretrained", None) is None:
        return False  # a Hugging Face or user model: its identity needs the model loaded
    try:
        concepts = load_vocabulary(args.vocabulary, args.vocabulary_size,
                                   cache_dir=args.cache_dir, offline=True)
        identity = encoder.identity
    except (OSError, ValueError):
        return False
    if identity is None:
        return False
    key = dictionary_cache_key(identity, concepts, args.prompt_template,
                               getattr(encoder, "precision", "fp32"))
    return (cache / "dictionaries" / f"{key[:40]}.npz").is_file()


def missing_files(args, encoder, *, vocabulary, mean, images):
    """``[(what, where it goes, where it comes from)]`` for the files the run lacks.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options.
    encoder : Encoder
        The (not yet loaded) encoder.
    vocabulary : bool
        Whether the run builds a dictionary from ``--vocabulary``.
    mean : bool
        Whether the run needs the image mean.
    images : bool
        Whether the run embeds images or texts (the weights are needed even
        when the dictionary is cached).

    Returns
    -------
    missing : list of tuple
        Empty when everything is here.
    """
    from .._download import get_cache_dir, source_url
    from ..encoders import missing_weights
    from ..means import MEANS
    from ..vocabularies import VOCABULARIES

    cache = get_cache_dir(args.cache_dir)
    missing = []
    entry = VOCABULARIES.get(args.vocabulary) if vocabulary else None
    if entry is not None and not (cache / entry["path"]).is_file():
        missing.append((f"the vocabulary {args.vocabulary!r}", str(cache / entry["path"]),
                        source_url(entry["path"], entry["url"])))
    key = _mean_key(args, encoder) if mean else None
    if key in MEANS and not (cache / MEANS[key]["path"]).is_file():
        missing.append((f"the reference image mean of {key}", str(cache / MEANS[key]["path"]),
                        source_url(MEANS[key]["path"], MEANS[key]["url"])))
    if images or (vocabulary and not _dictionary_cached(args, encoder, cache)):
        looked = missing_weights(encoder)
        if looked:
            name = f"{encoder.model_name}:{encoder.pretrained}"
            missing.append((f"the weights of {name}", " or ".join(looked), _hub_url()))
    return missing


def _unreachable(urls):
    """``"host:port (reason)"`` for the first address no connection reaches, else None."""
    seen = set()
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            continue
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if (parts.hostname, port) in seen:
            continue
        seen.add((parts.hostname, port))
        try:
            socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT).close()
        except OSError as exc:
            return f"{parts.hostname}:{port} ({exc.strerror or type(exc).__name__})"
    return None


def check_files(args, encoder, *, vocabulary=True, mean=True, images=True):
    """Stop with one error listing every file the run needs but cannot get.

    Offline (``--offline``, ``SKSPLICE_OFFLINE``, ``HF_HUB_OFFLINE``) every
    missing file is an error; online only when a download host cannot be
    reached.  Nothing is loaded or downloaded here.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options.
    encoder : Encoder
        The (not yet loaded) encoder.
    vocabulary, mean, images : bool
        What the run needs (see :func:`missing_files`).

    Raises
    ------
    CLIError
        Listing each missing file, where it goes and where it comes from.
    """
    from .._download import is_offline

    missing = missing_files(args, encoder, vocabulary=vocabulary, mean=mean, images=images)
    if not missing:
        return
    offline = is_offline(args.offline or None)
    if offline:
        why = "downloads are off (--offline, SKSPLICE_OFFLINE or HF_HUB_OFFLINE)"
    else:
        down = _unreachable(source for _, _, source in missing)
        if down is None:
            return  # the downloads can start
        why = f"the network is unreachable: no connection to {down}"
    listed = "; ".join(f"({i}) {what}: put it at {where} (from {source})"
                       for i, (what, where, source) in enumerate(missing, 1))
    raise CLIError(
        f"{len(missing)} file(s) this run needs are not on this machine and {why}: {listed}. "
        "Copy them there (or run once with network access); for the weights, --checkpoint "
        "PATH reads a local file instead, and --mean FILE or --mean none replaces the "
        "reference mean.")
