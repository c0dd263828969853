"""Small shared helpers: device resolution, numpy <-> torch, names, atomic writes.

numpy <-> torch conversion happens only here, at the edges (as skorch's
``to_tensor``/``to_numpy``); everything else passes arrays in one of the two
worlds.
"""

from __future__ import annotations

import difflib
import os
import sys

import numpy as np


def resolve_device(device):
    """Turn a device string into a concrete ``torch.device``.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        If CUDA is requested but not available, or the string is not a device.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(  # noqa: TRY004 - as every bad value
            f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but no CUDA GPU is available "
                "(torch.cuda.is_available() is False); use device='cpu' or "
                "device='auto'."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    elif dev.type != "cpu":
        raise ValueError(
            f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        )
    return dev


def to_tensor(X, device, dtype=None):
    """numpy array -> torch tensor on ``device`` (no copy where possible)."""
    import torch

    if isinstance(X, torch.Tensor):
        return X.to(device=device, dtype=dtype)
    return torch.as_tensor(np.ascontiguousarray(X), device=device, dtype=dtype)


def to_numpy(T):
    """torch tensor -> numpy array on the CPU."""
    import torch

    if isinstance(T, torch.Tensor):
        return T.detach().cpu().numpy()
    return np.asarray(T)


def duplicates(items):
    """The items that occur more than once, in the order they first repeat."""
    seen, repeated = set(), {}
    for item in items:
        if item in seen:
            repeated[item] = None
        seen.add(item)
    return list(repeated)


def suggest(name, choices, n=3):
    """A ``" Did you mean ...?"`` suffix listing close matches, or ``""``."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.6)
    if not matches:
        return ""
    return " Did you mean " + ", ".join(repr(m) for m in matches) + "?"


def user_stacklevel():
    """The ``stacklevel`` that points a warning at the first caller outside sksplice and sklearn.

    Returns
    -------
    stacklevel : int
        For a ``warnings.warn`` call made in the function that calls this one.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    sklearn = sys.modules.get("sklearn")
    internal = (here,) if sklearn is None else (
        here, os.path.dirname(os.path.abspath(sklearn.__file__))
    )
    frame = sys._getframe(1)  # the function that will call warnings.warn
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(internal):
        frame = frame.f_back
        level += 1
    return level


def progress_bar(total, enabled, desc, unit):
    """A tqdm bar when ``enabled`` (on stderr), else a no-op with the same ``update``.

    Parameters
    ----------
    total : int
        Number of steps.
    enabled : bool
        Whether to show it.
    desc : str
        Label.
    unit : str
        What a step is.

    Returns
    -------
    bar : context manager
        Entering it gives an object with ``update(n)``.
    """
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)  # left on screen: the record of a long run


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        """Do nothing."""
