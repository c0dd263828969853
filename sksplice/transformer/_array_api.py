"""The Array API edges of ``SpliceTransformer`` (``sklearn.set_config(array_api_dispatch=True)``).

With dispatch on, an input from a non-NumPy namespace (torch, array-api-strict,
...) is read into the transformer's working kind at the edge and the result
goes back to the input's namespace and device.  A torch tensor on a GPU stays
there: it is centred and decomposed on its device; every other input is read
as numpy (a CPU torch tensor without a copy).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn import get_config

__all__ = ["array_api_target", "from_working", "to_host", "to_working"]


def array_api_target(*arrays):
    """``(xp, device)`` of non-NumPy inputs when ``array_api_dispatch`` is on, else None.

    Parameters
    ----------
    *arrays : object
        The inputs (non-arrays, NumPy arrays and sparse matrices are ignored).

    Returns
    -------
    target : tuple of (namespace, device) or None
        Where the outputs go back to.
    """
    if not get_config()["array_api_dispatch"]:
        return None
    arrays = [a for a in arrays if a is not None and not isinstance(a, np.ndarray)
              and not sp.issparse(a) and _is_array(a)]
    if not arrays:
        return None
    from sklearn.utils._array_api import get_namespace_and_device

    xp, is_array_api, device = get_namespace_and_device(*arrays)
    if not is_array_api or xp.__name__.split(".")[-1] == "numpy":
        return None
    return xp, device


def to_working(X, target):
    """``X`` as numpy, or as itself when it is a torch tensor on an accelerator.

    Parameters
    ----------
    X : array
        An input of ``target``'s namespace.
    target : tuple of (namespace, device) or None
        From :func:`array_api_target`.

    Returns
    -------
    X : ndarray or torch.Tensor
        What the transformer works on.
    """
    if target is None or X is None:
        return X
    if _is_torch(X):
        if X.device.type != "cpu":
            return X
        return X.detach().numpy() if X.dtype.is_floating_point and str(
            X.dtype) != "torch.bfloat16" else X.detach().float().numpy()
    from sklearn.utils._array_api import move_to

    return move_to(X, xp=np, device="cpu")


def to_host(X):
    """Any array (torch on any device, array-api-strict, ...) as a numpy array.

    Parameters
    ----------
    X : array
        An array of any namespace.

    Returns
    -------
    X : ndarray
        On the CPU.
    """
    if isinstance(X, np.ndarray):
        return X
    if _is_torch(X):
        return X.detach().cpu().numpy()
    from sklearn.utils._array_api import move_to

    return move_to(X, xp=np, device="cpu")


def from_working(A, target):
    """A numpy (or torch) result moved to ``target``'s namespace and device.

    Parameters
    ----------
    A : ndarray or torch.Tensor
        The result.
    target : tuple of (namespace, device) or None
        From :func:`array_api_target`; ``None`` returns ``A``.

    Returns
    -------
    A : array
        In the input's namespace, on its device.
    """
    if target is None or A is None or sp.issparse(A):
        return A
    xp, device = target
    if _is_torch(A) and xp.__name__.endswith("torch"):
        return A.to(device)
    from sklearn.utils._array_api import move_to

    return move_to(np.ascontiguousarray(A), xp=xp, device=device)


def _is_torch(X):
    return type(X).__module__.split(".")[0] == "torch" and hasattr(X, "detach")


def _is_array(X):
    return hasattr(X, "__array_namespace__") or _is_torch(X)
